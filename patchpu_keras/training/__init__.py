"""Training: builders (recipe dict -> model, optimizer, loss) and the run (`train`)."""

from patchpu_keras.training.builders import (
    MODEL_DEFAULTS,
    build_loss,
    build_model,
    build_optimizer,
    method_defaults,
)
from patchpu_keras.training.run import train
from patchpu_keras.training.run_checkpoint import RunCheckpoint

__all__ = [
    "MODEL_DEFAULTS",
    "RunCheckpoint",
    "build_loss",
    "build_model",
    "build_optimizer",
    "method_defaults",
    "train",
]
