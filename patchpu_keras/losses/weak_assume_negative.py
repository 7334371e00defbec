import keras
from keras import ops

from patchpu_keras.labels import OBSERVED_LABELS
from patchpu_keras.losses.observed_label_loss import ObservedLabelLoss, binary_terms


def weak_assume_negative(y_observed, probabilities):
    """Weak assume negative (WAN): unknowns are negatives weighted by 1 / (L - 1).

    Args:
        y_observed: `(batch, num_labels)` observed labels, +1 / 0 / -1.
        probabilities: `(batch, num_labels)` predicted probabilities.

    Returns:
        Scalar, mean over batch and labels of `-log p` for observed positives,
        `-log(1 - p)` for observed negatives and `-log(1 - p) / (L - 1)` for
        unknowns, logs clipped at 1e-7.

    Reference:
        Cole et al., CVPR 2021 (WAN, gamma = 1 / (L - 1)).
    """
    return ops.mean(_weak_assume_negative_terms(y_observed, probabilities))


def _weak_assume_negative_terms(y_observed, probabilities):
    probabilities = ops.convert_to_tensor(probabilities)
    y_observed = ops.cast(ops.convert_to_tensor(y_observed), probabilities.dtype)
    num_labels = probabilities.shape[-1]
    unknown_weight = 1.0 / max(num_labels - 1, 1)
    negative_weight = ops.where(y_observed < 0, 1.0, unknown_weight)
    positives = ops.cast(y_observed > 0, probabilities.dtype)
    return binary_terms(positives, probabilities, negative_weight=negative_weight)


@keras.saving.register_keras_serializable(package="patchpu_keras")
class WeakAssumeNegative(ObservedLabelLoss):
    """`keras.losses.Loss` of `weak_assume_negative`."""

    def __init__(self, name="weak_assume_negative", **kwargs):
        super().__init__(name=name, **kwargs)

    def entry_terms(self, labels, outputs):
        return _weak_assume_negative_terms(labels[OBSERVED_LABELS], outputs["probabilities"])
