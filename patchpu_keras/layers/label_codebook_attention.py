import keras
from keras import layers, ops

from patchpu_keras.layers.initializers import unit_variance_scaling


@keras.saving.register_keras_serializable(package="patchpu_keras")
class LabelCodebookAttention(keras.layers.Layer):
    """Pools patch embeddings into one image representation per label.

    Each label l has a learned codebook vector `e_label_l`. Its attention over the
    patches of an image is the softmax, over patches i, of `e_label_l . e_patch_i`
    (eq. 1); the pooled vector `A E_patch` goes through a two-layer GELU MLP with
    a residual connection (eq. 2).

    Args:
        num_labels: int, number of labels L.
        embedding_dim: int, size F of patch and label embeddings.
        mlp_units: int, hidden width of the MLP f.

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

    def __init__(self, num_labels, embedding_dim=256, mlp_units=256, **kwargs):
        super().__init__(**kwargs)
        if num_labels < 1:
            raise ValueError(f"`num_labels` must be >= 1. Received: num_labels={num_labels}")
        if embedding_dim < 1 or mlp_units < 1:
            raise ValueError(
                "`embedding_dim` and `mlp_units` must be >= 1. "
                f"Received: embedding_dim={embedding_dim}, mlp_units={mlp_units}"
            )
        self.num_labels = num_labels
        self.embedding_dim = embedding_dim
        self.mlp_units = mlp_units
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
            initializer=unit_variance_scaling("fan_out"),
            name="label_codebooks",
        )
        self.mlp_hidden.build((None, self.num_labels, self.embedding_dim))
        self.mlp_output.build((None, self.num_labels, self.mlp_units))

    def call(self, patch_embeddings):
        scores = ops.einsum("lf,bnf->bln", self.label_codebooks, patch_embeddings)
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
            }
        )
        return config
