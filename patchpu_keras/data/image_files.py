"""Reading image files for prediction and explanation (TensorFlow decoders).

Images are decoded and resized with the same TensorFlow ops as the exported
SavedModel's `serving_default` signature (`patchpu_keras.export`), so
`cli.py predict` on a file and the served model on that file's bytes agree.
"""

import os
import re

import numpy as np
import tensorflow as tf

# Formats tf.io.decode_image reads (TensorFlow 2.21 also reads JPEG XL).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")


class UnreadableImageError(ValueError):
    """An image file that cannot be opened or decoded; the message names the path."""


def list_image_files(paths):
    """Expands files and folders into a list of image files.

    Files are kept as given, whatever their extension (a file that turns out
    not to be an image is reported when it is read). Folders are walked
    recursively and contribute their files with an extension of
    `IMAGE_EXTENSIONS` (case-insensitive), sorted, so other files in a dataset
    folder (notes, label files) are not mistaken for unreadable images.

    Args:
        paths: iterable of str or path-like.

    Returns:
        A list of str paths, in the order given, folders expanded in place.
        Paths that exist as neither file nor folder are kept, so the reader
        reports them.
    """
    files = []
    for path in paths:
        path = os.fspath(path)
        if not os.path.isdir(path):
            files.append(path)
            continue
        found = []
        for root, folders, names in os.walk(path):
            folders.sort()
            found.extend(
                os.path.join(root, name)
                for name in names
                if name.lower().endswith(IMAGE_EXTENSIONS)
            )
        files.extend(sorted(found))
    return files


def decode_image(data):
    """Decodes JPEG, PNG, GIF (first frame), BMP or WebP bytes to RGB.

    Gray images are repeated to 3 channels and alpha is dropped
    (`channels=3`), as in the exported serving signature.

    Args:
        data: bytes, or a scalar string tensor.

    Returns:
        A `(height, width, 3)` uint8 tensor.
    """
    return tf.io.decode_image(data, channels=3, expand_animations=False)


def resize_image(image, image_size):
    """Bilinear resize to `image_size x image_size`, float32 in [0, 255].

    The op the serving signature and `PatchPUClassifier` (on TensorFlow) use.
    """
    return tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size))


def read_image(path):
    """Reads and decodes one image file.

    Args:
        path: str or path-like.

    Returns:
        A `(height, width, 3)` uint8 numpy array.

    Raises:
        UnreadableImageError: the file cannot be read, is not an image, or is
            corrupt (truncated JPEG, bad PNG checksum, ...).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise UnreadableImageError(
            f"Cannot read {path}: {error.strerror or error}. Received: path={path!r}"
        ) from None
    if not data:
        raise UnreadableImageError(f"Cannot decode {path}: the file is empty. Received: path={path!r}")
    try:
        image = decode_image(data)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        # TF prefixes "{{function_node ...}}" and suffixes " [Op:DecodeImage]".
        reason = re.sub(r"^\{\{.*?\}\}\s*", "", error.message.split("\n")[0]).split(" [Op:")[0]
        raise UnreadableImageError(
            f"Cannot decode {path} as an image ({reason}). Received: path={path!r}"
        ) from None
    image = image.numpy()
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise UnreadableImageError(
            f"Cannot decode {path}: the image is empty. Received: shape={image.shape}"
        )
    return np.asarray(image)
