"""Mean average precision, as a Keras metric and as numpy functions."""

from patchpu_keras.metrics.average_precision import (
    average_precision,
    mean_average_precision_score,
    per_class_average_precision,
)
from patchpu_keras.metrics.mean_average_precision import MeanAveragePrecision

__all__ = [
    "MeanAveragePrecision",
    "average_precision",
    "mean_average_precision_score",
    "per_class_average_precision",
]
