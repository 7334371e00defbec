"""patchpu-keras: multi-label image classification from single positive labels."""

from patchpu_keras import quiet_start

quiet_start.silence_tensorflow_startup_of_commands()  # before anything imports TensorFlow

from patchpu_keras import labels, layers, losses, metrics, optimizers  # noqa: E402
from patchpu_keras.models import (  # noqa: E402
    CAMBackbone,
    CAMClassifier,
    PatchBackbone,
    PatchPUClassifier,
    TrainingModel,
)

__version__ = "0.1.0"

__all__ = [
    "CAMBackbone",
    "CAMClassifier",
    "PatchBackbone",
    "PatchPUClassifier",
    "TrainingModel",
    "labels",
    "layers",
    "losses",
    "metrics",
    "optimizers",
]
