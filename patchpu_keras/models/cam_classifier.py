import keras
from keras import layers, ops

from patchpu_keras.models.multi_label_model import MultiLabelModel

BACKBONES = ("resnet50", "tiny")


def build_backbone(name, image_size):
    """A feature extractor trained from scratch (no pretrained weights, no download).

    `"resnet50"`: `keras.applications.ResNet50(weights=None)` without its top.
    `"tiny"`: three strided 3x3 convolutions (16, 32, 64 filters), for tests and
    quick CPU comparisons.
    """
    shape = (image_size, image_size, 3)
    if name == "resnet50":
        return keras.applications.ResNet50(
            weights=None, include_top=False, input_shape=shape, name="resnet50"
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
    region (Kim et al. 2023). Trained from scratch.

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

    Call arguments:
        images: `(batch, height, width, channels)`, values in [0, 255].
        training: bool.

    Returns:
        A dict with `probabilities` `(batch, L)`, `logits` `(batch, L)` and
        `cam` `(batch, h, w, L)` (after BoostLU when it is on).

    Example:
    ```python
    model = CAMClassifier(20, backbone="resnet50", image_size=448, boost_lu_alpha=5)
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
        **kwargs,
    ):
        super().__init__(num_labels, image_size, label_names=label_names, loss_state=loss_state, **kwargs)
        if boost_lu_alpha is not None and boost_lu_alpha < 1:
            raise ValueError(
                f"`boost_lu_alpha` must be >= 1 or None. Received: boost_lu_alpha={boost_lu_alpha}"
            )
        self.backbone_name = backbone
        self.boost_lu_alpha = boost_lu_alpha
        # === Layers ===
        with self.layer_policy():
            self.backbone = build_backbone(backbone, self.image_size)
            self.cam_head = layers.Conv2D(num_labels, 1, name="cam_head")
            self.cam_head.build(self.backbone.output.shape)
        self.built = True

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
        }
