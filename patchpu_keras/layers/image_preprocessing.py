import keras
import numpy as np
from keras import ops

# "unit": pixels / 255, in [0, 1] (models trained from scratch).
# "caffe": keras.applications.resnet50.preprocess_input: BGR, ImageNet mean subtracted, 0-255 scale.
# "torch": (pixels / 255 - ImageNet mean) / ImageNet std, RGB (EfficientNet-B0's weights).
SCALINGS = ("unit", "caffe", "torch")
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def check_scaling(scaling, argument="scaling"):
    if scaling not in SCALINGS:
        raise ValueError(f"`{argument}` must be one of {SCALINGS}. Received: {argument}={scaling!r}")


def normalize_images(images, scaling):
    """Scales RGB images with values in [0, 1] as `scaling` says.

    Args:
        images: float tensor `(..., 3)`, RGB in [0, 1].
        scaling: one of `SCALINGS`.

    Returns:
        A tensor of the same shape.
    """
    check_scaling(scaling)
    if isinstance(images, np.ndarray):
        images = ops.convert_to_tensor(images)
    if scaling == "unit":
        return images
    if scaling == "caffe":
        bgr = ops.flip(images, axis=-1) * 255.0
        return bgr - ops.convert_to_tensor(np.array(CAFFE_MEAN_BGR, "float32"), images.dtype)
    mean = ops.convert_to_tensor(np.array(IMAGENET_MEAN_RGB, "float32"), images.dtype)
    std = ops.convert_to_tensor(np.array(IMAGENET_STD_RGB, "float32"), images.dtype)
    return (images - mean) / std


@keras.saving.register_keras_serializable(package="patchpu_keras")
class ImagePreprocessing(keras.layers.Layer):
    """Images of any channel count and size to the RGB square a backbone works on.

    1 (gray) or 2 (gray + alpha) channels are repeated to RGB, RGBA drops its
    alpha, any size other than `image_size x image_size` is resized
    (bilinear), and the values, in [0, 255], are scaled as `scaling` says.
    Both model families (`PatchBackbone`, `CAMBackbone`) start with it, so a
    saved model scales its inputs like the weights it started from.

    Args:
        image_size: int, side of the square output.
        scaling: `"unit"` ([0, 1], from scratch), `"caffe"`
            (`keras.applications.resnet50.preprocess_input`: BGR, ImageNet mean
            subtracted) or `"torch"` ((x / 255 - ImageNet mean) / ImageNet std,
            as Keras' EfficientNet-B0 weights expect).

    Call arguments:
        images: `(batch, height, width, channels)`, values in [0, 255], any
            numeric dtype, 1 to 4 channels.

    Returns:
        `(batch, image_size, image_size, 3)` in the layer's compute dtype.

    Example:
    >>> layer = ImagePreprocessing(32, scaling="unit")
    >>> layer(np.full((2, 64, 48, 1), 255, "uint8")).shape
    (2, 32, 32, 3)

    Reference:
        Jouanneau et al., "A Patch-Based Architecture for Multi-Label
        Classification from Single Positive Annotations", VISAPP 2023, sec. 3.1
        (the image the patches are cut from).
    """

    def __init__(self, image_size, scaling="unit", **kwargs):
        super().__init__(**kwargs)
        if int(image_size) != image_size or image_size < 1:
            raise ValueError(f"`image_size` must be an integer >= 1. Received: image_size={image_size!r}")
        check_scaling(scaling)
        self.image_size = int(image_size)
        self.scaling = scaling
        self.built = True

    def call(self, images):
        x = ops.cast(images, self.compute_dtype)
        channels = x.shape[-1]
        if channels in (1, 2):
            x = ops.concatenate([x[..., :1]] * 3, axis=-1)
        elif channels == 4:
            x = x[..., :3]
        elif channels is None:
            # Only in a traced TF function relaxed to unknown channels (`predict`
            # after inputs with other channel counts): pick channels 0, 0, 0 for
            # gray (+ alpha) and 0, 1, 2 for RGB (+ alpha), decided at run time.
            gray = ops.shape(x)[-1] < 3
            x = ops.take(x, ops.where(gray, ops.zeros(3, "int32"), ops.arange(3, dtype="int32")), axis=-1)
        elif channels != 3:
            raise ValueError(
                "Images must have 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) channels. "
                f"Received: images.shape={tuple(images.shape)}"
            )
        if tuple(x.shape[1:3]) != (self.image_size, self.image_size):
            x = ops.image.resize(x, (self.image_size, self.image_size), interpolation="bilinear")
        return normalize_images(x / 255.0, self.scaling)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.image_size, self.image_size, 3)

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size, "scaling": self.scaling}
