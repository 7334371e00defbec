"""patchpu-keras: multi-label image classification from single positive labels."""

from patchpu_keras import labels, layers, losses, metrics, optimizers
from patchpu_keras.models import CAMClassifier, PatchPUClassifier

__version__ = "0.1.0"

__all__ = [
    "CAMClassifier",
    "PatchPUClassifier",
    "labels",
    "layers",
    "losses",
    "metrics",
    "optimizers",
]
