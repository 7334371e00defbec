import os

import keras
from keras import layers, ops

from patchpu_keras.models import pretrained
from patchpu_keras.models.multi_label_model import MultiLabelModel

BACKBONES = ("resnet50", "tiny")


def build_backbone(name, image_size, weights=None):
    """A feature extractor, from scratch or with the weights of a file or ImageNet.

    `"resnet50"`: `keras.applications.ResNet50` without its top; `weights` is
    `None` (from scratch, no download), `"imagenet"` (downloaded by Keras the
    first time) or a weights file (see `pretrained.application`).
    `"tiny"`: three strided 3x3 convolutions (16, 32, 64 filters), for tests and
    quick CPU comparisons, always from scratch.
    """
    shape = (image_size, image_size, 3)
    if name == "resnet50":
        return pretrained.application(
            keras.applications.ResNet50, weights, "backbone_weights", shape, name="resnet50"
        )
    if weights is not None:
        raise ValueError(
            "Pretrained weights exist for backbone='resnet50' only. "
            f"Received: backbone={name!r}, backbone_weights={weights!r}"
        )
    if name == "tiny":
        inputs = keras.Input(shape)
        x = inputs
        for filters in (16, 32, 64):
            x = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        return keras.Model(inputs, x, name="tiny")
    raise ValueError(f"`backbone` must be one of {BACKBONES}. Received: backbone={name!r}")


@keras.saving.register_keras_serializable(package="patchpu_keras")
class CAMClassifier(MultiLabelModel):
    """Class-activation-map classifier: a CNN, 1x1 convolution, global average pooling.

    The backbone's feature map goes through a 1x1 convolution to L class
    activation maps; their spatial mean is each label's logit, and the sigmoid
    of the logit its probability. With `boost_lu_alpha` set, BoostLU(x) =
    max(x, alpha * x) is applied element-wise to the maps before pooling, in
    training and inference, which amplifies the positive evidence of every
    region (Kim et al. 2023). Trained from scratch, or from ImageNet weights
    (`backbone_weights`), as the single-positive papers do.

    Inputs, targets and losses are those of `PatchPUClassifier` (see
    `MultiLabelModel`); the weak negative loss needs label embeddings and does
    not apply.

    Args:
        num_labels: int, L.
        backbone: `"resnet50"` (the papers' baseline) or `"tiny"`.
        image_size: int, square input side.
        boost_lu_alpha: optional float (5 in Kim et al. 2023).
        label_names: optional list of L names.
        loss_state: optional `LossState` of a stateful loss.
        backbone_weights: `None` (from scratch), `"imagenet"` (Keras' ImageNet
            ResNet-50, downloaded the first time; without network, an error
            says how to make a local file) or the path of a `.weights.h5` /
            `.h5` file of a ResNet-50 (with or without top), loaded offline.
            Only read when the model is built: a saved model holds its weights,
            so loading it (or `from_config`) never downloads or reads the file.
        preprocessing: input scaling; defaults to `"caffe"`
            (`keras.applications.resnet50.preprocess_input`: BGR, ImageNet mean
            subtracted) with `backbone_weights` and `"unit"` ([0, 1]) without.
            Saved with the model.

    Call arguments:
        images: `(batch, height, width, channels)`, values in [0, 255].
        training: bool.

    Returns:
        A dict with `probabilities` `(batch, L)`, `logits` `(batch, L)` and
        `cam` `(batch, h, w, L)` (after BoostLU when it is on).

    Example:
    ```python
    model = CAMClassifier(20, backbone="resnet50", image_size=448, boost_lu_alpha=5,
                          backbone_weights="imagenet")
    ```

    Reference:
        Zhou et al., "Learning Deep Features for Discriminative Localization",
        CVPR 2016 (CAM); Kim et al., "Bridging the Gap between Model Explanations
        in Partially Annotated Multi-label Classification", CVPR 2023 (BoostLU,
        eq. 3).
    """

    def __init__(
        self,
        num_labels,
        backbone="resnet50",
        image_size=448,
        boost_lu_alpha=None,
        label_names=None,
        loss_state=None,
        backbone_weights=None,
        preprocessing=None,
        **kwargs,
    ):
        if backbone_weights is not None and backbone_weights != pretrained.IMAGENET:
            backbone_weights = os.fspath(backbone_weights)
        if preprocessing is None:
            preprocessing = "caffe" if backbone_weights is not None else "unit"
        super().__init__(
            num_labels, image_size, label_names=label_names, loss_state=loss_state,
            preprocessing=preprocessing, **kwargs,
        )
        if boost_lu_alpha is not None and boost_lu_alpha < 1:
            raise ValueError(
                f"`boost_lu_alpha` must be >= 1 or None. Received: boost_lu_alpha={boost_lu_alpha}"
            )
        self.backbone_name = backbone
        self.boost_lu_alpha = boost_lu_alpha
        self.backbone_weights = backbone_weights
        # === Layers ===
        with self.layer_policy():
            self.backbone = build_backbone(backbone, self.image_size, backbone_weights)
            self.cam_head = layers.Conv2D(num_labels, 1, name="cam_head")
            self.cam_head.build(self.backbone.output.shape)
        self.built = True

    def head_layers(self):
        """The 1x1 convolution to the class activation maps (see `MultiLabelModel.head_layers`)."""
        return [self.cam_head]

    def call(self, images, training=None):
        features = self.backbone(self.prepare_images(images), training=training)
        cam = self.cam_head(features)
        if self.boost_lu_alpha is not None:
            cam = ops.maximum(cam, self.boost_lu_alpha * cam)
        logits = ops.mean(ops.cast(cam, "float32"), axis=(1, 2))
        return self.float32_outputs({"probabilities": ops.sigmoid(logits), "logits": logits, "cam": cam})

    def get_config(self):
        return {
            **super().get_config(),
            "backbone": self.backbone_name,
            "boost_lu_alpha": self.boost_lu_alpha,
            "backbone_weights": self.backbone_weights,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # The weights come from the saved file (or start fresh, for a clone): the
        # source is kept as a record only, never downloaded or read again.
        config = dict(config)
        source = config.pop("backbone_weights", None)
        model = cls(**config)
        model.backbone_weights = source
        return model
