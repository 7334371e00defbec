"""Losses for single-positive multi-label learning.

Each loss is a pure function returning the batch's scalar loss (mean over batch
and labels, logs clipped at 1e-7) plus a `keras.losses.Loss` class.
"""

import keras

from patchpu_keras.losses.assume_negative import AssumeNegative, assume_negative
from patchpu_keras.losses.full_bce import FullBCE, full_bce
from patchpu_keras.losses.observed_label_loss import ObservedLabelLoss
from patchpu_keras.losses.weak_negative import (
    WeakNegative,
    weak_negative,
    weak_negative_targets,
)

# The names recipes and `--set loss=...` use, and the class each one builds.
LOSSES = {
    "full_bce": FullBCE,
    "assume_negative": AssumeNegative,
    "weak_negative": WeakNegative,
}


def get(identifier, **kwargs):
    """Returns a loss instance from a name of `LOSSES` or a loss instance."""
    if isinstance(identifier, keras.losses.Loss):
        return identifier
    if identifier not in LOSSES:
        raise ValueError(
            f"Unknown loss. Expected one of {sorted(LOSSES)} or a keras.losses.Loss. "
            f"Received: loss={identifier!r}"
        )
    return LOSSES[identifier](**kwargs)


__all__ = [
    "AssumeNegative",
    "FullBCE",
    "LOSSES",
    "ObservedLabelLoss",
    "WeakNegative",
    "assume_negative",
    "full_bce",
    "get",
    "weak_negative",
    "weak_negative_targets",
]
