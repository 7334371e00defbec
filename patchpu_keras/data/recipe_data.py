"""A recipe's data: the one loader `train`, `evaluate` and the benchmarks share.

`load_data(config)` reads the images a recipe names (the built-in
Fashion-MNIST mosaics, or VOC, COCO, TFDS, folders or a manifest under
`config["data_dir"]`), draws the training annotation the recipe's `regime`
asks for, and returns `tf.data` pipelines in a `RecipeData`. Evaluation asks
for the held-out split only, so it never builds the training pipeline (label
draws, flips, redraws).

With `config["val_fraction"]` set, a seeded part of the training images
(`validation_rows`, seed `holdout_seed`) becomes the validation split: its
annotation is drawn as the training split's (single positives, or the observed
labels the data gives), and it is scored against its full labels where the data
has them, else against those observed labels (`RecipeData.val_labels`).
"""

import dataclasses
from typing import Any, Optional

import numpy as np

from patchpu_keras.configured import Configured, same_names
from patchpu_keras.data.mosaics import RECIPE_MOSAICS, recipe_mosaics
from patchpu_keras.data.pipeline import array_dataset, image_dataset
from patchpu_keras.data.regimes import observe
from patchpu_keras.data.sources import RECIPE_INDEX, load_recipe_index

TRAIN = "train"
VAL = "val"
TEST = "test"
SPLITS = (TRAIN, VAL, TEST)
# What a held-out split's mAP is measured against, as reports say it.
EVALUATED_ON = {
    "full": "full_labels",
    "observed": "observed_labels (no test split in the data: a seeded part of the training images "
                "was held out; labels not observed count as negatives, so the mAP is an estimate)",
}
VALIDATED_ON = {
    "full": "full_labels",
    "observed": "observed_labels (the validation images' annotation: labels not observed count as "
                "negatives, so the validation mAP is an estimate)",
}


def validation_rows(num_images, fraction=0.0, seed=0):
    """`(train_rows, val_rows)`: a seeded `fraction` of `num_images` training rows held out, both sorted.

    Args:
        num_images: int, training images before the split.
        fraction: float in [0, 1); 0 or None keeps every image for training
            (the paper's protocol, the default).
        seed: int, seed of the draw (the recipe's `holdout_seed`).
    """
    if not fraction:
        return np.arange(num_images), np.arange(0)
    if not 0.0 < fraction < 1.0:
        raise ValueError(
            "`val_fraction` is the part of the training images held out for validation, in [0, 1). "
            f"Received: val_fraction={fraction!r}"
        )
    num_val = max(1, int(round(fraction * num_images)))
    if num_val >= num_images:
        raise ValueError(
            f"`val_fraction`={fraction} of {num_images} training images leaves none to train on. "
            f"Received: val_fraction={fraction!r}, {num_images} training images"
        )
    order = np.random.default_rng(seed).permutation(num_images)
    return np.sort(order[num_val:]), np.sort(order[:num_val])


@dataclasses.dataclass
class RecipeData:
    """The pipelines and facts of a recipe's data.

    Attributes:
        train: batched `tf.data.Dataset` of `(images, targets)` with the
            observed labels (and `index`), shuffled and flipped as the recipe
            says; None when not asked for.
        test: batched `tf.data.Dataset` of the held-out split, targets with
            `full_labels`, in a fixed order; None when not asked for.
        class_names: list of label names.
        num_train, num_test: int, images per split.
        observed_labels: `(num_train, L)` training annotation (with
            `redraw_each_epoch`, the draw of `single_positive` with
            `label_seed`, the first epoch's not being known in advance); None
            without the training split.
        train_names: names of the training images (None for the mosaics).
        test_labels: "full", or "observed" when the held-out split was cut
            from observed-only data (its mAP is then an estimate).
        index: the `DatasetIndex` of data on disk, None for the mosaics.
        source: the source name ("voc", "coco", ...) or the recipe's dataset.
        probe: batched dataset of the first `diagnostics_images` training
            images, unshuffled and unflipped, with their observed and full
            labels, for the per-epoch diagnostics; None when the training
            images' full labels are unknown (own data) or not asked for.
        probe_objects: for the probe images, `(boxes, classes)` of their
            objects (lists of `(k, 4)` and `(k,)` arrays, for pointing), or
            None when the data has none.
        test_objects: the same for the held-out images, or None.
        val: batched `tf.data.Dataset` of the validation split (a seeded
            `val_fraction` of the training images), in a fixed order, targets
            with its `observed_labels` (drawn as the training split's) and
            `full_labels` (the full labels where known, else the observed
            positives); None without `val_fraction` or when not asked for.
        num_val: int, validation images (0 without a validation split).
        val_labels: "full" or "observed": what the validation mAP is measured
            against; None without a validation split.
        val_observed_labels: `(num_val, L)` annotation of the validation
            images, or None.
    """

    train: Any
    test: Any
    class_names: list
    num_train: int
    num_test: int
    observed_labels: Optional[Any]
    train_names: Optional[list]
    test_labels: str
    index: Optional[Any]
    source: str
    probe: Optional[Any] = None
    probe_objects: Optional[tuple] = None
    test_objects: Optional[tuple] = None
    val: Any = None
    num_val: int = 0
    val_labels: Optional[str] = None
    val_observed_labels: Optional[Any] = None

    @property
    def evaluated_on(self):
        """What the held-out split's labels are, in the words of the reports."""
        return EVALUATED_ON[self.test_labels]

    @property
    def validated_on(self):
        """What the validation split's mAP is measured against, or None without one."""
        return None if self.val_labels is None else VALIDATED_ON[self.val_labels]


