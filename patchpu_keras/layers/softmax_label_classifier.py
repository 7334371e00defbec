import keras
from keras import ops

from patchpu_keras.layers.initializers import unit_variance_scaling


@keras.saving.register_keras_serializable(package="patchpu_keras")
class SoftmaxLabelClassifier(keras.layers.Layer):
    """Shared softmax classifier over per-label image representations.

    One weight matrix W `(num_labels, features)`, no bias. Each representation
    `e_image_l` is classified among all labels, `softmax_k(W_k . e_image_l)`, and
    the probability of label l is the l-th entry of its own representation's
    softmax (eq. 3). The softmax runs over the classifier index k for each
    representation l; probabilities of different labels do not sum to 1.

    Args:
        num_labels: int, number of labels L.

    Call arguments:
        label_embeddings: tensor `(batch, num_labels, features)`.

    Returns:
        Tensor `(batch, num_labels)` of probabilities in (0, 1).

    Example:
    >>> classifier = SoftmaxLabelClassifier(num_labels=20)
    >>> classifier(np.zeros((2, 20, 256))).shape
    (2, 20)

    Reference:
        Jouanneau et al., VISAPP 2023, eq. (3).
    """

    def __init__(self, num_labels, **kwargs):
        super().__init__(**kwargs)
        if num_labels < 1:
            raise ValueError(f"`num_labels` must be >= 1. Received: num_labels={num_labels}")
        self.num_labels = num_labels

    def build(self, input_shape):
        if input_shape[-2] != self.num_labels:
            raise ValueError(
                f"Expected one representation per label ({self.num_labels}). "
                f"Received: input_shape={input_shape}"
            )
        self.kernel = self.add_weight(
            shape=(self.num_labels, input_shape[-1]),
            initializer=unit_variance_scaling("fan_out"),
            name="kernel",
        )

    def call(self, label_embeddings):
        logits = ops.einsum("blf,kf->blk", label_embeddings, self.kernel)
        log_probabilities = ops.log_softmax(logits, axis=-1)
        return ops.exp(ops.diagonal(log_probabilities, axis1=1, axis2=2))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_labels)

    def get_config(self):
        config = super().get_config()
        config.update({"num_labels": self.num_labels})
        return config
