"""One split of a dataset on disk: where its images are and what is known of their labels."""

import dataclasses

import numpy as np
import tensorflow as tf

from patchpu_keras.data.epoch_randomness import advance_epochs


def objects_entry(boxes, classes):
    """One image's `ImageSplit.objects` entry: `(boxes, classes)` arrays, None if a box is None.

    Args:
        boxes: sequence of `(top, left, bottom, right)` fractions, or None for
            an object whose box is unknown (then no pointing on the image).
        classes: sequence of the objects' label columns.
    """
    if any(box is None for box in boxes):
        return None
    return np.asarray(boxes, "float32").reshape(-1, 4), np.asarray(classes, "int32").reshape(-1)


@dataclasses.dataclass
class ImageSplit:
    """The images of one split and their labels, as every source yields them.

    Images are files (`files`), members of an uncompressed tar (`files` is the
    tar, `byte_ranges` the member's `(offset, length)`), or records of a
    prepared TFDS dataset (`tfds`, found by their TFDS ids). Row `i`
    of the label arrays belongs to image `i`; `i` is the image's `index` in the
    pipeline's targets.

    Args:
        names: list of str, one display name per image (path relative to the
            dataset root, `archive.tar:member`, or the file name stored in
            TFDS), used in warnings.
        full_labels: `(n, L)` float32 in {0, 1}, or None when unknown.
        observed_labels: `(n, L)` float32 in {-1, 0, 1} given by the source
            itself (folders, manifests), or None.
        files: list of str paths, or None for TFDS.
        byte_ranges: `(n, 2)` int64 `(offset, length)` inside `files`, or None.
        tfds: for TFDS splits, a dict with `name`, `data_dir`, `split` and
            `ids` (the TFDS id of each image).
        objects: optional list, per image `(boxes, classes)` of its annotated
            objects: boxes `(k, 4)` float32 `(top, left, bottom, right)` as
            fractions of the image's height and width, classes `(k,)` int32
            label columns; an entry is None where the image's boxes are not
            known. VOC, COCO and their TFDS versions fill it (pointing scores).

    Example:
    >>> split = ImageSplit(names=["a.jpg"], files=["/data/a.jpg"],
    ...                    full_labels=np.array([[1.0, 0.0]], "float32"))
    >>> len(split)
    1
    """

    names: list
    full_labels: np.ndarray = None
    observed_labels: np.ndarray = None
    files: list = None
    byte_ranges: np.ndarray = None
    tfds: dict = None
    objects: list = None

    def __post_init__(self):
        self.names = list(self.names)
        for key in ("full_labels", "observed_labels"):
            value = getattr(self, key)
            if value is not None:
                value = np.asarray(value, dtype="float32")
                if value.ndim != 2 or len(value) != len(self.names):
                    raise ValueError(
                        f"`{key}` must have one row per image ({len(self.names)}). "
                        f"Received: shape={value.shape}"
                    )
                setattr(self, key, value)
        if self.files is not None and len(self.files) != len(self.names):
            raise ValueError(
                f"`files` must have one entry per image ({len(self.names)}). "
                f"Received: {len(self.files)} files"
            )
        if self.byte_ranges is not None:
            self.byte_ranges = np.asarray(self.byte_ranges, dtype="int64").reshape(-1, 2)
        if self.objects is not None and len(self.objects) != len(self.names):
            raise ValueError(
                f"`objects` must have one entry per image ({len(self.names)}). "
                f"Received: {len(self.objects)} entries"
            )

    def __len__(self):
        return len(self.names)

    @property
    def known_labels(self):
        """The labels the learner could be given: full labels if known, else the observed ones."""
        return self.full_labels if self.full_labels is not None else self.observed_labels

    def subset(self, rows):
        """A new split holding `rows` (indices or a boolean mask), in that order."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)

        def take(value):
            if value is None:
                return None
            if isinstance(value, np.ndarray):
                return value[rows]
            return [value[row] for row in rows]

        tfds = None if self.tfds is None else {**self.tfds, "ids": take(self.tfds["ids"])}
        return ImageSplit(
            names=take(self.names),
            full_labels=take(self.full_labels),
            observed_labels=take(self.observed_labels),
            files=take(self.files),
            byte_ranges=take(self.byte_ranges),
            tfds=tfds,
            objects=take(self.objects),
        )

    def object_boxes(self, image_size, rows=None):
        """The images' objects in the pixels of the model's input, for pointing scores.

        Args:
            image_size: int, the square size images are resized to (a plain
                resize, as the pipeline's: fractions scale to pixels).
            rows: optional indices of the images to return (default all).

        Returns:
            `(boxes, classes)`: lists of `(k, 4)` float32 boxes `(top, left,
            bottom, right)` in input pixels and `(k,)` int32 labels, None for
            an image whose boxes are unknown; or None when the split has no
            objects.
        """
        if self.objects is None or image_size is None:
            return None
        rows = range(len(self)) if rows is None else rows
        boxes, classes = [], []
        for row in rows:
            entry = self.objects[row]
            boxes.append(None if entry is None else np.asarray(entry[0], "float32").reshape(-1, 4) * image_size)
            classes.append(None if entry is None else np.asarray(entry[1], "int32").reshape(-1))
        return boxes, classes

    def encoded_dataset(self, shuffle=False, seed=0, first_epoch=0):
        """`tf.data.Dataset` of `(encoded image bytes, index)`, index the image's row.

        With `shuffle`, the order changes every epoch (seeded); the files are
        shuffled before they are read, so the buffer holds names, not images.
        `first_epoch`: the first iteration gives the order of that epoch of
        an uninterrupted run (resume).
        """
        rows = np.arange(len(self), dtype="int32")
        if self.tfds is not None:
            return self._tfds_dataset(rows, shuffle, seed, first_epoch)
        if self.byte_ranges is None:
            dataset = tf.data.Dataset.from_tensor_slices((self.files, rows))
            if shuffle:
                dataset = dataset.shuffle(len(self), seed=seed, reshuffle_each_iteration=True)
                advance_epochs(dataset, first_epoch)
            return dataset.map(
                lambda file, row: (tf.io.read_file(file), row),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        dataset = tf.data.Dataset.from_tensor_slices((self.files, self.byte_ranges, rows))
        if shuffle:
            dataset = dataset.shuffle(len(self), seed=seed, reshuffle_each_iteration=True)
            advance_epochs(dataset, first_epoch)

        def read_member(file, byte_range, row):
            data = tf.numpy_function(
                lambda f, r: _read_range(f.decode(), r), [file, byte_range], tf.string,
                stateful=False,
            )
            data.set_shape(())
            return data, row

        return dataset.map(read_member, num_parallel_calls=tf.data.AUTOTUNE)

    def _tfds_dataset(self, rows, shuffle, seed, first_epoch=0):
        import tensorflow_datasets as tfds

        builder = tfds.builder(self.tfds["name"], data_dir=self.tfds["data_dir"])
        dataset = builder.as_dataset(
            split=self.tfds["split"],
            decoders={"image": tfds.decode.SkipDecoding()},
            shuffle_files=shuffle,
            read_config=tfds.ReadConfig(add_tfds_id=True, shuffle_seed=seed),
        )
        # Records are found by id, so skipped records (and file shuffling) keep
        # every image's labels and index right.
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(self.tfds["ids"], tf.string), tf.constant(rows, tf.int32)
            ),
            default_value=-1,
        )
        dataset = dataset.map(lambda record: (record["image"], table.lookup(record["tfds_id"])))
        dataset = dataset.filter(lambda image, row: row >= 0)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(self)))
        if shuffle:
            dataset = dataset.shuffle(min(len(self), 1024), seed=seed, reshuffle_each_iteration=True)
            # Reads up to 1,024 records per epoch skipped (the shuffle buffer).
            advance_epochs(dataset, first_epoch)
        return dataset


def _read_range(file, byte_range):
    from patchpu_keras.data.image_files import read_bytes

    return read_bytes(file, byte_range)
