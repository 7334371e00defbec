import keras
from keras import ops

from patchpu_keras.labels import OBSERVED_LABELS
from patchpu_keras.losses.observed_label_loss import ObservedLabelLoss, binary_terms


def assume_negative(y_observed, probabilities):
    """Assume negative (AN): every unknown label is treated as a negative.

    Args:
        y_observed: `(batch, num_labels)` observed labels, +1 / 0 / -1.
        probabilities: `(batch, num_labels)` predicted probabilities.

    Returns:
        Scalar, the mean over batch and labels of `-log p` for observed
        positives and `-log(1 - p)` for every other entry, logs clipped at 1e-7.

    Reference:
        Cole et al., "Multi-Label Learning from Single Positive Labels", CVPR
        2021; Jouanneau et al., VISAPP 2023, sec. 2.
    """
    return ops.mean(_assume_negative_terms(y_observed, probabilities))


def _assume_negative_terms(y_observed, probabilities):
    probabilities = ops.convert_to_tensor(probabilities)
    targets = ops.cast(y_observed > 0, probabilities.dtype)
    return binary_terms(targets, probabilities)


@keras.saving.register_keras_serializable(package="patchpu_keras")
class AssumeNegative(ObservedLabelLoss):
    """`keras.losses.Loss` of `assume_negative`."""

    def __init__(self, name="assume_negative", **kwargs):
        super().__init__(name=name, **kwargs)

    def entry_terms(self, labels, outputs):
        return _assume_negative_terms(labels[OBSERVED_LABELS], outputs["probabilities"])
