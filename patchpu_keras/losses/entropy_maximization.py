import keras
import numpy as np
from keras import ops

from patchpu_keras.labels import OBSERVED_LABELS
from patchpu_keras.losses.observed_label_loss import binary_terms, clipped_log
from patchpu_keras.losses.stateful_loss import StatefulLoss, require_index

OBSERVED = "observed"
PSEUDO_TARGETS = "pseudo_negative_targets"
LAST_PROBABILITIES = "last_probabilities"


def entropy_maximization(y_observed, probabilities, alpha, pseudo_targets=None, beta=0.0):
    """Entropy maximisation on unknowns, with optional soft pseudo-negatives.

    Observed positives: `-log p`; observed negatives: `-log(1 - p)`; unknowns:
    `-alpha * H(p)` with `H(p) = -(p log p + (1 - p) log(1 - p))`, so
    minimising the loss maximises their entropy. Unknowns with a pseudo target
    `t >= 0` (asymmetric pseudo-labelling) get `beta * BCE(t, p)` instead.

    Args:
        y_observed: `(batch, num_labels)` observed labels, +1 / 0 / -1.
        probabilities: `(batch, num_labels)` predicted probabilities.
        alpha: EM weight (0.2 VOC, 0.1 COCO).
        pseudo_targets: optional `(batch, num_labels)`, soft negative targets,
            negative where an entry has none.
        beta: weight of the pseudo-negative terms (0.02 VOC, 0.9 COCO).

    Returns:
        Scalar, mean over batch and labels, logs clipped at 1e-7.

    Reference:
        Zhou et al., "Acknowledging the Unknown for Multi-label Learning with
        Single Positive Labels", ECCV 2022 (EM eq. 5, APL eq. 8).
    """
    probabilities = ops.convert_to_tensor(probabilities)
    y_observed = ops.cast(ops.convert_to_tensor(y_observed), probabilities.dtype)
    entropy = -(
        probabilities * clipped_log(probabilities)
        + (1.0 - probabilities) * clipped_log(1.0 - probabilities)
    )
    terms = ops.where(
        y_observed > 0,
        -clipped_log(probabilities),
        ops.where(y_observed < 0, -clipped_log(1.0 - probabilities), -alpha * entropy),
    )
    if pseudo_targets is not None:
        pseudo_targets = ops.convert_to_tensor(pseudo_targets)
        pseudo = ops.logical_and(y_observed == 0, pseudo_targets >= 0)
        soft = beta * binary_terms(ops.maximum(pseudo_targets, 0.0), probabilities)
        terms = ops.where(pseudo, soft, terms)
    return ops.mean(terms)


@keras.saving.register_keras_serializable(package="patchpu_keras")
class EntropyMaximization(StatefulLoss):
    """EM, and EM + APL when `beta` is set.

    With APL, the predictions of every training image are kept during each
    epoch; from the end of epoch `warmup_epochs` on, for every class, the
    `int(negative_proportion * unknowns_of_class / (num_epochs - warmup_epochs))`
    lowest-scoring unknowns not yet pseudo-labelled become soft negatives whose
    target is their score at that time. Zhou et al. score the training set in a
    separate pass; here the scores are the ones seen during the epoch's training
    steps, which saves that pass.

    Args:
        alpha: EM weight.
        beta: APL weight, or None for EM alone.
        warmup_epochs: epochs before the first pseudo-labelling (5 in Zhou et al.).
        num_epochs: total training epochs (spreads the pseudo-labels over them).
        negative_proportion: fraction of each class's unknowns pseudo-labelled by
            the end of training (0.9 in Zhou et al.).
    """

    def __init__(
        self,
        alpha=0.2,
        beta=None,
        warmup_epochs=5,
        num_epochs=10,
        negative_proportion=0.9,
        name=None,
        **kwargs,
    ):
        super().__init__(name=name or ("em_apl" if beta is not None else "em"), **kwargs)
        if beta is not None and num_epochs <= warmup_epochs:
            raise ValueError(
                "APL needs num_epochs > warmup_epochs. "
                f"Received: num_epochs={num_epochs}, warmup_epochs={warmup_epochs}"
            )
        self.alpha = alpha
        self.beta = beta
        self.warmup_epochs = warmup_epochs
        self.num_epochs = num_epochs
        self.negative_proportion = negative_proportion
        self.state_tables = (
            {OBSERVED: False, PSEUDO_TARGETS: False, LAST_PROBABILITIES: False}
            if beta is not None
            else {}
        )

    def initialize_state(self, state, observed_labels):
        if self.beta is not None:
            state.table(OBSERVED).assign(np.asarray(observed_labels, "float32"))
            state.table(PSEUDO_TARGETS).assign(-np.ones(observed_labels.shape, "float32"))
            state.table(LAST_PROBABILITIES).assign(np.full(observed_labels.shape, 0.5, "float32"))

    def compute(self, labels, outputs, state):
        probabilities = outputs["probabilities"]
        if self.beta is None:
            return entropy_maximization(labels[OBSERVED_LABELS], probabilities, self.alpha)
        index = require_index(self, labels)
        state.write_rows(LAST_PROBABILITIES, index, ops.stop_gradient(probabilities))
        return entropy_maximization(
            labels[OBSERVED_LABELS], probabilities, self.alpha,
            state.rows(PSEUDO_TARGETS, index), self.beta,
        )

    def on_epoch_end(self, state, epoch):
        # Zhou et al. count epochs from 1 and label when epoch >= warmup.
        if self.beta is None or epoch + 1 < self.warmup_epochs:
            return
        observed = ops.convert_to_numpy(state.table(OBSERVED))
        targets = ops.convert_to_numpy(state.table(PSEUDO_TARGETS)).copy()
        scores = ops.convert_to_numpy(state.table(LAST_PROBABILITIES))
        rounds = self.num_epochs - self.warmup_epochs
        for label in range(observed.shape[1]):
            quota = int(self.negative_proportion * np.sum(observed[:, label] == 0) / rounds)
            candidates = np.flatnonzero((observed[:, label] == 0) & (targets[:, label] < 0))
            chosen = candidates[np.argsort(scores[candidates, label], kind="stable")[:quota]]
            targets[chosen, label] = scores[chosen, label]
        state.table(PSEUDO_TARGETS).assign(targets)

    def get_config(self):
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "beta": self.beta,
            "warmup_epochs": self.warmup_epochs,
            "num_epochs": self.num_epochs,
            "negative_proportion": self.negative_proportion,
        }
