import keras
import numpy as np
from keras import ops

from patchpu_keras.labels import OBSERVED_LABELS
from patchpu_keras.losses.observed_label_loss import clipped_log
from patchpu_keras.losses.stateful_loss import StatefulLoss, require_index

AVERAGES = "prediction_averages"


def expected_negative_consistency(y_observed, probabilities, averages, threshold=0.5, weight=1.0):
    """Expected negatives and a consistency term from averaged predictions.

    Observed positives: `-log p`. Observed negatives: `-log(1 - p)`. Unknowns
    whose averaged prediction is below `threshold` are expected negatives,
    `-log(1 - p)`; the other unknowns get no negative term. Every unknown adds
    `weight * (p - average)^2`, pulling predictions toward their averages.

    Args:
        y_observed: `(batch, num_labels)` observed labels, +1 / 0 / -1.
        probabilities: `(batch, num_labels)` predicted probabilities.
        averages: `(batch, num_labels)` per-image moving averages of past
            predictions (held fixed).
        threshold: float, below it an unknown is an expected negative.
        weight: float, weight of the consistency term.

    Returns:
        Scalar, mean over batch and labels of those terms, logs clipped at 1e-7.

    Reference:
        Reconstructed from the description (abstract and introduction) of
        Verelst, Rubenstein, Eichner, Tuytelaars, Berman, "Spatial Consistency
        Loss for Training Multi-Label Classifiers from Single-Label
        Annotations", WACV 2023 (arXiv 2203.06127), not from its method
        section. The form of each term and the hyperparameters are ours.
    """
    probabilities = ops.convert_to_tensor(probabilities)
    y_observed = ops.cast(ops.convert_to_tensor(y_observed), probabilities.dtype)
    averages = ops.stop_gradient(ops.convert_to_tensor(averages))
    unknown = y_observed == 0
    expected_negative = ops.logical_or(y_observed < 0, ops.logical_and(unknown, averages < threshold))
    terms = ops.where(y_observed > 0, -clipped_log(probabilities), 0.0)
    terms = terms + ops.where(expected_negative, -clipped_log(1.0 - probabilities), 0.0)
    terms = terms + ops.where(unknown, weight * ops.square(probabilities - averages), 0.0)
    return ops.mean(terms)


@keras.saving.register_keras_serializable(package="patchpu_keras")
class ExpectedNegativeConsistency(StatefulLoss):
    """EN + CL with per-image exponential moving averages of the predictions.

    The averages live in the run's `LossState` (saved in its checkpoint). They start
    at 1 for observed positives and 0 elsewhere, so training starts like
    assume-negative and releases the unknowns whose averaged prediction rises
    above `threshold`; after each batch, `average = momentum * average +
    (1 - momentum) * p` for its images. Hyperparameters are ours (see
    `expected_negative_consistency`).

    Args:
        momentum: float in [0, 1), EMA momentum across epochs.
        threshold: float, expected-negative threshold.
        weight: float, consistency weight.
    """

    state_tables = {AVERAGES: False}

    def __init__(self, momentum=0.9, threshold=0.5, weight=1.0, name="expected_negative_consistency", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0 <= momentum < 1:
            raise ValueError(f"`momentum` must be in [0, 1). Received: momentum={momentum}")
        self.momentum = momentum
        self.threshold = threshold
        self.weight = weight

    def initialize_state(self, state, observed_labels):
        state.table(AVERAGES).assign((np.asarray(observed_labels) > 0).astype("float32"))

    def compute(self, labels, outputs, state):
        index = require_index(self, labels)
        probabilities = outputs["probabilities"]
        averages = state.rows(AVERAGES, index)
        loss = expected_negative_consistency(
            labels[OBSERVED_LABELS], probabilities, averages, self.threshold, self.weight
        )
        updated = self.momentum * averages + (1.0 - self.momentum) * ops.stop_gradient(probabilities)
        state.write_rows(AVERAGES, index, updated)
        return loss

    def get_config(self):
        return {
            **super().get_config(),
            "momentum": self.momentum,
            "threshold": self.threshold,
            "weight": self.weight,
        }
