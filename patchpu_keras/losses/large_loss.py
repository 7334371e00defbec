import keras
import numpy as np
from keras import ops

from patchpu_keras.labels import OBSERVED_LABELS
from patchpu_keras.losses.assume_negative import _assume_negative_terms
from patchpu_keras.losses.observed_label_loss import clipped_log
from patchpu_keras.losses.stateful_loss import StatefulLoss, require_index

MODES = ("reject", "temporary", "permanent")
OBSERVED = "observed"
# Kim et al.'s published delta_rel: 0.5 % (LL-R) and 0.2 % (LL-Ct) more per epoch,
# 0.1 % of every batch after the first epoch (LL-Cp).
DEFAULT_DELTA_REL = {"reject": 0.005, "temporary": 0.002, "permanent": 0.001}


def large_loss_selection(y_observed, probabilities, rejection_rate):
    """Which unknown entries have the largest assume-negative losses.

    `k = ceil(rejection_rate * batch * num_labels)` entries of the batch are
    selected: the unknowns whose `-log(1 - p)` is at least the k-th largest among
    unknowns (ties at the threshold are all selected). `k = 0` selects nothing.

    Returns:
        Boolean `(batch, num_labels)`.
    """
    probabilities = ops.convert_to_tensor(probabilities)
    y_observed = ops.convert_to_tensor(y_observed)
    unknown = y_observed == 0
    losses = ops.where(unknown, -clipped_log(1.0 - probabilities), -1.0)
    flat = ops.reshape(losses, (-1,))
    count = ops.cast(ops.shape(flat)[0], "float32")
    k = ops.cast(ops.ceil(ops.cast(rejection_rate, "float32") * count - 1e-6), "int32")
    descending = ops.flip(ops.sort(flat), axis=0)
    threshold = ops.take(descending, ops.maximum(k - 1, 0))
    return ops.logical_and(ops.logical_and(unknown, losses >= threshold), k > 0)


def large_loss(y_observed, probabilities, rejection_rate, mode="reject"):
    """Large Loss Matters: reject or correct the unknowns with the largest losses.

    Args:
        y_observed: `(batch, num_labels)` observed labels, +1 / 0 / -1.
        probabilities: `(batch, num_labels)` predicted probabilities.
        rejection_rate: fraction of all batch entries selected
            (`large_loss_selection`).
        mode: `"reject"` (LL-R: selected terms are zeroed), `"temporary"` (LL-Ct:
            selected entries are treated as positives for this step) or
            `"permanent"` (LL-Cp: the same loss; `LargeLoss` also writes the flips
            into its stored labels).

    Returns:
        Scalar, mean over batch and labels of the assume-negative terms with the
        selected entries rejected or corrected, logs clipped at 1e-7.

    Reference:
        Kim et al., "Large Loss Matters in Weakly Supervised Multi-Label
        Classification", CVPR 2022 (eq. 4-6).
    """
    terms, _ = _large_loss_terms(y_observed, probabilities, rejection_rate, mode)
    return ops.mean(terms)


def _large_loss_terms(y_observed, probabilities, rejection_rate, mode):
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
    probabilities = ops.convert_to_tensor(probabilities)
    terms = _assume_negative_terms(y_observed, probabilities)
    selected = ops.stop_gradient(large_loss_selection(y_observed, probabilities, rejection_rate))
    if mode == "reject":
        replacement = ops.zeros_like(terms)
    else:
        replacement = -clipped_log(probabilities)
    return ops.where(selected, replacement, terms), selected


@keras.saving.register_keras_serializable(package="patchpu_keras")
class LargeLoss(StatefulLoss):
    """LL-R / LL-Ct / LL-Cp: reject or correct the unknowns with the largest losses.

    In epoch e (0-based, from the run's `LossState`) a share `rate(e)` of each
    batch's entries is selected (`large_loss_selection`); nothing is selected
    in the first epoch. LL-R and LL-Ct grow the share every epoch,
    `rate(e) = min(delta_rel * e, 1)`, as they are published. LL-Cp selects a
    constant `delta_rel` of the batch, `k = ceil(B * L * delta_rel)` entries,
    in every epoch after the first, as in the authors' code (Kim et al.'s
    `losses.py`, `k = ceil(batch_size * num_classes * delta_rel)` for
    `LL-Cp`): its flips accumulate in the stored labels, so the share of
    corrected entries grows without the rate growing. In `"permanent"` mode the
    observed labels are read from the state's stored table, and the selected
    entries are written back as positives, so they stay flipped in later epochs
    and are saved with the model.

    Args:
        mode: `"reject"`, `"temporary"` or `"permanent"`.
        delta_rel: growth of the rate per epoch (LL-R, LL-Ct) or the constant
            rate (LL-Cp); defaults to Kim et al.'s published values (0.005,
            0.002, 0.001).

    Reference:
        Kim et al., "Large Loss Matters in Weakly Supervised Multi-Label
        Classification", CVPR 2022 (sec. 3.2, eq. 4-6).
    """

    def __init__(self, mode="reject", delta_rel=None, name=None, **kwargs):
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
        super().__init__(name=name or f"large_loss_{mode}", **kwargs)
        self.mode = mode
        self.delta_rel = DEFAULT_DELTA_REL[mode] if delta_rel is None else delta_rel
        self.state_tables = {OBSERVED: False} if mode == "permanent" else {}

    def initialize_state(self, state, observed_labels):
        if self.mode == "permanent":
            state.table(OBSERVED).assign(np.asarray(observed_labels, "float32"))

    def rejection_rate(self, epoch):
        """Share of each batch's entries selected in `epoch` (0-based)."""
        epoch = ops.cast(epoch, "float32")
        if self.mode == "permanent":
            return ops.where(epoch >= 1.0, ops.minimum(self.delta_rel, 1.0), 0.0)
        return ops.minimum(self.delta_rel * epoch, 1.0)

    def compute(self, labels, outputs, state):
        observed = labels[OBSERVED_LABELS]
        if self.mode == "permanent":
            index = require_index(self, labels)
            observed = state.rows(OBSERVED, index)
        terms, selected = _large_loss_terms(
            observed, outputs["probabilities"], self.rejection_rate(state.epoch), self.mode
        )
        if self.mode == "permanent":
            state.write_rows(OBSERVED, index, ops.where(selected, 1.0, observed))
        return ops.mean(terms)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "delta_rel": self.delta_rel}
