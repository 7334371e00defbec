"""Seeded multi-label mosaics of Fashion-MNIST items: the built-in real-image benchmark."""

import numpy as np

from patchpu_keras.configured import Configured, same_names

MAX_PLACEMENT_TRIES = 1000


def compose_mosaics(
    item_images,
    item_labels,
    num_mosaics,
    num_classes,
    canvas_size=112,
    items_per_image=(1, 4),
    seed=0,
):
    """Pastes 1 to 4 items at random non-overlapping positions on black canvases.

    Args:
        item_images: `(n, h, w)` uint8 items (Fashion-MNIST: 28x28).
        item_labels: `(n,)` int class of each item.
        num_mosaics: int, number of canvases.
        num_classes: int, L.
        canvas_size: int, side of the square canvas.
        items_per_image: `(min, max)` items per canvas, drawn uniformly.
        seed: int.

    Returns:
        A dict with `images` `(num_mosaics, canvas, canvas)` uint8, `full_labels`
        `(num_mosaics, L)` in {0, 1} (the classes present), `boxes` a list of
        `(k, 4)` int arrays `(top, left, bottom, right)` and `item_classes` a list
        of `(k,)` arrays, one per canvas.
    """
    item_images = np.asarray(item_images)
    item_labels = np.asarray(item_labels)
    low, high = items_per_image
    item_h, item_w = item_images.shape[1:3]
    if not 1 <= low <= high:
        raise ValueError(f"`items_per_image` must be (min, max) with 1 <= min <= max. Received: {items_per_image}")
    if canvas_size < 2 * max(item_h, item_w) and high > 1:
        raise ValueError(
            f"A {canvas_size}px canvas cannot hold {high} non-overlapping "
            f"{item_h}x{item_w} items. Received: canvas_size={canvas_size}"
        )
    rng = np.random.default_rng(seed)
    images = np.zeros((num_mosaics, canvas_size, canvas_size), dtype=np.uint8)
    full_labels = np.zeros((num_mosaics, num_classes), dtype=np.float32)
    all_boxes, all_classes = [], []
    for index in range(num_mosaics):
        count = int(rng.integers(low, high + 1))
        boxes = []
        for _ in range(MAX_PLACEMENT_TRIES):
            if len(boxes) == count:
                break
            top = int(rng.integers(0, canvas_size - item_h + 1))
            left = int(rng.integers(0, canvas_size - item_w + 1))
            box = (top, left, top + item_h, left + item_w)
            if all(_disjoint(box, other) for other in boxes):
                boxes.append(box)
        chosen = rng.choice(len(item_images), size=len(boxes), replace=False)
        for (top, left, bottom, right), item in zip(boxes, chosen):
            images[index, top:bottom, left:right] = item_images[item]
            full_labels[index, item_labels[item]] = 1.0
        all_boxes.append(np.asarray(boxes, dtype=np.int32).reshape(-1, 4))
        all_classes.append(item_labels[chosen].astype(np.int32))
    return {
        "images": images,
        "full_labels": full_labels,
        "boxes": all_boxes,
        "item_classes": all_classes,
    }


def _disjoint(a, b):
    return a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def shrink_items(items, size):
    """`(n, s, s)` uint8 items shrunk to `(n, size, size)` by averaging `s/size` blocks."""
    side = items.shape[1]
    if not (isinstance(size, int) and 0 < size <= side and side % size == 0):
        raise ValueError(
            f"`item_size` must be a divisor of the items' side {side}. Received: item_size={size!r}"
        )
    factor = side // size
    blocks = items.reshape(len(items), size, factor, size, factor).astype("float32")
    return np.round(blocks.mean(axis=(2, 4))).astype(np.uint8)


def fashion_mnist_mosaics(
    num_train=2400,
    num_test=600,
    canvas_size=112,
    items_per_image=(1, 4),
    seed=0,
    fashion_mnist_dir=None,
    item_size=28,
):
    """The built-in benchmark: train mosaics from training items, test mosaics from test items.

    Args:
        num_train: int, training canvases.
        num_test: int, held-out canvases, built from Fashion-MNIST's test items
            only, so no item is seen in training.
        canvas_size: int, side of a canvas.
        items_per_image: `(min, max)` items per canvas.
        seed: int, seed of the composition.
        fashion_mnist_dir: see `load_fashion_mnist` (`None`: vendored subset).
        item_size: int, side of the items on the canvas: 28 (Fashion-MNIST's
            own) or a divisor of 28, by averaging blocks of pixels.

    Returns:
        A dict with `train` and `test` (each the output of `compose_mosaics`) and
        `class_names`.
    """
    from patchpu_keras.data.fashion_mnist import load_fashion_mnist

    source = load_fashion_mnist(fashion_mnist_dir)
    if item_size != 28:
        source = {
            **source,
            "train_images": shrink_items(source["train_images"], item_size),
            "test_images": shrink_items(source["test_images"], item_size),
        }
    num_classes = len(source["class_names"])
    train = compose_mosaics(
        source["train_images"], source["train_labels"], num_train, num_classes,
        canvas_size=canvas_size, items_per_image=items_per_image, seed=seed,
    )
    test = compose_mosaics(
        source["test_images"], source["test_labels"], num_test, num_classes,
        canvas_size=canvas_size, items_per_image=items_per_image, seed=seed + 1,
    )
    return {"train": train, "test": test, "class_names": source["class_names"]}


def recipe_mosaics(config, num_test=None):
    """The built-in mosaics a recipe dict describes (`recipes/demo.py`'s data keys).

    Args:
        config: a recipe dict with `num_train`, `num_test`, `image_size`,
            `items_per_image`, `data_seed` and optionally `fashion_mnist_dir`
            and `item_size`.
        num_test: optional int replacing `config["num_test"]`.

    Returns:
        What `fashion_mnist_mosaics` returns.
    """
    changes = {"items_per_image": tuple(config["items_per_image"])}
    if num_test is not None:
        changes["num_test"] = num_test
    return RECIPE_MOSAICS(config, **changes)


# The recipe keys `fashion_mnist_mosaics` reads. `item_size` and `fashion_mnist_dir` take their
# defaults from its signature; the demo recipe states the others (`recipes/demo.py`).
RECIPE_MOSAICS = Configured(
    fashion_mnist_mosaics,
    same_names("fashion_mnist_dir", "item_size"),
    from_recipe={"num_train": "num_train", "num_test": "num_test", "image_size": "canvas_size",
                 "items_per_image": "items_per_image", "data_seed": "seed"},
)
