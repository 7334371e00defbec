import keras
import numpy as np
from keras import ops

from patchpu_keras import labels as label_utils
from patchpu_keras.labels import FULL_LABELS, OBSERVED_LABELS
from patchpu_keras.layers import (
    LabelCodebookAttention,
    MultiResolutionPatches,
    PatchEmbedder,
    SoftmaxLabelClassifier,
)
from patchpu_keras.losses import ObservedLabelLoss


@keras.saving.register_keras_serializable(package="patchpu_keras")
class PatchPUClassifier(keras.Model):
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
        max_patches_per_resolution: optional int, random patch subsampling per
            level during training (sec. 3.1.1).
        drop_connect_rate: float, EfficientNet drop-connect rate.
        label_names: optional list of L label names, saved with the model.
        seed: optional int, seed of the patch subsampling.

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
        max_patches_per_resolution=None,
        drop_connect_rate=0.2,
        label_names=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_labels) != num_labels or num_labels < 1:
            raise ValueError(f"`num_labels` must be an integer >= 1. Received: num_labels={num_labels}")
        if label_names is not None:
            label_names = [str(name) for name in label_names]
            if len(label_names) != num_labels or len(set(label_names)) != num_labels:
                raise ValueError(
                    f"`label_names` must be {num_labels} distinct names. "
                    f"Received: label_names={label_names}"
                )
        self.num_labels = int(num_labels)
        self.image_size = int(image_size)
        self.patch_size = int(patch_size)
        self.stride = int(stride) if stride is not None else int(patch_size)
        self.num_resolutions = num_resolutions
        self.downsample_factor = downsample_factor
        self.embedding_dim = embedding_dim
        self.mlp_units = mlp_units
        self.max_patches_per_resolution = max_patches_per_resolution
        self.drop_connect_rate = drop_connect_rate
        self.label_names = label_names
        self.seed = seed

        # === Layers ===
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
            embedding_dim=embedding_dim, drop_connect_rate=drop_connect_rate, name="embedder"
        )
        self.attention = LabelCodebookAttention(
            num_labels, embedding_dim=embedding_dim, mlp_units=mlp_units, name="attention"
        )
        self.classifier = SoftmaxLabelClassifier(num_labels, name="classifier")

        # Every shape is known from the config, so the weights exist as soon as
        # the model does (save, load and summary need no sample call).
        num_patches = self.patches.num_patches(self.image_size, self.image_size)
        self.embedder.build((None, num_patches, self.patch_size, self.patch_size, 3))
        self.attention.build((None, num_patches, embedding_dim))
        self.classifier.build((None, num_labels, embedding_dim))
        self.built = True

    @property
    def num_patches(self):
        """Patches per image at inference."""
        return self.patches.num_patches(self.image_size, self.image_size)

    def build(self, input_shape=None):
        # Sublayers are built in __init__; Keras calls this when loading.
        self.built = True

    def call(self, images, training=None):
        x = ops.cast(images, self.compute_dtype)
        channels = x.shape[-1]
        if channels in (1, 2):
            x = ops.concatenate([x[..., :1]] * 3, axis=-1)
        elif channels == 4:
            x = x[..., :3]
        elif channels != 3:
            raise ValueError(
                "Images must have 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) channels. "
                f"Received: images.shape={tuple(images.shape)}"
            )
        if tuple(x.shape[1:3]) != (self.image_size, self.image_size):
            x = ops.image.resize(x, (self.image_size, self.image_size), interpolation="bilinear")
        x = x / 255.0
        patches = self.patches(x, training=training)
        patch_embeddings = self.embedder(patches, training=training)
        label_embeddings, attention = self.attention(patch_embeddings)
        probabilities = self.classifier(label_embeddings)
        return {
            "probabilities": probabilities,
            "label_embeddings": label_embeddings,
            "attention": attention,
        }

    # === Training ===

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        labels = label_utils.unpack_labels(y, self.num_labels)
        if isinstance(self.loss, ObservedLabelLoss):
            total = self.loss(labels, y_pred, sample_weight=sample_weight)
        else:
            # A plain Keras loss (e.g. "binary_crossentropy") sees probabilities
            # against full labels, or the observed positives when there are none.
            targets = labels.get(FULL_LABELS, ops.cast(labels[OBSERVED_LABELS] > 0, "float32"))
            total = super().compute_loss(
                x, targets, y_pred["probabilities"], sample_weight, training
            )
            return total
        for extra in self.losses:
            total = total + ops.cast(ops.sum(extra), total.dtype)
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        labels = label_utils.unpack_labels(y, self.num_labels)
        if FULL_LABELS in labels and self._compile_metrics is not None:
            self._compile_metrics.update_state(
                labels[FULL_LABELS], y_pred["probabilities"], sample_weight
            )
            return self.get_metrics_result()
        # Without full labels (single positive training), ranking metrics are
        # meaningless: report the loss only. The compiled metrics are still
        # built, so Keras can read (and reset) them at the end of the epoch.
        if self._compile_metrics is not None and not self._compile_metrics.built:
            self._compile_metrics.build(labels[OBSERVED_LABELS], y_pred["probabilities"])
        return {"loss": self._loss_tracker.result()}

    def fit(self, x=None, y=None, *args, **kwargs):
        self._check_arrays(x, y, "fit")
        validation = kwargs.get("validation_data")
        if isinstance(validation, (tuple, list)) and len(validation) >= 2:
            self._check_arrays(validation[0], validation[1], "fit validation_data")
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._check_arrays(x, y, "evaluate")
        return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check_arrays(x, None, "predict")
        return super().predict(x, *args, **kwargs)

    def _check_arrays(self, x, y, where):
        # In-memory arrays are checked before training starts; tf.data inputs are
        # checked by the pipeline that builds them (patchpu_keras.data).
        if isinstance(x, np.ndarray):
            label_utils.check_images(x, f"{where}: images")
        targets = y if isinstance(y, dict) else {OBSERVED_LABELS: y}
        for key, value in targets.items():
            if not isinstance(value, np.ndarray) or key == "index":
                continue
            if key == FULL_LABELS:
                label_utils.check_full_labels(value, self.num_labels, f"{where}: {key}")
            else:
                label_utils.check_observed_labels(value, self.num_labels, f"{where}: {key}")

    # === Config ===

    def get_config(self):
        return {
            "name": self.name,
            "num_labels": self.num_labels,
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "stride": self.stride,
            "num_resolutions": self.num_resolutions,
            "downsample_factor": self.downsample_factor,
            "embedding_dim": self.embedding_dim,
            "mlp_units": self.mlp_units,
            "max_patches_per_resolution": self.max_patches_per_resolution,
            "drop_connect_rate": self.drop_connect_rate,
            "label_names": self.label_names,
            "seed": self.seed,
        }
