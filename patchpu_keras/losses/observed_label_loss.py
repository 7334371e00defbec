import keras
from keras import ops

from patchpu_keras.labels import FULL_LABELS, OBSERVED_LABELS

LOG_EPSILON = 1e-7


def clipped_log(x):
    """`log(max(x, 1e-7))`: the losses' logs never reach -inf, even at p = 0 or 1."""
    return ops.log(ops.clip(x, LOG_EPSILON, 1.0))


def binary_terms(targets, probabilities, positive_weight=1.0, negative_weight=1.0):
    """Per-entry `-(w+ t log p + w- (1 - t) log(1 - p))`."""
    return -(
        positive_weight * targets * clipped_log(probabilities)
        + negative_weight * (1.0 - targets) * clipped_log(1.0 - probabilities)
    )


class ObservedLabelLoss(keras.losses.Loss):
    """Base of the losses that read observed labels and model outputs.

    Subclasses implement `entry_terms(labels, outputs)`, returning the
    `(batch, num_labels)` per-entry terms. `labels` is the dict of
    `patchpu_keras.labels` (`observed_labels`, optional `full_labels` and
    `index`); `outputs` the model's output dict. Called as a Keras loss, `y_true`
    may be an observed-label array or that dict, and `y_pred` a probability array
    or the output dict; the result is the mean over labels, reduced over the
    batch by Keras, so it equals the pure function's mean over batch and labels.
    """

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def entry_terms(self, labels, outputs):
        raise NotImplementedError

    def call(self, y_true, y_pred):
        labels = y_true if isinstance(y_true, dict) else {OBSERVED_LABELS: y_true}
        outputs = y_pred if isinstance(y_pred, dict) else {"probabilities": y_pred}
        return ops.mean(self.entry_terms(labels, outputs), axis=-1)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "dtype": self.dtype}


def observed_or_full(labels):
    """Full labels when the target carries them, else the observed positives."""
    if FULL_LABELS in labels:
        return labels[FULL_LABELS]
    return ops.cast(labels[OBSERVED_LABELS] > 0, "float32")
