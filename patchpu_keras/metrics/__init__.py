"""Metrics: mean average precision (a Keras metric and numpy functions), numpy P/R/F1 and
localization measures (numpy)."""

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
from patchpu_keras.metrics.localization import (
    activation_peak_boxes,
    attention_entropy,
    attention_peak_boxes,
    normalized_attention_entropy,
    pointing_chance,
    pointing_hits,
    pointing_score,
)
from patchpu_keras.metrics.mean_average_precision import MeanAveragePrecision

__all__ = [
    "MeanAveragePrecision",
    "activation_peak_boxes",
    "attention_entropy",
    "attention_peak_boxes",
    "average_precision",
    "best_f1_threshold",
    "classification_report",
    "mean_average_precision_score",
    "normalized_attention_entropy",
    "per_class_average_precision",
    "pointing_chance",
    "pointing_hits",
    "pointing_score",
    "precision_recall_curve",
    "precision_recall_f1",
]
