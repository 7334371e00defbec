import keras

from patchpu_keras.layers import LabelCodebookAttention, SoftmaxLabelClassifier
from patchpu_keras.layers.label_codebook_attention import PAPER_EXACT
from patchpu_keras.models.multi_label_model import MultiLabelModel, float32_outputs, policy_scope
from patchpu_keras.models.patch_backbone import PatchBackbone

# Arguments of the task (the head); every other argument of `create` goes to the backbone.
HEAD_ARGUMENTS = (
    "mlp_units", "attention_score_scale", "attention_learn_temperature", "codebook_init_mode",
    "label_names", "thresholds", "name",
)


@keras.saving.register_keras_serializable(package="patchpu_keras")
class PatchPUClassifier(MultiLabelModel):
    """Patch-based multi-label classifier for single positive annotations: a task over a `PatchBackbone`.

    The backbone turns images into patch embeddings (preprocessing,
    multi-resolution patches, EfficientNet-B0 embedder: sec. 3.1.1-3.1.2);
    this task pools them per label with label-codebook cross-attention (eq.
    1-2) and scores each label with a shared softmax classifier (eq. 3).

    `PatchPUClassifier.create(num_labels, **arguments)` builds the backbone and
    the task from one flat list of arguments, e.g. the paper's model:
    `PatchPUClassifier.create(20, image_size=640)`.

    Training: `compile(loss=...)` takes a loss of `patchpu_keras.losses`; they
    read the whole output dict (the weak negative loss needs the label
    embeddings) through the `compute_loss` override, the same code on every
    backend. Targets are observed labels (+1/0/-1) or a dict with
    `observed_labels`, `full_labels` ({0, 1}) and `index`. Compiled metrics
    (e.g. `MeanAveragePrecision`) are updated against `full_labels`, only when
    the target carries them. A stateful loss (ROLE, LL, EN + CL, EM + APL)
    trains through `TrainingModel(model, loss.make_state(observed_labels))`,
    which holds its tables beside the model.

    Args:
        backbone: a `PatchBackbone`.
        num_labels: int, number of labels L.
        mlp_units: int, width of the MLP of eq. (2).
        attention_score_scale: positive float multiplying the attention
            scores of eq. (1) (`LabelCodebookAttention(score_scale=...)`).
        attention_learn_temperature: bool, a learned scalar temperature on
            those scores (`LabelCodebookAttention(learn_temperature=...)`).
        codebook_init_mode: `"fan_out"` or `"fan_in"`, the variance scaling
            mode of the label codebooks.
        label_names: optional list of L label names, saved with the model.
        thresholds: optional list of L decision thresholds in [0, 1]
            (`model.thresholds`, 0.5 until set), saved with the model.

    Call arguments:
        images: `(batch, height, width, channels)` tensor, values in [0, 255].
        training: bool.

    Returns:
        A dict with `probabilities` `(batch, L)`, `label_embeddings`
        `(batch, L, F)` and `attention` `(batch, L, num_patches)`.

    Example:
    ```python
    backbone = PatchBackbone(image_size=640)
    model = PatchPUClassifier(backbone, num_labels=20)  # or PatchPUClassifier.create(20, image_size=640)
    model.compile(
        optimizer=keras.optimizers.Lamb(1e-3, weight_decay=1e-4),
        loss=patchpu_keras.losses.WeakNegative(),
        metrics=[patchpu_keras.metrics.MeanAveragePrecision(20)],
    )
    model.fit(images, observed_labels, batch_size=16, epochs=25)
    model.predict(images)["probabilities"]
    ```

    Reference:
        Jouanneau, Bugeau, Palyart, Papadakis, Vézard, "A Patch-Based
        Architecture for Multi-Label Classification from Single Positive
        Annotations", VISAPP 2023.
    """

    def __init__(
        self,
        backbone,
        num_labels,
        mlp_units=256,
        attention_score_scale=1.0,
        attention_learn_temperature=False,
        codebook_init_mode="fan_out",
        label_names=None,
        thresholds=None,
        **kwargs,
    ):
        if not isinstance(backbone, PatchBackbone):
            raise ValueError(
                "`backbone` must be a `PatchBackbone` (or build both in one line with "
                f"`PatchPUClassifier.create(num_labels, ...)`). Received: backbone={backbone!r}"
            )
        super().__init__(num_labels, label_names=label_names, thresholds=thresholds, **kwargs)
        self.mlp_units = mlp_units
        self.attention_score_scale = attention_score_scale
        self.attention_learn_temperature = attention_learn_temperature
        self.codebook_init_mode = codebook_init_mode

        # === Layers ===
        self.backbone = backbone
        with policy_scope(self):
            self.attention = LabelCodebookAttention(
                num_labels,
                embedding_dim=backbone.embedding_dim,
                mlp_units=mlp_units,
                score_scale=attention_score_scale,
                learn_temperature=attention_learn_temperature,
                codebook_init_mode=codebook_init_mode,
                name="attention",
            )
            # The softmax over labels stays in float32 under mixed precision.
            self.classifier = SoftmaxLabelClassifier(num_labels, name="classifier", dtype="float32")
            self.attention.build((None, backbone.num_patches, backbone.embedding_dim))
            self.classifier.build((None, num_labels, backbone.embedding_dim))
        self.built = True

    @classmethod
    def create(cls, num_labels, dtype=None, **arguments):
        """A `PatchBackbone` and this task over it, from one flat list of keyword arguments.

        The head's arguments (`HEAD_ARGUMENTS`: `mlp_units`, the attention's,
        `label_names`, `thresholds`, `name`) go to the task, every other one
        to `PatchBackbone`; `dtype` to both. With no argument but
        `num_labels`, the paper's model (640 x 640 images, 64 x 64 patches,
        3 levels, F = 256).

        Example:
        ```python
        model = PatchPUClassifier.create(20, image_size=640, label_names=VOC_NAMES)
        ```
        """
        head = {key: arguments.pop(key) for key in HEAD_ARGUMENTS if key in arguments}
        return cls(PatchBackbone(**arguments, dtype=dtype), num_labels, dtype=dtype, **head)

    @property
    def num_patches(self):
        """Patches per image at inference."""
        return self.backbone.num_patches

    def head_layers(self):
        """Label pooling and classifier, all but the backbone (see `MultiLabelModel.head_layers`)."""
        return [self.attention, self.classifier]

    def fold_batch_norm(self):
        """A copy of this model for inference, over its backbone with batch norms folded in.

        The copy's backbone is `self.backbone.fold_batch_norm()`; its head has
        the same config, weights and thresholds. It computes the same outputs
        up to float rounding with one pass less over each activation of the
        embedder, saves and loads like any model, and refuses training.

        Returns:
            A new `PatchPUClassifier`; this model is unchanged.

        Example:
        ```python
        model = load_model("runs/demo/model.keras")
        fast = model.fold_batch_norm()
        fast.predict(images)["probabilities"]  # model.predict(images), faster
        ```
        """
        config = {key: value for key, value in self.get_config().items() if key != "backbone"}
        folded = type(self)(self.backbone.fold_batch_norm(), **config)
        folded.attention.set_weights(self.attention.get_weights())
        folded.classifier.set_weights(self.classifier.get_weights())
        return folded

    def for_inference(self):
        """`fold_batch_norm()` when that is exact up to float32 rounding (see `MultiLabelModel.for_inference`)."""
        if self.backbone.folded_batch_norm or self.compute_dtype != "float32":
            return self
        return self.fold_batch_norm()

    def call(self, images, training=None):
        patch_embeddings = self.backbone(images, training=training)
        label_embeddings, attention = self.attention(patch_embeddings)
        probabilities = self.classifier(label_embeddings)
        return float32_outputs({
            "probabilities": probabilities,
            "label_embeddings": label_embeddings,
            "attention": attention,
        })

    # === Config ===

    def get_config(self):
        return {
            **super().get_config(),
            "mlp_units": self.mlp_units,
            "attention_score_scale": self.attention_score_scale,
            "attention_learn_temperature": self.attention_learn_temperature,
            "codebook_init_mode": self.codebook_init_mode,
        }

    @classmethod
    def from_flat_config(cls, config):
        """The model of a config saved before the backbone and the task were split.

        Those configs list every argument flat, with the training run's
        `loss_state`, which is dropped (an inference model holds weights
        only). `patchpu_keras.models.load_model` loads such files, weights
        included; `from_config` refuses them, saying so.
        """
        # A model saved before the attention arguments existed is the paper-exact one.
        legacy = {
            "attention_score_scale": PAPER_EXACT["score_scale"],
            "attention_learn_temperature": PAPER_EXACT["learn_temperature"],
            "codebook_init_mode": PAPER_EXACT["codebook_init_mode"],
        }
        config = {**legacy, **config}
        config.pop("loss_state", None)
        source = config.pop("embedder_weights", None)
        model = cls.create(**config)
        model.backbone.embedder_weights = source
        return model
