import gzip
import os

import numpy as np
import pytest
import tensorflow as tf

from patchpu_keras.data import compose_mosaics, load_fashion_mnist, single_positive
from patchpu_keras.data.fashion_mnist import CLASS_NAMES, make_subset
from patchpu_keras.data.mosaics import fashion_mnist_mosaics, shrink_items
from patchpu_keras.data.pipeline import array_dataset, to_rgb
from patchpu_keras.data.regimes import observe


def _write_idx(path, array):
    header = (0x0800 | array.ndim).to_bytes(4, "big") + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def _fake_fashion_dir(directory, rng, n_train=40, n_test=20):
    labels = {"train": np.arange(n_train) % 10, "t10k": np.arange(n_test) % 10}
    for prefix, lab in labels.items():
        _write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"), rng.integers(0, 256, (len(lab), 28, 28)))
        _write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz"), lab)
    return labels


def test_vendored_subset_is_balanced_real_fashion_mnist():
    data = load_fashion_mnist()
    assert data["train_images"].shape == (4000, 28, 28) and data["test_images"].shape == (1000, 28, 28)
    assert data["train_images"].dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(data["train_labels"]), [400] * 10)
    np.testing.assert_array_equal(np.bincount(data["test_labels"]), [100] * 10)
    assert data["class_names"] == list(CLASS_NAMES)
    # Real photos of clothes: dark background, bright centre, many grey levels.
    mean = data["train_images"].mean(axis=0)
    assert mean[14, 14] > 3 * mean[0, 0] and len(np.unique(data["train_images"][0])) > 30


def test_idx_directory_reader_and_subset_maker(tmp_path, rng):
    labels = _fake_fashion_dir(tmp_path, rng)
    data = load_fashion_mnist(str(tmp_path))
    np.testing.assert_array_equal(data["train_labels"], labels["train"])
    subset = make_subset(str(tmp_path), str(tmp_path / "s.npz"), train_per_class=2, test_per_class=1, seed=3)
    np.testing.assert_array_equal(np.bincount(subset["train_labels"]), [2] * 10)
    again = make_subset(str(tmp_path), str(tmp_path / "t.npz"), train_per_class=2, test_per_class=1, seed=3)
    np.testing.assert_array_equal(subset["train_images"], again["train_images"])


def test_broken_or_missing_files_name_the_file(tmp_path, rng):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(str(tmp_path / "nowhere"))
    _fake_fashion_dir(tmp_path, rng)
    truncated = tmp_path / "t10k-images-idx3-ubyte.gz"
    with gzip.open(truncated, "rb") as handle:
        content = handle.read()
    with gzip.open(truncated, "wb") as handle:
        handle.write(content[:-100])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz: header announces shape"):
        load_fashion_mnist(str(tmp_path))


def test_mosaics_place_disjoint_items_and_label_what_is_present(rng):
    items = rng.integers(1, 256, (50, 28, 28)).astype("uint8")
    item_labels = np.arange(50) % 10
    out = compose_mosaics(items, item_labels, 30, 10, canvas_size=112, seed=5)
    assert out["images"].shape == (30, 112, 112)
    for image, labels, boxes, classes in zip(out["images"], out["full_labels"], out["boxes"], out["item_classes"]):
        assert 1 <= len(boxes) <= 4
        np.testing.assert_array_equal(np.flatnonzero(labels), np.unique(classes))
        covered = np.zeros(image.shape, bool)
        for top, left, bottom, right in boxes:
            assert not covered[top:bottom, left:right].any()  # non-overlapping
            covered[top:bottom, left:right] = True
        assert not image[~covered].any()  # background stays black
    again = compose_mosaics(items, item_labels, 30, 10, canvas_size=112, seed=5)
    np.testing.assert_array_equal(out["images"], again["images"])
    with pytest.raises(ValueError, match="Received: canvas_size=40"):
        compose_mosaics(items, item_labels, 1, 10, canvas_size=40)


def test_shrunk_items_average_pixel_blocks_and_fit_a_smaller_canvas(rng):
    items = rng.integers(0, 256, (3, 28, 28)).astype("uint8")
    small = shrink_items(items, 14)
    assert small.shape == (3, 14, 14) and small.dtype == np.uint8
    # pixel (i, j) of a shrunk item is the rounded mean of the 2x2 block at (2i, 2j)
    for i, j in [(0, 0), (5, 9), (13, 13)]:
        block = items[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2].astype(float).mean(axis=(1, 2))
        np.testing.assert_array_equal(small[:, i, j], np.round(block))
    np.testing.assert_array_equal(shrink_items(items, 28), items)
    with pytest.raises(ValueError, match="Received: item_size=10"):
        shrink_items(items, 10)
    mosaics = fashion_mnist_mosaics(num_train=20, num_test=5, canvas_size=56, item_size=14)
    assert mosaics["train"]["images"].shape == (20, 56, 56)
    boxes = np.concatenate(mosaics["train"]["boxes"])
    np.testing.assert_array_equal(boxes[:, 2:] - boxes[:, :2], 14)
    assert max(len(b) for b in mosaics["train"]["boxes"]) == 4  # 4x4 cells hold up to 4 items


