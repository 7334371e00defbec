import keras
from keras import ops

from patchpu_keras.losses.observed_label_loss import (
    ObservedLabelLoss,
    binary_terms,
    observed_or_full,
)


def full_bce(y_true, probabilities):
    """Binary cross-entropy on full labels: the fully-annotated upper bound.

    Args:
        y_true: `(batch, num_labels)` full labels in {0, 1}.
        probabilities: `(batch, num_labels)` predicted probabilities.

    Returns:
        Scalar, the mean over batch and labels of
        `-(y log p + (1 - y) log(1 - p))`, logs clipped at 1e-7.

    Reference:
        Jouanneau et al., VISAPP 2023, eq. (5).
    """
    probabilities = ops.convert_to_tensor(probabilities)
    y_true = ops.cast(y_true, probabilities.dtype)
    return ops.mean(binary_terms(y_true, probabilities))


@keras.saving.register_keras_serializable(package="patchpu_keras")
class FullBCE(ObservedLabelLoss):
    """`keras.losses.Loss` of `full_bce`.

    Reads `full_labels` from the target dict; a plain target array, or a dict
    without full labels, is read as observed labels whose positives (+1) are the
    full labels (so fully observed +1/-1 labels give the same loss).
    """

    def __init__(self, name="full_bce", **kwargs):
        super().__init__(name=name, **kwargs)

    def entry_terms(self, labels, outputs):
        probabilities = outputs["probabilities"]
        targets = ops.cast(observed_or_full(labels), probabilities.dtype)
        return binary_terms(targets, probabilities)
