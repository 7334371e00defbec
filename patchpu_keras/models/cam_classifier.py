import keras
from keras import layers, ops

from patchpu_keras.models.cam_backbone import CAMBackbone
from patchpu_keras.models.multi_label_model import MultiLabelModel, float32_outputs, policy_scope

# Arguments of the task (the head); every other argument of `create` goes to the backbone.
HEAD_ARGUMENTS = ("boost_lu_alpha", "label_names", "thresholds", "name")


@keras.saving.register_keras_serializable(package="patchpu_keras")
class CAMClassifier(MultiLabelModel):
    """Class-activation-map classifier: a `CAMBackbone`, 1x1 convolution, global average pooling.

    The backbone's feature map goes through a 1x1 convolution to L class
    activation maps; their spatial mean is each label's logit, and the sigmoid
    of the logit its probability. With `boost_lu_alpha` set, BoostLU(x) =
    max(x, alpha * x) is applied element-wise to the maps before pooling, in
    training and inference, which amplifies the positive evidence of every
    region (Kim et al. 2023). Trained from scratch, or from ImageNet weights
    (`CAMBackbone(backbone_weights=...)`), as the single-positive papers do.

    Inputs, targets and losses are those of `PatchPUClassifier` (see
    `MultiLabelModel`); the weak negative loss needs label embeddings and does
    not apply. `CAMClassifier.create(num_labels, backbone="resnet50", ...)`
    builds the backbone and the task in one line.

    Args:
        backbone: a `CAMBackbone`.
        num_labels: int, L.
        boost_lu_alpha: optional float >= 1 (5 in Kim et al. 2023).
        label_names: optional list of L names.
        thresholds: optional list of L decision thresholds in [0, 1].

    Call arguments:
        images: `(batch, height, width, channels)`, values in [0, 255].
        training: bool.

    Returns:
        A dict with `probabilities` `(batch, L)`, `logits` `(batch, L)` and
        `cam` `(batch, h, w, L)` (after BoostLU when it is on).

    Example:
    ```python
    model = CAMClassifier.create(20, backbone="resnet50", image_size=448, boost_lu_alpha=5,
                                 backbone_weights="imagenet")
    ```

    Reference:
        Zhou et al., "Learning Deep Features for Discriminative Localization",
        CVPR 2016 (CAM); Kim et al., "Bridging the Gap between Model Explanations
        in Partially Annotated Multi-label Classification", CVPR 2023 (BoostLU,
        eq. 3).
    """

    def __init__(self, backbone, num_labels, boost_lu_alpha=None, label_names=None, thresholds=None, **kwargs):
        if not isinstance(backbone, CAMBackbone):
            raise ValueError(
                "`backbone` must be a `CAMBackbone` (or build both in one line with "
                f"`CAMClassifier.create(num_labels, ...)`). Received: backbone={backbone!r}"
            )
        if boost_lu_alpha is not None and boost_lu_alpha < 1:
            raise ValueError(
                f"`boost_lu_alpha` must be >= 1 or None. Received: boost_lu_alpha={boost_lu_alpha}"
            )
        super().__init__(num_labels, label_names=label_names, thresholds=thresholds, **kwargs)
        self.boost_lu_alpha = boost_lu_alpha
        # === Layers ===
        self.backbone = backbone
        with policy_scope(self):
            self.cam_head = layers.Conv2D(num_labels, 1, name="cam_head")
            self.cam_head.build(backbone.features.output.shape)
        self.built = True

    @classmethod
    def create(cls, num_labels, backbone="resnet50", dtype=None, **arguments):
        """A `CAMBackbone` and this task over it, from one flat list of keyword arguments.

        `backbone` is the architecture (`"resnet50"` or `"tiny"`); the head's
        arguments (`HEAD_ARGUMENTS`) go to the task, every other one to
        `CAMBackbone`; `dtype` to both.
        """
        head = {key: arguments.pop(key) for key in HEAD_ARGUMENTS if key in arguments}
        return cls(CAMBackbone(backbone, **arguments, dtype=dtype), num_labels, dtype=dtype, **head)

    def head_layers(self):
        """The 1x1 convolution to the class activation maps (see `MultiLabelModel.head_layers`)."""
        return [self.cam_head]

    def call(self, images, training=None):
        cam = self.cam_head(self.backbone(images, training=training))
        if self.boost_lu_alpha is not None:
            cam = ops.maximum(cam, self.boost_lu_alpha * cam)
        logits = ops.mean(ops.cast(cam, "float32"), axis=(1, 2))
        return float32_outputs({"probabilities": ops.sigmoid(logits), "logits": logits, "cam": cam})

    # === Config ===

    def get_config(self):
        return {**super().get_config(), "boost_lu_alpha": self.boost_lu_alpha}

    @classmethod
    def from_flat_config(cls, config):
        """The model of a config saved before the backbone and the task were split (`loss_state` dropped)."""
        config = dict(config)
        config.pop("loss_state", None)
        source = config.pop("backbone_weights", None)
        model = cls.create(**config)
        model.backbone.backbone_weights = source
        return model
