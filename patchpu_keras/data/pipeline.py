"""tf.data input pipelines (TensorFlow is used here and in export only)."""

import numpy as np
import tensorflow as tf

from patchpu_keras.labels import (
    FULL_LABELS,
    INDEX,
    OBSERVED_LABELS,
    check_full_labels,
    check_images,
    check_observed_labels,
    observed_from_full,
)


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


def array_dataset(
    images,
    observed_labels=None,
    full_labels=None,
    batch_size=16,
    shuffle=False,
    flip=False,
    seed=0,
    image_size=None,
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

    Returns:
        A dataset of `(images, targets)` where targets is a dict with
        `observed_labels`, `full_labels` (when given) and `index` (the row of
        each image in `images`), ready for `PatchPUClassifier.fit`.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    check_images(images)
    if observed_labels is None and full_labels is None:
        raise ValueError("Give observed_labels, full_labels or both. Received: neither")
    targets = {}
    if full_labels is not None:
        num_labels = np.shape(full_labels)[-1]
        targets[FULL_LABELS] = check_full_labels(full_labels, num_labels).astype("float32")
    if observed_labels is None:
        observed_labels = observed_from_full(full_labels)
    num_labels = np.shape(observed_labels)[-1]
    targets[OBSERVED_LABELS] = check_observed_labels(observed_labels, num_labels).astype("float32")
    targets[INDEX] = np.arange(len(images), dtype="int32")
    for key, value in targets.items():
        if len(value) != len(images):
            raise ValueError(
                f"{key} must have one row per image ({len(images)}). Received: {len(value)} rows"
            )
    dataset = tf.data.Dataset.from_tensor_slices((images, targets))
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)

    def prepare(image, target):
        image = to_rgb(image)
        if image_size is not None:
            image = tf.image.resize(tf.cast(image, "float32"), (image_size, image_size))
        if flip:
            image = tf.image.random_flip_left_right(image, seed=seed)
        return image, target

    dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
