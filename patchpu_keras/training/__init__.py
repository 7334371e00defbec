"""Training: builders (recipe dict -> model, optimizer, loss) and the run (`train`)."""

from patchpu_keras.training.builders import (
    MODEL_DEFAULTS,
    TRAINING_DEFAULTS,
    TrainingBudget,
    build_loss,
    build_model,
    build_optimizer,
    method_defaults,
    training_budget,
)
from patchpu_keras.training.run import train
from patchpu_keras.training.run_checkpoint import RunCheckpoint

__all__ = [
    "MODEL_DEFAULTS",
    "RunCheckpoint",
    "TRAINING_DEFAULTS",
    "TrainingBudget",
    "build_loss",
    "build_model",
    "build_optimizer",
    "method_defaults",
    "train",
    "training_budget",
]
