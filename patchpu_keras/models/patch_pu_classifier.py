import os

import keras

from patchpu_keras.layers import (
    LabelCodebookAttention,
    MultiResolutionPatches,
    PatchEmbedder,
    SoftmaxLabelClassifier,
)
from patchpu_keras.layers.label_codebook_attention import PAPER_EXACT
from patchpu_keras.models import pretrained
from patchpu_keras.models.multi_label_model import MultiLabelModel


@keras.saving.register_keras_serializable(package="patchpu_keras")
class PatchPUClassifier(MultiLabelModel):
    """Patch-based multi-label classifier for single positive annotations.

    Images go through four stages: multi-resolution patches (sec. 3.1.1), an
    EfficientNet-B0 patch embedder (sec. 3.1.2), label-codebook cross-attention
    pooling (eq. 1-2) and a shared softmax classifier (eq. 3).

    Inputs are images `(batch, height, width, channels)` with values in
    [0, 255], any numeric dtype. Grayscale (1 channel) and gray+alpha (2) are
    repeated to RGB, RGBA drops its alpha, and any size other than
    `image_size x image_size` is resized (bilinear) inside the model, so images
    smaller than a patch are resized up.

    Training: `compile(loss=...)` takes a loss of `patchpu_keras.losses`; they
    read the whole output dict (the weak negative loss needs the label
    embeddings) through the `compute_loss` override, which is the same code on
    every backend. Targets are observed labels (+1/0/-1) or a dict with
    `observed_labels`, `full_labels` ({0, 1}) and `index`. Compiled metrics (e.g.
    `MeanAveragePrecision`) are updated with the probabilities against
    `full_labels`, and only when the target carries them, so training on
    single positives logs the loss and validation logs `val_map`.

    Args:
        num_labels: int, number of labels L.
        image_size: int, side of the square input the model works on.
        patch_size: int, patch side (64 in the paper).
        stride: int, patch stride; defaults to `patch_size`.
        num_resolutions: int, resolution levels (3 in the paper).
        downsample_factor: size ratio between levels (2 in the paper).
        embedding_dim: int, F (256 in the paper).
        mlp_units: int, width of the MLP of eq. (2).
        attention_score_scale: positive float multiplying the attention
            scores of eq. (1) (`LabelCodebookAttention(score_scale=...)`).
        attention_learn_temperature: bool, a learned scalar temperature on
            those scores (`LabelCodebookAttention(learn_temperature=...)`).
        codebook_init_mode: `"fan_out"` or `"fan_in"`, the variance scaling
            mode of the label codebooks.
        max_patches_per_resolution: optional int, random patch subsampling per
            level during training (sec. 3.1.1).
        drop_connect_rate: float, EfficientNet drop-connect rate.
        label_names: optional list of L label names, saved with the model.
        seed: optional int, seed of the patch subsampling.
        loss_state: optional `LossState` of a stateful loss (ROLE, LL, EN + CL,
            EM + APL), from `loss.make_state(observed_labels)`.
        embedder_weights: `None` (from scratch, as in the paper), `"imagenet"`
            (Keras' ImageNet EfficientNet-B0, downloaded the first time;
            without network, an error says how to make a local file) or the
            path of a `.weights.h5` / `.h5` file of an EfficientNet-B0 (with or
            without top), loaded offline. Its stem and blocks up to
            `block3b_add` are copied into the embedder; the projection, the
            attention and the classifier start from scratch. Only read when the
            model is built: loading a saved model never downloads.
        preprocessing: input scaling; defaults to what the embedder's weights
            expect: `"torch"` (ImageNet mean and std) for Keras' ImageNet
            EfficientNet-B0, `"unit"` ([0, 1]) from scratch. Saved with the
            model.
        folded_batch_norm: bool; True for the inference-only model that
            `fold_batch_norm()` returns: the embedder's batch norms are folded
            into its convolutions (`PatchEmbedder(folded_batch_norm=True)`).
            It computes the same outputs with fewer passes over the
            activations, and refuses `training=True` (`fit`,
            `train_on_batch`).
        rematerialize_embedder: bool; True keeps only the inputs of the
            embedder's stem and blocks for the backward pass of a training
            step and recomputes the rest there
            (`PatchEmbedder(rematerialize=True)`): the same training, with
            a lower peak memory for one more forward pass of the embedder
            (docs/performance.md gives both, measured).

    Call arguments:
        images: `(batch, height, width, channels)` tensor, values in [0, 255].
        training: bool.

    Returns:
        A dict with `probabilities` `(batch, L)`, `label_embeddings`
        `(batch, L, F)` and `attention` `(batch, L, num_patches)`.

    Example:
    ```python
    model = PatchPUClassifier(num_labels=20, image_size=640)
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
        num_labels,
        image_size=640,
        patch_size=64,
        stride=None,
        num_resolutions=3,
        downsample_factor=2,
        embedding_dim=256,
        mlp_units=256,
        attention_score_scale=1.0,
        attention_learn_temperature=False,
        codebook_init_mode="fan_out",
        max_patches_per_resolution=None,
        drop_connect_rate=0.2,
        label_names=None,
        seed=None,
        loss_state=None,
        embedder_weights=None,
        preprocessing=None,
        folded_batch_norm=False,
        rematerialize_embedder=False,
        **kwargs,
    ):
        if folded_batch_norm and embedder_weights is not None:
            raise ValueError(
                "A model with folded batch norms is made from a built model by "
                "`model.fold_batch_norm()`; build the model with `embedder_weights` unfolded, "
                f"then fold it. Received: folded_batch_norm=True, embedder_weights={embedder_weights!r}"
            )
        if embedder_weights is not None and embedder_weights != pretrained.IMAGENET:
            embedder_weights = os.fspath(embedder_weights)
        efficientnet = None
        if embedder_weights is not None:
            # Any input size holds the same weights; 32 is the smallest Keras accepts.
            efficientnet = pretrained.application(
                keras.applications.EfficientNetB0, embedder_weights, "embedder_weights", (32, 32, 3)
            )
            if preprocessing is None:
                preprocessing = pretrained.efficientnet_b0_preprocessing(efficientnet)
        super().__init__(
            num_labels, image_size, label_names=label_names, loss_state=loss_state,
            preprocessing=preprocessing or "unit", **kwargs,
        )
        self.patch_size = int(patch_size)
        self.stride = int(stride) if stride is not None else int(patch_size)
        self.num_resolutions = num_resolutions
        self.downsample_factor = downsample_factor
        self.embedding_dim = embedding_dim
        self.mlp_units = mlp_units
        self.attention_score_scale = attention_score_scale
        self.attention_learn_temperature = attention_learn_temperature
        self.codebook_init_mode = codebook_init_mode
        self.max_patches_per_resolution = max_patches_per_resolution
        self.drop_connect_rate = drop_connect_rate
        self.seed = seed
        self.embedder_weights = embedder_weights
        self.folded_batch_norm = bool(folded_batch_norm)
        self.rematerialize_embedder = bool(rematerialize_embedder)

        # === Layers ===
        with self.layer_policy():
            self.patches = MultiResolutionPatches(
                patch_size=self.patch_size,
                stride=self.stride,
                num_resolutions=num_resolutions,
                downsample_factor=downsample_factor,
                max_patches_per_resolution=max_patches_per_resolution,
                seed=seed,
                name="patches",
            )
            self.patches._check_size(self.image_size, self.image_size)
            self.embedder = PatchEmbedder(
                embedding_dim=embedding_dim,
                drop_connect_rate=drop_connect_rate,
                folded_batch_norm=self.folded_batch_norm,
                rematerialize=self.rematerialize_embedder,
                name="embedder",
            )
            self.attention = LabelCodebookAttention(
                num_labels,
                embedding_dim=embedding_dim,
                mlp_units=mlp_units,
                score_scale=attention_score_scale,
                learn_temperature=attention_learn_temperature,
                codebook_init_mode=codebook_init_mode,
                name="attention",
            )
            # The softmax over labels stays in float32 under mixed precision.
            self.classifier = SoftmaxLabelClassifier(num_labels, name="classifier", dtype="float32")

            # Every shape is known from the config, so the weights exist as soon as
            # the model does (save, load and summary need no sample call).
            num_patches = self.patches.num_patches(self.image_size, self.image_size)
            self.embedder.build((None, num_patches, self.patch_size, self.patch_size, 3))
            self.attention.build((None, num_patches, embedding_dim))
            self.classifier.build((None, num_labels, embedding_dim))
            if efficientnet is not None:
                self.embedder.copy_efficientnet_b0_weights(efficientnet)
        self.built = True

    @property
    def num_patches(self):
        """Patches per image at inference."""
        return self.patches.num_patches(self.image_size, self.image_size)

    def head_layers(self):
        """Label pooling and classifier, all but the patch embedder (see `MultiLabelModel.head_layers`)."""
        return [self.attention, self.classifier]

    def fold_batch_norm(self):
        """A copy of this model for inference, with the embedder's batch norms folded in.

        In inference each batch norm of the embedder is an affine map per
        channel, which folds into the bias-free convolution before it (see
        `patchpu_keras.layers.mb_conv_block.folded_convolution_weights`). The
        copy has the same config but `folded_batch_norm=True` and no
        `loss_state` (training state), the same weights with every batch norm
        folded, and computes the same outputs up to float rounding with one
        pass less over each activation of the embedder. It saves and loads
        like any model, and refuses training.

        Returns:
            A new `PatchPUClassifier`; this model is unchanged.

        Example:
        ```python
        model = load_model("runs/demo/model.keras")
        fast = model.fold_batch_norm()
        fast.predict(images)["probabilities"]  # model.predict(images), faster
        ```
        """
        if self.folded_batch_norm:
            raise ValueError(
                "The batch norms of this model are already folded. Received: folded_batch_norm=True"
            )
        config = {**self.get_config(), "folded_batch_norm": True, "loss_state": None}
        folded = type(self).from_config(config)
        folded.embedder.copy_folded_weights(self.embedder)
        for layer in (self.patches, self.attention, self.classifier):
            folded.get_layer(layer.name).set_weights(layer.get_weights())
        return folded

    def for_inference(self):
        """`fold_batch_norm()` when that is exact up to float32 rounding (see `MultiLabelModel.for_inference`)."""
        if self.folded_batch_norm or self.compute_dtype != "float32":
            return self
        return self.fold_batch_norm()

    def call(self, images, training=None):
        x = self.prepare_images(images)
        patches = self.patches(x, training=training)
        patch_embeddings = self.embedder(patches, training=training)
        label_embeddings, attention = self.attention(patch_embeddings)
        probabilities = self.classifier(label_embeddings)
        return self.float32_outputs({
            "probabilities": probabilities,
            "label_embeddings": label_embeddings,
            "attention": attention,
        })

    # === Config ===

    def get_config(self):
        return {
            **super().get_config(),
            "patch_size": self.patch_size,
            "stride": self.stride,
            "num_resolutions": self.num_resolutions,
            "downsample_factor": self.downsample_factor,
            "embedding_dim": self.embedding_dim,
            "mlp_units": self.mlp_units,
            "attention_score_scale": self.attention_score_scale,
            "attention_learn_temperature": self.attention_learn_temperature,
            "codebook_init_mode": self.codebook_init_mode,
            "max_patches_per_resolution": self.max_patches_per_resolution,
            "drop_connect_rate": self.drop_connect_rate,
            "seed": self.seed,
            "embedder_weights": self.embedder_weights,
            "folded_batch_norm": self.folded_batch_norm,
            "rematerialize_embedder": self.rematerialize_embedder,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # A model saved before the attention arguments existed is the paper-exact one.
        legacy = {
            "attention_score_scale": PAPER_EXACT["score_scale"],
            "attention_learn_temperature": PAPER_EXACT["learn_temperature"],
            "codebook_init_mode": PAPER_EXACT["codebook_init_mode"],
        }
        # The weights come from the saved file (or start fresh, for a clone): the
        # source is kept as a record only, never downloaded or read again.
        config = {**legacy, **config}
        source = config.pop("embedder_weights", None)
        model = cls(**config)
        model.embedder_weights = source
        return model
