"""Training: builders (recipe dict -> model, optimizer, loss) and the run (`train`)."""

from patchpu_keras.training.builders import (
    MODEL_DEFAULTS,
    RUN_DEFAULTS,
    TRAINING_DEFAULTS,
    TrainingBudget,
    build_loss,
    build_model,
    build_optimizer,
    method_defaults,
    training_budget,
)
from patchpu_keras.training.run import train
from patchpu_keras.training.non_finite_loss import StopOnNonFiniteLoss
from patchpu_keras.training.run_checkpoint import NonFiniteLossError, RunCheckpoint, read_checkpoint

__all__ = [
    "MODEL_DEFAULTS",
    "NonFiniteLossError",
    "RUN_DEFAULTS",
    "RunCheckpoint",
    "StopOnNonFiniteLoss",
    "TRAINING_DEFAULTS",
    "TrainingBudget",
    "build_loss",
    "build_model",
    "build_optimizer",
    "method_defaults",
    "read_checkpoint",
    "train",
    "training_budget",
]
