"""Metrics: mean average precision (a Keras metric and numpy functions) and numpy P/R/F1."""

from patchpu_keras.metrics.average_precision import (
    average_precision,
    mean_average_precision_score,
    per_class_average_precision,
)
from patchpu_keras.metrics.classification import (
    best_f1_threshold,
    classification_report,
    precision_recall_curve,
    precision_recall_f1,
)
from patchpu_keras.metrics.mean_average_precision import MeanAveragePrecision

__all__ = [
    "MeanAveragePrecision",
    "average_precision",
    "best_f1_threshold",
    "classification_report",
    "mean_average_precision_score",
    "per_class_average_precision",
    "precision_recall_curve",
    "precision_recall_f1",
]
