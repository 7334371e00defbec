import numpy as np

from patchpu_keras.labels import INDEX, OBSERVED_LABELS
from patchpu_keras.losses.assume_negative import _assume_negative_terms
from patchpu_keras.losses.loss_state import LossState
from patchpu_keras.losses.observed_label_loss import ObservedLabelLoss


class StatefulLoss(ObservedLabelLoss):
    """Base of the losses that keep per-image or per-epoch state.

    A stateful loss declares its tables (`state_tables`, `name -> trainable`),
    builds a `LossState` for the training set with `make_state(observed_labels)`
    (the training run holds it: `TrainingModel(model, state)`), computes the
    training loss with `compute(labels, outputs, state)` (which may write to
    the state, the same code on every backend), and may update the state
    eagerly at the end of an epoch in `on_epoch_end(state, epoch)`, which
    `LossStateCallback(loss, state)` calls (it also sets `state.epoch`).

    Validation batches index another set of images, so they never touch the
    state: `validation_terms` (assume negative by default) is used instead.
    """

    state_tables = {}
    # Learning-rate multipliers by variable name, for `patchpu_keras.optimizers.Lamb`.
    learning_rate_multipliers = {}

    def make_state(self, observed_labels, name="loss_state"):
        observed_labels = np.asarray(observed_labels, dtype="float32")
        state = LossState(*observed_labels.shape, tables=self.state_tables, name=name)
        self.initialize_state(state, observed_labels)
        return state

    def initialize_state(self, state, observed_labels):
        """Sets the tables' starting values (eagerly)."""

    def compute(self, labels, outputs, state):
        """The training loss of a batch; `labels` must carry `index`."""
        raise NotImplementedError

    def on_epoch_end(self, state, epoch):
        """Eager end-of-epoch update of the state (nothing by default)."""

    def validation_terms(self, labels, outputs):
        return _assume_negative_terms(labels[OBSERVED_LABELS], outputs["probabilities"])

    def entry_terms(self, labels, outputs):
        # Called as a plain Keras loss (no state): the validation terms.
        return self.validation_terms(labels, outputs)


def require_index(loss, labels):
    if INDEX not in labels:
        raise ValueError(
            f"{type(loss).__name__} keeps per-image state and needs the `index` of every "
            "training image in the targets (patchpu_keras.data pipelines carry it). "
            f"Received: target keys={sorted(labels)}"
        )
    return labels[INDEX]
