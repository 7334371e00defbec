"""The inference reader: image files and folders for `cli.py predict` and `explain`.

Files are decoded with `image_files.decode_image`, the decoder of the training
pipeline and of the exported `serving_default` signature. A file that cannot
be read raises `UnreadableImageError` naming it, so callers skip it and go on.
"""

import os

import numpy as np

from patchpu_keras.data.image_files import DECODE_ERRORS, decode_error_message, decode_image

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
    except DECODE_ERRORS as error:
        reason = decode_error_message(error)
        raise UnreadableImageError(
            f"Cannot decode {path} as an image ({reason}). Received: path={path!r}"
        ) from None
    image = image.numpy()
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise UnreadableImageError(
            f"Cannot decode {path}: the image is empty. Received: shape={image.shape}"
        )
    return np.asarray(image)
