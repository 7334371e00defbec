import os

import keras
from keras import layers

from patchpu_keras.layers import ImagePreprocessing
from patchpu_keras.layers.image_preprocessing import check_scaling
from patchpu_keras.models import pretrained
from patchpu_keras.models.multi_label_model import policy_scope

ARCHITECTURES = ("resnet50", "tiny")


def feature_extractor(architecture, image_size, weights=None):
    """A CNN without top, from scratch or with the weights of a file or ImageNet.

    `"resnet50"`: `keras.applications.ResNet50` without its top; `weights` is
    `None` (from scratch, no download), `"imagenet"` (downloaded by Keras the
    first time) or a weights file (see `pretrained.application`).
    `"tiny"`: three strided 3x3 convolutions (16, 32, 64 filters), for tests and
    quick CPU comparisons, always from scratch.
    """
    shape = (image_size, image_size, 3)
    if architecture == "resnet50":
        return pretrained.application(
            keras.applications.ResNet50, weights, "backbone_weights", shape, name="resnet50"
        )
    if weights is not None:
        raise ValueError(
            "Pretrained weights exist for backbone='resnet50' only. "
            f"Received: backbone={architecture!r}, backbone_weights={weights!r}"
        )
    if architecture == "tiny":
        inputs = keras.Input(shape)
        x = inputs
        for filters in (16, 32, 64):
            x = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        return keras.Model(inputs, x, name="tiny")
    raise ValueError(f"`backbone` must be one of {ARCHITECTURES}. Received: backbone={architecture!r}")


@keras.saving.register_keras_serializable(package="patchpu_keras")
class CAMBackbone(keras.Model):
    """Images to a CNN feature map: preprocessing, then ResNet-50 (or a tiny CNN) without top.

    The feature extractor of `CAMClassifier`; it saves, loads and runs alone.

    Args:
        architecture: `"resnet50"` (the single-positive papers' baseline) or
            `"tiny"` (three strided convolutions, for tests and quick runs).
        image_size: int, square input side.
        preprocessing: input scaling (`ImagePreprocessing(scaling=...)`); None
            means `"caffe"` (`keras.applications.resnet50.preprocess_input`)
            with `backbone_weights` and `"unit"` ([0, 1]) without.
        backbone_weights: `None` (from scratch), `"imagenet"` (Keras' ImageNet
            ResNet-50, downloaded the first time; without network, an error
            says how to make a local file) or the path of a `.weights.h5` /
            `.h5` file of a ResNet-50 (with or without top), loaded offline.
            Recorded in the config as provenance only: loading a saved
            backbone (or `from_config`) never downloads or reads it.

    Call arguments:
        images: `(batch, height, width, channels)`, values in [0, 255].
        training: bool.

    Returns:
        The feature map `(batch, h, w, channels)`.

    Example:
    ```python
    backbone = CAMBackbone("resnet50", image_size=448, backbone_weights="imagenet")
    backbone(images).shape  # (batch, 14, 14, 2048)
    ```

    Reference:
        He et al., "Deep Residual Learning for Image Recognition", CVPR 2016;
        Zhou et al., "Learning Deep Features for Discriminative Localization",
        CVPR 2016.
    """

    def __init__(self, architecture="resnet50", image_size=448, preprocessing=None, backbone_weights=None, **kwargs):
        if backbone_weights is not None and backbone_weights != pretrained.IMAGENET:
            backbone_weights = os.fspath(backbone_weights)
        super().__init__(**kwargs)
        self.architecture = architecture
        self.image_size = int(image_size)
        self.preprocessing = preprocessing or ("caffe" if backbone_weights is not None else "unit")
        check_scaling(self.preprocessing, "preprocessing")
        self.backbone_weights = backbone_weights
        # === Layers ===
        with policy_scope(self):
            self.image_preprocessing = ImagePreprocessing(
                self.image_size, scaling=self.preprocessing, name="image_preprocessing"
            )
            self.features = feature_extractor(architecture, self.image_size, backbone_weights)
        self.built = True

    @property
    def output_channels(self):
        return self.features.output.shape[-1]

    def call(self, images, training=None):
        return self.features(self.image_preprocessing(images), training=training)

    # === Config ===

    def get_config(self):
        return {
            "name": self.name,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "architecture": self.architecture,
            "image_size": self.image_size,
            "preprocessing": self.preprocessing,
            "backbone_weights": self.backbone_weights,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # The weights come from the saved file (or start fresh, for a clone): the
        # source is kept as a record only, never downloaded or read again.
        config = dict(config)
        source = config.pop("backbone_weights", None)
        backbone = cls(**config)
        backbone.backbone_weights = source
        return backbone
