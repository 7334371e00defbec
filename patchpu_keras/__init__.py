"""patchpu-keras: multi-label image classification from single positive labels."""

from patchpu_keras import labels, layers, losses, metrics, optimizers
from patchpu_keras.models import CAMBackbone, CAMClassifier, PatchBackbone, PatchPUClassifier, TrainingModel

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
