import keras
import numpy as np
from keras import ops

from patchpu_keras.labels import OBSERVED_LABELS
from patchpu_keras.losses.expected_positive_regularization import (
    expected_positive_regularizer,
    positive_terms,
)
from patchpu_keras.losses.observed_label_loss import binary_terms
from patchpu_keras.losses.stateful_loss import StatefulLoss, require_index

ESTIMATES = "label_estimate_logits"


def role(y_observed, probabilities, estimates, expected_positives):
    """ROLE: jointly trained label estimates (Cole et al. 2021).

    Args:
        y_observed: `(batch, num_labels)` observed labels, +1 / 0 / -1.
        probabilities: `(batch, num_labels)` the model's predictions.
        estimates: `(batch, num_labels)` the label estimates of these images,
            as probabilities.
        expected_positives: k of the EPR regulariser.

    Returns:
        Scalar: mean over batch and labels of `0.5 * (model terms + estimate
        terms)`, each the positive term plus the binary cross-entropy against
        the other side held fixed (stop-gradient), plus the mean of the two EPR
        regularisers.

    Reference:
        Cole et al., "Multi-Label Learning from Single Positive Labels", CVPR
        2021 (ROLE, eq. 6-8).
    """
    probabilities = ops.convert_to_tensor(probabilities)
    estimates = ops.convert_to_tensor(estimates)
    model_terms = positive_terms(y_observed, probabilities) + binary_terms(
        ops.stop_gradient(estimates), probabilities
    )
    estimate_terms = positive_terms(y_observed, estimates) + binary_terms(
        ops.stop_gradient(probabilities), estimates
    )
    regularizer = 0.5 * (
        expected_positive_regularizer(probabilities, expected_positives)
        + expected_positive_regularizer(estimates, expected_positives)
    )
    return ops.mean(0.5 * (model_terms + estimate_terms)) + regularizer


@keras.saving.register_keras_serializable(package="patchpu_keras")
class ROLE(StatefulLoss):
    """ROLE with a trainable table of label-estimate logits, one row per image.

    Observed positives start at probability 0.995, observed negatives at 0.005,
    unknowns uniformly in [0.4, 0.6] (seeded). Train with
    `patchpu_keras.optimizers.Lamb(learning_rate_multipliers=
    ROLE.learning_rate_multipliers)`: the table learns 10x faster than the
    model, as in the paper; `patchpu_keras.training` leaves it out of weight
    decay and out of LAMB's trust ratio (`layer_adaptation_excluded_names`: the
    table takes Adam's step, as the authors train it; with the trust ratio its
    logits grow geometrically, docs/design.md).

    Args:
        expected_positives: k of the EPR regulariser (1.38 VOC, 2.92 COCO).
        seed: int, seed of the unknowns' initial estimates.
    """

    state_tables = {ESTIMATES: True}
    learning_rate_multipliers = {ESTIMATES: 10.0}

    def __init__(self, expected_positives, seed=0, name="role", **kwargs):
        super().__init__(name=name, **kwargs)
        self.expected_positives = expected_positives
        self.seed = seed

    def initialize_state(self, state, observed_labels):
        rng = np.random.default_rng(self.seed)
        probabilities = rng.uniform(0.4, 0.6, observed_labels.shape)
        probabilities[observed_labels > 0] = 0.995
        probabilities[observed_labels < 0] = 0.005
        state.table(ESTIMATES).assign(np.log(probabilities / (1 - probabilities)).astype("float32"))

    def compute(self, labels, outputs, state):
        index = require_index(self, labels)
        estimates = ops.sigmoid(state.rows(ESTIMATES, index))
        return role(
            labels[OBSERVED_LABELS], outputs["probabilities"], estimates, self.expected_positives
        )

    def get_config(self):
        return {**super().get_config(), "expected_positives": self.expected_positives, "seed": self.seed}
