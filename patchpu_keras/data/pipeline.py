"""tf.data input pipelines (TensorFlow is used here and in export only).

Two entry points share every stage after the pixels are in memory (RGB,
resize, flip, labels, batch, prefetch): `array_dataset` for in-memory arrays
(the built-in demo) and `image_dataset` for image files (VOC, COCO, TFDS,
your folders). Elements are `(images, targets)`, targets a dict with
`observed_labels`, `full_labels` (when known) and `index` (the image's row in
its split), ready for `PatchPUClassifier.fit`.
"""

import numpy as np
import tensorflow as tf

from patchpu_keras.data.epoch_randomness import advance_epochs
from patchpu_keras.data.image_files import decode_image, resize_image
from patchpu_keras.data.image_split import ImageSplit
from patchpu_keras.labels import (
    FULL_LABELS,
    INDEX,
    OBSERVED_LABELS,
    check_full_labels,
    check_images,
    check_observed_labels,
    observed_from_full,
)

# Shuffle buffer (in images) when decoded images are cached: the cache is read
# in order, so shuffling happens after it, on decoded images.
CACHED_SHUFFLE_BUFFER = 1024


def to_rgb(image):
    """Any channel count to RGB: gray is repeated, alpha dropped. Works on `(h, w)` too."""
    image = tf.convert_to_tensor(image)
    if image.shape.rank == 2:
        image = image[..., None]
    channels = image.shape[-1]
    if channels in (1, 2):
        return tf.repeat(image[..., :1], 3, axis=-1)
    if channels == 4:
        return image[..., :3]
    if channels == 3:
        return image
    raise ValueError(
        f"Images must have 1, 2, 3 or 4 channels. Received: shape={tuple(image.shape)}"
    )


def resize(image, image_size):
    """Bilinear resize to `image_size x image_size`, float32 out (no-op on the size if None)."""
    if image_size is None:
        return tf.cast(image, "float32")
    # The same op as serving and `cli.py predict`, so training and inference resize alike.
    return resize_image(image, image_size)


def label_tables(observed_labels, full_labels, num_images):
    """Checked float32 label arrays keyed as targets, plus `index`.

    Observed labels default to the full labels, fully observed.
    """
    if observed_labels is None and full_labels is None:
        raise ValueError("Give observed_labels, full_labels or both. Received: neither")
    tables = {}
    if full_labels is not None:
        num_labels = np.shape(full_labels)[-1]
        tables[FULL_LABELS] = check_full_labels(full_labels, num_labels).astype("float32")
    if observed_labels is None:
        observed_labels = observed_from_full(full_labels)
    num_labels = np.shape(observed_labels)[-1]
    tables[OBSERVED_LABELS] = check_observed_labels(observed_labels, num_labels).astype("float32")
    tables[INDEX] = np.arange(num_images, dtype="int32")
    for key, value in tables.items():
        if len(value) != num_images:
            raise ValueError(
                f"{key} must have one row per image ({num_images}). Received: {len(value)} rows"
            )
    return tables


# Offset of the flips' seed from the shuffle's, so the two streams differ for any `seed`.
_FLIP_SEED_OFFSET = 7919


def _flip(images, flip, seed, first_epoch=0):
    """Random horizontal flips, the same for every pipeline built with `seed` (and epoch).

    Each element's flip comes from a seeded stream of integers that changes every epoch,
    zipped with the elements, so two pipelines with the same seed (a resumed run's and an
    uninterrupted one's, from `first_epoch` on) flip the same images whatever the
    parallelism; `tf.image.random_flip_left_right`'s stateful draws do not.
    """
    if not flip:
        return images
    draws = advance_epochs(
        tf.data.Dataset.random(seed=seed + _FLIP_SEED_OFFSET, rerandomize_each_iteration=True), first_epoch
    )

    def flip_one(element, draw):
        image, target = element
        return tf.where(tf.math.floormod(draw, 2) == 1, tf.reverse(image, axis=[1]), image), target

    return tf.data.Dataset.zip((images, draws)).map(flip_one, num_parallel_calls=tf.data.AUTOTUNE)


def _positive_pool(redraw_positives_from, observed_labels):
    """Checks the rows positives are redrawn from; the observed labels become placeholders."""
    if redraw_positives_from is None:
        return observed_labels
    pool = check_full_labels(redraw_positives_from, np.shape(redraw_positives_from)[-1])
    empty = np.flatnonzero(pool.sum(axis=1) == 0)
    if len(empty):
        raise ValueError(
            "Redrawing single positives needs a positive in every image. "
            f"Received: no positive in row {int(empty[0])}"
        )
    return np.zeros(pool.shape, "float32")


def _redraw(dataset, redraw_positives_from, label_seed, first_epoch=0):
    """Replaces each element's observed labels by one positive drawn anew every epoch."""
    if redraw_positives_from is None:
        return dataset
    positives = tf.constant(redraw_positives_from, "float32")
    num_labels = positives.shape[1]
    # A seeded stream of random integers that differs every epoch (iteration).
    draws = advance_epochs(
        tf.data.Dataset.random(seed=label_seed, rerandomize_each_iteration=True), first_epoch
    )

    def redraw(element, draw):
        image, target = element
        candidates = tf.where(tf.gather(positives, target[INDEX]) > 0)[:, 0]
        chosen = tf.gather(candidates, tf.math.floormod(draw, tf.size(candidates, tf.int64)))
        target = dict(target)
        target[OBSERVED_LABELS] = tf.one_hot(chosen, num_labels, dtype="float32")
        return image, target

    return tf.data.Dataset.zip((dataset, draws)).map(redraw, num_parallel_calls=tf.data.AUTOTUNE)