def _check_splits(splits):
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown or not splits:
        raise ValueError(f"`splits` holds names of {list(SPLITS)}. Received: splits={splits!r}")


def load_data(config, splits=SPLITS, observed_labels=None, first_epoch=0):
    """The recipe's data as `tf.data` pipelines, with the training annotation drawn.

    Args:
        config: a recipe dict. Images come from `config["data_dir"]` when set
            (VOC, COCO, TFDS, folders or a manifest, detected or named by
            `config["source"]`), else from the built-in mosaics
            (`dataset="fashion_mnist_mosaics"`). The observed training labels
            follow `config["regime"]` (see `patchpu_keras.data.observe`),
            drawn with `config["label_seed"]`; with `redraw_each_epoch`,
            single positives are drawn anew every epoch.
        splits: the pipelines to build, any of `("train", "val", "test")`
            ("val" is built only with `config["val_fraction"]`; asking for
            it alone does not build the training pipeline).
        observed_labels: optional `(num_train, L)` annotation drawn earlier
            (a resumed run's `observed_labels.npz`), used instead of a new draw;
            a different shape means the data changed and raises a `ValueError`.
        first_epoch: int, the training epoch the pipeline's first iteration
            is: its order, flips and redraws are those of that epoch of an
            uninterrupted run (resume).

    Returns:
        A `RecipeData`.
    """
    _check_splits(splits)
    config = {**data_defaults(), **config}
    regime = config["regime"]
    redraw = bool(config["redraw_each_epoch"])
    if redraw and regime != "single_positive":
        raise ValueError(
            "`redraw_each_epoch` redraws single positives: it needs regime=single_positive. "
            f"Received: regime={regime!r}"
        )
    if config["data_dir"] is None and config["dataset"] == "fashion_mnist_mosaics":
        return _mosaic_data(config, splits, redraw, observed_labels, first_epoch)
    return _disk_data(config, splits, redraw, observed_labels, first_epoch)


def _probe_size(config, num_train):
    return min(int(config.get("diagnostics_images") or 0), num_train)


def _observe(config, full_labels, observed_labels=None, drawn=None):
    if drawn is not None:
        expected = tuple(np.shape(full_labels if full_labels is not None else observed_labels))
        if tuple(np.shape(drawn)) != expected:
            raise ValueError(
                f"The saved observed labels are for {np.shape(drawn)[0]} images and "
                f"{np.shape(drawn)[1]} labels; the data now gives {expected[0]} and {expected[1]}: "
                f"the data changed since the run started. Received: observed_labels.shape="
                f"{tuple(np.shape(drawn))}"
            )
        return np.asarray(drawn, "float32")
    return OBSERVATION(config, full_labels=full_labels, observed_labels=observed_labels)


def _split_rows(config, num_images):
    return VALIDATION(config, num_images=num_images)


def _val_fields(config, full_labels, observed_labels, make_dataset):
    """The `RecipeData` fields of a validation split from its labels; `make_dataset(observed, full)`."""
    observed = _observe(config, full_labels, observed_labels)
    known = full_labels if full_labels is not None else (observed > 0).astype("float32")
    return {
        "val": make_dataset(observed, known),
        "num_val": len(known),
        "val_labels": "full" if full_labels is not None else "observed",
        "val_observed_labels": observed,
    }


