"""Image bytes to pixels: the decoder every reader shares, and its error message.

The training pipeline (`pipeline`), the dataset checker (`image_check`), the
inference reader (`image_reader`) and the exported serving signature
(`patchpu_keras.export`) all decode with `decode_image` and resize with
`resize_image`, so a file that passes the check decodes in training, and a file
predicted locally and its bytes sent to the served model agree.
"""

import re

import tensorflow as tf

# What tf.io.decode_image raises on bytes it cannot decode.
DECODE_ERRORS = (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.UnknownError)


def decode_image(encoded):
    """Encoded JPEG, PNG, GIF, BMP or WebP bytes to an `(h, w, 3)` uint8 RGB tensor.

    Grayscale is repeated to RGB, alpha dropped, palettes expanded, CMYK JPEGs
    converted by libjpeg and 16-bit PNGs scaled to 8 bits (`65535 -> 255`).
    Animated GIFs give their first frame.

    Args:
        encoded: scalar string tensor, the file's bytes.

    Returns:
        `(height, width, 3)` uint8 tensor.

    Example:
    >>> image = decode_image(tf.io.read_file("photo.png"))
    """
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape((None, None, 3))
    return image


def read_bytes(file, byte_range=None):
    """The bytes of `file`, or of `(offset, length)` inside it (a member of an uncompressed tar)."""
    with open(file, "rb") as handle:
        if byte_range is None:
            return handle.read()
        offset, length = (int(v) for v in byte_range)
        handle.seek(offset)
        return handle.read(length)


def decode_error_message(error):
    """The decoder's own words from one of `DECODE_ERRORS`.

    TensorFlow prefixes "{{function_node ...}}" and suffixes " [Op:DecodeImage]";
    both are dropped.
    """
    lines = [line for line in re.sub(r"\{\{.*?\}\}", "", error.message).splitlines() if line.strip()]
    return (lines[-1] if lines else "").split("[Op:")[0].strip()


def resize_image(image, image_size):
    """Bilinear resize to `image_size x image_size`, float32 in [0, 255].

    The op the serving signature and `PatchPUClassifier` (on TensorFlow) use.
    """
    return tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size))
