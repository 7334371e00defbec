import keras
from keras import ops

from patchpu_keras.labels import OBSERVED_LABELS
from patchpu_keras.losses.observed_label_loss import ObservedLabelLoss, binary_terms


def assume_negative_ls(y_observed, probabilities, label_smoothing=0.1):
    """Assume negative with label smoothing (AN-LS).

    Targets are `1 - label_smoothing` for observed positives and
    `label_smoothing` for every other entry (unknowns and observed negatives).

    Args:
        y_observed: `(batch, num_labels)` observed labels, +1 / 0 / -1.
        probabilities: `(batch, num_labels)` predicted probabilities.
        label_smoothing: float in [0, 0.5).

    Returns:
        Scalar, mean over batch and labels of the binary cross-entropy against
        the smoothed targets, logs clipped at 1e-7.

    Reference:
        Cole et al., "Multi-Label Learning from Single Positive Labels", CVPR
        2021 (AN-LS, Table 2).
    """
    return ops.mean(_assume_negative_ls_terms(y_observed, probabilities, label_smoothing))


def _assume_negative_ls_terms(y_observed, probabilities, label_smoothing):
    probabilities = ops.convert_to_tensor(probabilities)
    positives = ops.cast(ops.convert_to_tensor(y_observed) > 0, probabilities.dtype)
    targets = positives * (1.0 - label_smoothing) + (1.0 - positives) * label_smoothing
    return binary_terms(targets, probabilities)


@keras.saving.register_keras_serializable(package="patchpu_keras")
class AssumeNegativeLS(ObservedLabelLoss):
    """`keras.losses.Loss` of `assume_negative_ls`.

    Args:
        label_smoothing: float in [0, 0.5); 0.1 in Cole et al.
    """

    def __init__(self, label_smoothing=0.1, name="assume_negative_ls", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0 <= label_smoothing < 0.5:
            raise ValueError(
                f"`label_smoothing` must be in [0, 0.5). Received: label_smoothing={label_smoothing}"
            )
        self.label_smoothing = label_smoothing

    def entry_terms(self, labels, outputs):
        return _assume_negative_ls_terms(
            labels[OBSERVED_LABELS], outputs["probabilities"], self.label_smoothing
        )

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}