def _mosaic_data(config, splits, redraw, drawn, first_epoch):
    mosaics = recipe_mosaics(config)
    train_rows, val_rows = _split_rows(config, len(mosaics[TRAIN]["full_labels"]))
    train_images, train_full = mosaics[TRAIN]["images"][train_rows], mosaics[TRAIN]["full_labels"][train_rows]
    test_full = mosaics[TEST]["full_labels"]
    observed = train = test = probe = probe_objects = None
    validation = {}
    if TRAIN in splits:
        observed = _observe(config, train_full, drawn=drawn)
        size = _probe_size(config, len(train_full))
        if size:
            probe = array_dataset(
                train_images[:size], observed_labels=observed[:size],
                full_labels=train_full[:size], batch_size=config["batch_size"],
            )
            probe_objects = (
                [mosaics[TRAIN]["boxes"][row] for row in train_rows[:size]],
                [mosaics[TRAIN]["item_classes"][row] for row in train_rows[:size]],
            )
        train = array_dataset(
            train_images, observed_labels=observed, batch_size=config["batch_size"],
            shuffle=True, flip=config["flip"], seed=config["seed"],
            redraw_positives_from=train_full if redraw else None, label_seed=config["label_seed"],
            first_epoch=first_epoch,
        )
    if len(val_rows) and (TRAIN in splits or VAL in splits):
        validation = _val_fields(
            config, mosaics[TRAIN]["full_labels"][val_rows], None,
            lambda observed_val, full_val: array_dataset(
                mosaics[TRAIN]["images"][val_rows], observed_labels=observed_val, full_labels=full_val,
                batch_size=config["batch_size"],
            ),
        )
    if TEST in splits:
        test = array_dataset(mosaics[TEST]["images"], full_labels=test_full, batch_size=config["batch_size"])
    return RecipeData(
        train=train, test=test, class_names=list(mosaics["class_names"]),
        num_train=len(train_full), num_test=len(test_full), observed_labels=observed,
        train_names=None, test_labels="full", index=None, source=config["dataset"],
        probe=probe, probe_objects=probe_objects,
        test_objects=(mosaics[TEST]["boxes"], mosaics[TEST]["item_classes"]),
        **validation,
    )


def _disk_data(config, splits, redraw, drawn, first_epoch):
    index = load_recipe_index(config)
    pool, test_split = index.splits[TRAIN], index.splits[TEST]
    train_rows, val_rows = _split_rows(config, len(pool))
    train_split = pool if not len(val_rows) else pool.subset(train_rows)
    image_size, batch_size = config["image_size"], config["batch_size"]
    cache = config["cache"]
    observed = train = test = probe = probe_objects = None
    validation = {}
    if TRAIN in splits:
        observed = _observe(config, train_split.full_labels, train_split.observed_labels, drawn)
        size = _probe_size(config, len(train_split)) if train_split.full_labels is not None else 0
        if size:
            rows = np.arange(size)
            probe_objects = train_split.object_boxes(image_size, rows)
            probe = image_dataset(
                train_split.subset(rows), observed_labels=observed[:size],
                full_labels=train_split.full_labels[:size], image_size=image_size, batch_size=batch_size,
            )
        positives = None
        if redraw:
            positives = train_split.full_labels if train_split.full_labels is not None else (
                (train_split.observed_labels > 0).astype("float32"))
        train = image_dataset(
            train_split, observed_labels=observed, image_size=image_size, batch_size=batch_size,
            shuffle=True, flip=config["flip"], seed=config["seed"], cache=cache,
            redraw_positives_from=positives, label_seed=config["label_seed"], first_epoch=first_epoch,
        )
    if len(val_rows) and (TRAIN in splits or VAL in splits):
        val_split = pool.subset(val_rows)
        validation = _val_fields(
            config, val_split.full_labels, val_split.observed_labels,
            lambda observed_val, full_val: image_dataset(
                val_split, observed_labels=observed_val, full_labels=full_val, image_size=image_size,
                batch_size=batch_size, cache=cache if cache in (False, None, True) else f"{cache}-val",
            ),
        )
    if TEST in splits:
        test = image_dataset(
            test_split, full_labels=test_split.full_labels, image_size=image_size, batch_size=batch_size,
            cache=cache if cache in (False, None, True) else f"{cache}-test",
        )
    return RecipeData(
        train=train, test=test, class_names=index.class_names,
        num_train=len(train_split), num_test=len(test_split), observed_labels=observed,
        train_names=train_split.names, test_labels=index.test_labels, index=index, source=index.source,
        probe=probe, probe_objects=probe_objects,
        test_objects=test_split.object_boxes(image_size),
        **validation,
    )


def training_pipeline(flip=True, cache=None, redraw_each_epoch=False):
    """The recipe keys of the training pipeline, with their defaults (`TRAINING_PIPELINE`).

    Args:
        flip: bool, random horizontal flips of the training images.
        cache: None (no cache), True (the resized images in memory) or a path
            (on disk); data on disk only.
        redraw_each_epoch: bool, single positives drawn anew every epoch.

    Returns:
        `{key: value}`.
    """
    return {"flip": flip, "cache": cache, "redraw_each_epoch": redraw_each_epoch}


# Every data key a recipe may set, and the signature that declares its default (first match wins).
OBSERVATION = Configured(observe, {"regime": "regime", "label_seed": "seed", "partial_fraction": "partial_fraction"})
VALIDATION = Configured(validation_rows, {"val_fraction": "fraction", "holdout_seed": "seed"})
TRAINING_PIPELINE = Configured(training_pipeline, same_names("flip", "cache", "redraw_each_epoch"))
DATA_KEYS = (RECIPE_INDEX, RECIPE_MOSAICS, OBSERVATION, VALIDATION, TRAINING_PIPELINE)


def data_defaults():
    """`{recipe key: default}` of every data key, from the signatures in `DATA_KEYS` (`regime`: None, required)."""
    defaults = {}
    for configured in DATA_KEYS:
        for key, value in configured.defaults().items():
            defaults.setdefault(key, value)
    return defaults