def test_single_positive_draws_one_true_positive_reproducibly(rng):
    full = rng.integers(0, 2, (300, 6)).astype("float32")
    full[full.sum(1) == 0, 0] = 1
    observed = single_positive(full, seed=1200)
    assert np.all((observed == 1).sum(1) == 1)
    assert np.all(full[observed == 1] == 1)
    assert set(np.unique(observed)) == {0.0, 1.0}
    np.testing.assert_array_equal(observed, single_positive(full, seed=1200))
    assert not np.array_equal(observed, single_positive(full, seed=1))
    # Uniform among positives: an image with labels {0, 5} gets each about half the time.
    both = np.tile([[1, 0, 0, 0, 0, 1]], (2000, 1)).astype("float32")
    assert 0.45 < single_positive(both)[:, 0].mean() < 0.55
    np.testing.assert_array_equal(observe(full, "full"), 2 * full - 1)
    with pytest.raises(ValueError, match="row 1"):
        single_positive(np.array([[1, 0], [0, 0]], "float32"))


def test_to_rgb_eagerly_and_inside_tf_data():
    gray = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)[..., :1]
    rgba = np.concatenate([np.repeat(gray, 3, -1), np.full_like(gray, 9)], -1)
    for image in (gray, gray[..., 0], rgba):
        eager = to_rgb(image).numpy()
        graph = next(iter(tf.data.Dataset.from_tensors(image).map(to_rgb))).numpy()
        np.testing.assert_array_equal(eager, np.repeat(gray, 3, -1))
        np.testing.assert_array_equal(graph, eager)


def test_array_dataset_carries_targets_and_indices(rng):
    images = rng.integers(0, 256, (10, 8, 8)).astype("uint8")
    full = rng.integers(0, 2, (10, 3)).astype("float32")
    batches = list(array_dataset(images, full_labels=full, batch_size=4))
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    x, y = batches[0]
    assert x.shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(x.numpy()[..., 1], images[:4])
    np.testing.assert_array_equal(y["full_labels"].numpy(), full[:4])
    np.testing.assert_array_equal(y["observed_labels"].numpy(), 2 * full[:4] - 1)
    shuffled = list(array_dataset(images, observed_labels=2 * full - 1, batch_size=10, shuffle=True, seed=1))[0]
    order = shuffled[1]["index"].numpy()
    assert sorted(order) == list(range(10)) and list(order) != list(range(10))
    np.testing.assert_array_equal(shuffled[0].numpy()[..., 0], images[order])
    with pytest.raises(ValueError, match="Received: value=7"):
        array_dataset(images, observed_labels=np.full((10, 3), 7.0))


@pytest.mark.skipif(
    not os.path.isdir("/usr/share/datasets/fashion-mnist"),
    reason="Debian's dataset-fashion-mnist is not installed (.ci/run installs it)",
)
def test_full_debian_copy_loads():
    data = load_fashion_mnist("auto")
    assert data["train_images"].shape == (60000, 28, 28) and data["test_images"].shape == (10000, 28, 28)
    np.testing.assert_array_equal(np.bincount(data["test_labels"]), [1000] * 10)
    # The vendored subset is made of real images of that copy.
    subset = load_fashion_mnist()
    first = subset["test_images"][0]
    assert any(np.array_equal(first, image) for image in data["test_images"][:10000])



def test_a_config_built_by_hand_gets_the_documented_data_defaults():
    # A config stating only what the mosaics need gets the data of one that spells out the
    # documented defaults (docs/recipes.md, "Data keys"): flips on, labels drawn with seed 1200,
    # no validation split. Each default comes from the one signature that declares it.
    from patchpu_keras.data import load_data

    by_hand = {"dataset": "fashion_mnist_mosaics", "num_train": 40, "num_test": 8, "items_per_image": (1, 4),
               "data_seed": 0, "regime": "single_positive", "image_size": 56, "batch_size": 8, "seed": 0}
    documented = {**by_hand, "data_dir": None, "flip": True, "label_seed": 1200, "val_fraction": 0.0,
                  "holdout_seed": 0, "item_size": 28, "fashion_mnist_dir": None, "redraw_each_epoch": False}
    ours, spelled_out = load_data(by_hand), load_data(documented)
    np.testing.assert_array_equal(ours.observed_labels, spelled_out.observed_labels)
    assert ours.num_val == spelled_out.num_val == 0 and ours.num_train == 40
    for _ in range(2):  # two epochs of flips and order
        for (images, _), (expected, _) in zip(ours.train, spelled_out.train):
            np.testing.assert_array_equal(np.asarray(images), np.asarray(expected))
    # What the config states wins: without flips, or with another label seed, the data differ.
    unflipped = load_data({**by_hand, "flip": False})
    assert any(not np.array_equal(np.asarray(a[0]), np.asarray(b[0])) for a, b in zip(ours.train, unflipped.train))
    assert not np.array_equal(load_data({**by_hand, "label_seed": 7}).observed_labels, ours.observed_labels)
