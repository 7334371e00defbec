import math

import keras
from keras import layers, ops

from patchpu_keras.layers.initializers import unit_variance_scaling

CODEBOOK_INIT_MODES = ("fan_out", "fan_in")
# Eq. (1) as written: bare dot products, codebook rows of norm about 1.
PAPER_EXACT = {"score_scale": 1.0, "learn_temperature": False, "codebook_init_mode": "fan_out"}


@keras.saving.register_keras_serializable(package="patchpu_keras")
class LabelCodebookAttention(keras.layers.Layer):
    """Pools patch embeddings into one image representation per label.

    Each label l has a learned codebook vector `e_label_l`. Its attention over the
    patches of an image is the softmax, over patches i, of `e_label_l . e_patch_i`
    (eq. 1); the pooled vector `A E_patch` goes through a two-layer GELU MLP with
    a residual connection (eq. 2).

    The paper writes the scores as the bare dot product and says nothing of a
    temperature; `score_scale=1`, `learn_temperature=False` is that. The scores
    can be multiplied by a fixed `score_scale` (`1 / sqrt(F)` is the
    transformer's scaled dot product) and by a learned scalar temperature
    (starting at 1). The codebooks are initialised with variance scaling of
    scale 1 (sec. 4.1.2) over `codebook_init_mode`: `"fan_out"` (F) gives rows
    of norm about 1, `"fan_in"` (L, Keras' default mode for an `(L, F)` weight)
    rows of norm about `sqrt(F / L)`. `docs/attention.md` measures each.

    Args:
        num_labels: int, number of labels L.
        embedding_dim: int, size F of patch and label embeddings.
        mlp_units: int, hidden width of the MLP f.
        score_scale: positive float multiplying the scores of eq. (1).
        learn_temperature: bool, whether a learned scalar (initialised to 1)
            also multiplies them.
        codebook_init_mode: `"fan_out"` or `"fan_in"`, the variance scaling
            mode of the codebooks.

    Call arguments:
        patch_embeddings: tensor `(batch, num_patches, embedding_dim)`.

    Returns:
        A tuple `(label_embeddings, attention)`: `(batch, num_labels,
        embedding_dim)` image representations, one per label, and `(batch,
        num_labels, num_patches)` attention weights that sum to 1 over patches.

    Example:
    >>> layer = LabelCodebookAttention(num_labels=20)
    >>> embeddings, attention = layer(np.zeros((2, 129, 256)))
    >>> embeddings.shape, attention.shape
    ((2, 20, 256), (2, 20, 129))

    Reference:
        Jouanneau et al., VISAPP 2023, eq. (1) and (2).
    """

    def __init__(
        self,
        num_labels,
        embedding_dim=256,
        mlp_units=256,
        score_scale=1.0,
        learn_temperature=False,
        codebook_init_mode="fan_out",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_labels < 1:
            raise ValueError(f"`num_labels` must be >= 1. Received: num_labels={num_labels}")
        if embedding_dim < 1 or mlp_units < 1:
            raise ValueError(
                "`embedding_dim` and `mlp_units` must be >= 1. "
                f"Received: embedding_dim={embedding_dim}, mlp_units={mlp_units}"
            )
        if not (isinstance(score_scale, (int, float)) and math.isfinite(score_scale) and score_scale > 0):
            raise ValueError(
                f"`score_scale` must be a positive number. Received: score_scale={score_scale!r}"
            )
        if codebook_init_mode not in CODEBOOK_INIT_MODES:
            raise ValueError(
                f"`codebook_init_mode` must be one of {CODEBOOK_INIT_MODES}. "
                f"Received: codebook_init_mode={codebook_init_mode!r}"
            )
        self.num_labels = num_labels
        self.embedding_dim = embedding_dim
        self.mlp_units = mlp_units
        self.score_scale = float(score_scale)
        self.learn_temperature = bool(learn_temperature)
        self.codebook_init_mode = codebook_init_mode
        # === Layers ===
        self.mlp_hidden = layers.Dense(
            mlp_units, activation="gelu", kernel_initializer=unit_variance_scaling(),
            name="mlp_hidden",
        )
        self.mlp_output = layers.Dense(
            embedding_dim, kernel_initializer=unit_variance_scaling(), name="mlp_output"
        )

    def build(self, input_shape):
        if input_shape[-1] != self.embedding_dim:
            raise ValueError(
                f"Patch embeddings must have {self.embedding_dim} features. "
                f"Received: input_shape={input_shape}"
            )
        self.label_codebooks = self.add_weight(
            shape=(self.num_labels, self.embedding_dim),
            initializer=unit_variance_scaling(self.codebook_init_mode),
            name="label_codebooks",
        )
        self.temperature = (
            self.add_weight(shape=(), initializer="ones", name="temperature")
            if self.learn_temperature
            else None
        )
        self.mlp_hidden.build((None, self.num_labels, self.embedding_dim))
        self.mlp_output.build((None, self.num_labels, self.mlp_units))

    def call(self, patch_embeddings):
        scores = ops.einsum("lf,bnf->bln", self.label_codebooks, patch_embeddings)
        if self.score_scale != 1.0:
            scores = scores * self.score_scale
        if self.temperature is not None:
            scores = scores * self.temperature
        attention = ops.softmax(scores, axis=-1)
        pooled = ops.einsum("bln,bnf->blf", attention, patch_embeddings)
        label_embeddings = self.mlp_output(self.mlp_hidden(pooled)) + pooled
        return label_embeddings, attention

    def compute_output_shape(self, input_shape):
        batch, num_patches, _ = input_shape
        return (
            (batch, self.num_labels, self.embedding_dim),
            (batch, self.num_labels, num_patches),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_labels": self.num_labels,
                "embedding_dim": self.embedding_dim,
                "mlp_units": self.mlp_units,
                "score_scale": self.score_scale,
                "learn_temperature": self.learn_temperature,
                "codebook_init_mode": self.codebook_init_mode,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        # A config saved before these arguments existed is the paper-exact layer.
        return cls(**{**PAPER_EXACT, **config})
