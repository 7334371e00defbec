"""Losses for single-positive multi-label learning.

Each loss is a pure function returning the batch's scalar loss (mean over batch
and labels, logs clipped at 1e-7) plus a `keras.losses.Loss` class. Losses with
per-image or per-epoch state (`StatefulLoss`) keep it in a `LossState` that
belongs to the training run (`patchpu_keras.models.TrainingModel`), not to the
model. `LOSSES` (in `registry`) is the table of names recipes use.
"""

from patchpu_keras.losses.assume_negative import AssumeNegative, assume_negative
from patchpu_keras.losses.assume_negative_ls import AssumeNegativeLS, assume_negative_ls
from patchpu_keras.losses.entropy_maximization import EntropyMaximization, entropy_maximization
from patchpu_keras.losses.expected_negative_consistency import (
    ExpectedNegativeConsistency,
    expected_negative_consistency,
)
from patchpu_keras.losses.expected_positive_regularization import (
    ExpectedPositiveRegularization,
    expected_positive_regularization,
)
from patchpu_keras.losses.full_bce import FullBCE, full_bce
from patchpu_keras.losses.generalized_robust import (
    GeneralizedRobust,
    generalized_robust,
    missing_label_weights,
)
from patchpu_keras.losses.large_loss import LargeLoss, large_loss, large_loss_selection
from patchpu_keras.losses.loss_state import LossState
from patchpu_keras.losses.loss_state_callback import LossStateCallback
from patchpu_keras.losses.observed_label_loss import ObservedLabelLoss
from patchpu_keras.losses.online_negative import (
    OnlineNegative,
    online_negative,
    online_negative_targets,
)
from patchpu_keras.losses.registry import LOSSES, build_loss
from patchpu_keras.losses.role import ROLE, role
from patchpu_keras.losses.stateful_loss import StatefulLoss
from patchpu_keras.losses.weak_assume_negative import WeakAssumeNegative, weak_assume_negative
from patchpu_keras.losses.weak_negative import (
    WeakNegative,
    weak_negative,
    weak_negative_targets,
)

__all__ = [
    "AssumeNegative",
    "AssumeNegativeLS",
    "EntropyMaximization",
    "ExpectedNegativeConsistency",
    "ExpectedPositiveRegularization",
    "FullBCE",
    "GeneralizedRobust",
    "LOSSES",
    "LargeLoss",
    "LossState",
    "LossStateCallback",
    "ObservedLabelLoss",
    "OnlineNegative",
    "ROLE",
    "StatefulLoss",
    "WeakAssumeNegative",
    "WeakNegative",
    "assume_negative",
    "assume_negative_ls",
    "entropy_maximization",
    "expected_negative_consistency",
    "expected_positive_regularization",
    "full_bce",
    "build_loss",
    "generalized_robust",
    "large_loss",
    "large_loss_selection",
    "missing_label_weights",
    "online_negative",
    "online_negative_targets",
    "role",
    "weak_assume_negative",
    "weak_negative",
    "weak_negative_targets",
]