def _batch(dataset, batch_size):
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def array_dataset(
    images,
    observed_labels=None,
    full_labels=None,
    batch_size=16,
    shuffle=False,
    flip=False,
    seed=0,
    image_size=None,
    redraw_positives_from=None,
    label_seed=1200,
    first_epoch=0,
):
    """A batched `tf.data.Dataset` of `(image, targets)` from in-memory arrays.

    Args:
        images: `(n, h, w)` or `(n, h, w, c)` array, values in [0, 255].
        observed_labels: optional `(n, L)` in {-1, 0, 1}; defaults to the full
            labels, fully observed.
        full_labels: optional `(n, L)` in {0, 1}.
        batch_size: int.
        shuffle: bool, reshuffled every epoch with `seed`.
        flip: bool, random horizontal flips (training augmentation).
        seed: int.
        image_size: optional int; images are resized to this square size.
        redraw_positives_from: optional `(n, L)` in {0, 1}, see `image_dataset`.
        label_seed: int, seed of the redraws.
        first_epoch: int, the epoch the first iteration is (resume): its
            order and redraws are those of that epoch of an uninterrupted run.

    Returns:
        A dataset of `(images, targets)` where targets is a dict with
        `observed_labels`, `full_labels` (when given) and `index` (the row of
        each image in `images`), ready for `PatchPUClassifier.fit`.

    Example:
    >>> dataset = array_dataset(images, full_labels=labels, batch_size=16)
    >>> model.evaluate(dataset)
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    check_images(images)
    observed_labels = _positive_pool(redraw_positives_from, observed_labels)
    targets = label_tables(observed_labels, full_labels, len(images))
    dataset = tf.data.Dataset.from_tensor_slices((images, targets))
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
        advance_epochs(dataset, first_epoch)

    def prepare(image, target):
        image = to_rgb(image)
        if image_size is not None:
            image = resize(image, image_size)
        return image, target

    dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = _redraw(dataset, redraw_positives_from, label_seed, first_epoch)
    return _batch(_flip(dataset, flip, seed, first_epoch), batch_size)


def load_image(encoded, image_size):
    """Encoded bytes to an `(image_size, image_size, 3)` uint8 RGB image.

    `decode_image` (JPEG, PNG, ...; any channel count to RGB), a bilinear
    resize, then rounding back to uint8, so cached images take one byte per
    value and cached and uncached pipelines give the same pixels.
    """
    image = resize(decode_image(encoded), image_size)
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def image_dataset(
    images,
    observed_labels=None,
    full_labels=None,
    image_size=640,
    batch_size=16,
    shuffle=False,
    flip=False,
    seed=0,
    cache=False,
    redraw_positives_from=None,
    label_seed=1200,
    first_epoch=0,
):
    """A batched `tf.data.Dataset` of `(image, targets)` read from image files.

    Per element: read the file, decode (any channel count to RGB), resize to
    `image_size`, optionally cache, shuffle, flip, attach the labels; then
    batch and prefetch. Maps run in parallel (`AUTOTUNE`). Files that cannot be
    decoded stop the pipeline, so give an `ImageSplit` of `load_index`, which
    decodes every file once and skips the bad ones.

    Args:
        images: an `ImageSplit`, or a list of file paths.
        observed_labels: optional `(n, L)` in {-1, 0, 1}; defaults to the full
            labels, fully observed.
        full_labels: optional `(n, L)` in {0, 1}, put in the targets.
        image_size: int, side of the square images out.
        batch_size: int.
        shuffle: bool, a new order every epoch (seeded).
        flip: bool, random horizontal flips (training augmentation).
        seed: int, seed of shuffling and flips.
        cache: False; True to keep the resized images in memory after the
            first epoch; or a file path prefix to cache them on disk. Cached
            images are shuffled with a buffer of `CACHED_SHUFFLE_BUFFER`.
        redraw_positives_from: optional `(n, L)` in {0, 1}: the observed
            labels become one positive drawn uniformly from each row, drawn
            anew every epoch (seeded by `label_seed`; not put in the targets).
        label_seed: int, seed of the redraws.
        first_epoch: int, the epoch the first iteration is (resume), see
            `array_dataset`. With `cache`, each epoch skipped reads one shuffle
            buffer of images.

    Returns:
        A dataset of `(images, targets)`: images `(batch, image_size,
        image_size, 3)` float32 in [0, 255], targets a dict with
        `observed_labels`, `full_labels` (when given) and `index`.

    Example:
    >>> index = patchpu_keras.data.load_index("/data/VOCdevkit")
    >>> train = image_dataset(index.train, observed_labels=observed, shuffle=True, flip=True)
    >>> model.fit(train, epochs=25)
    """
    split = images if isinstance(images, ImageSplit) else ImageSplit(names=list(images), files=list(images))
    observed_labels = _positive_pool(redraw_positives_from, observed_labels)
    tables = label_tables(observed_labels, full_labels, len(split))
    constants = {key: tf.constant(value) for key, value in tables.items()}

    def load(encoded, row):
        return load_image(encoded, image_size), row

    if cache is False or cache is None:
        dataset = split.encoded_dataset(shuffle=shuffle, seed=seed, first_epoch=first_epoch)
        dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        dataset = split.encoded_dataset(shuffle=False)
        dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
        dataset = dataset.cache("" if cache is True else str(cache))
        if shuffle:
            dataset = dataset.shuffle(
                min(len(split), CACHED_SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True
            )
            advance_epochs(dataset, first_epoch)

    def attach_labels(image, row):
        return tf.cast(image, "float32"), {key: tf.gather(table, row) for key, table in constants.items()}

    dataset = dataset.map(attach_labels, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = _redraw(dataset, redraw_positives_from, label_seed, first_epoch)
    return _batch(_flip(dataset, flip, seed, first_epoch), batch_size)
