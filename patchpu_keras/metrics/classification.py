"""Classification metrics of multi-label scores, in numpy: P/R/F1, PR curves, best thresholds.

They sit beside `average_precision`: `classification_report` gathers them
(and the per-class AP) for `cli.py evaluate`.
"""

import math

import numpy as np

from patchpu_keras.metrics.average_precision import per_class_average_precision

DEFAULT_THRESHOLD = 0.5
PER_CLASS_COLUMNS = (
    "label", "num_positives", "ap",
    "precision@0.5", "recall@0.5", "f1@0.5",
    "best_threshold", "precision@best", "recall@best", "f1@best",
    "model_threshold", "precision@model", "recall@model", "f1@model",
)


def precision_recall_curve(y_true, y_score):
    """Precision and recall of `score >= t` at every distinct score t.

    Args:
        y_true: `(n,)` labels in {0, 1}.
        y_score: `(n,)` scores.

    Returns:
        `(precision, recall, thresholds)`, highest threshold first. Recall is
        NaN everywhere when there is no positive.
    """
    y_true = np.asarray(y_true).astype(bool).ravel()
    y_score = np.asarray(y_score, dtype="float64").ravel()
    order = np.argsort(-y_score, kind="stable")
    scores, truth = y_score[order], y_true[order]
    # The last row of each run of tied scores: a threshold admits all of them.
    last_of_ties = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(truth)[last_of_ties]
    predicted = last_of_ties + 1.0
    num_positives = truth.sum()
    recall = true_positives / num_positives if num_positives else np.full(len(predicted), np.nan)
    return true_positives / predicted, recall, scores[last_of_ties]


def precision_recall_f1(y_true, y_predicted):
    """Precision, recall and F1 of binary predictions; 0 where undefined (no prediction, no positive)."""
    y_true = np.asarray(y_true).astype(bool)
    y_predicted = np.asarray(y_predicted).astype(bool)
    true_positives = float(np.sum(y_true & y_predicted))
    precision = true_positives / y_predicted.sum() if y_predicted.sum() else 0.0
    recall = true_positives / y_true.sum() if y_true.sum() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def best_f1_threshold(y_true, y_score):
    """The score threshold of highest F1 for one class (the highest such threshold on ties).

    Returns:
        `(threshold, precision, recall, f1)`, or `None` without positives.
    """
    if not np.any(y_true):
        return None
    precision, recall, thresholds = precision_recall_curve(y_true, y_score)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator),
                   where=denominator > 0)
    best = int(np.argmax(f1))
    return float(thresholds[best]), float(precision[best]), float(recall[best]), float(f1[best])


def _averages(full_labels, predicted, classes):
    per_class = [precision_recall_f1(full_labels[:, c], predicted[:, c]) for c in classes]
    macro = np.mean(per_class, axis=0) if per_class else (math.nan,) * 3
    micro = precision_recall_f1(full_labels[:, classes], predicted[:, classes])
    keys = ("precision", "recall", "f1")
    return {"micro": dict(zip(keys, map(float, micro))), "macro": dict(zip(keys, map(float, macro)))}


def _json_number(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def classification_report(full_labels, scores, label_names, threshold=DEFAULT_THRESHOLD, thresholds=None):
    """mAP, per-class AP and precision / recall / F1 of multi-label scores.

    Per class: AP, and precision, recall and F1 of `score >= threshold`, at
    the model's own threshold of the class (`thresholds`, saved with the model,
    chosen on a validation split) and at the class's best-F1 threshold. The
    best thresholds are chosen on the very data they are measured on, so their
    numbers are optimistic: pick thresholds on a validation split
    (`patchpu_keras.thresholds.choose_thresholds`) and apply them to a test
    split, as the model's own are. Averages (macro: mean
    over classes; micro: pooled counts) and mAP leave out classes without any
    positive, whose AP is undefined.

    Args:
        full_labels: `(n, L)` in {0, 1}.
        scores: `(n, L)` scores.
        label_names: list of L names.
        threshold: float, the fixed threshold (0.5).
        thresholds: optional `(L,)` per-class thresholds (`model.thresholds`);
            `None` is `threshold` for every class.

    Returns:
        A dict with `map`, `num_images`, `threshold`, `model_thresholds`,
        `at_threshold`, `at_model_thresholds` and `at_best_thresholds` (each
        `{"micro", "macro"}` of precision / recall / F1) and `per_class` (a
        list of dicts with `PER_CLASS_COLUMNS`).
    """
    full_labels = np.asarray(full_labels)
    scores = np.asarray(scores)
    if len(label_names) != scores.shape[-1]:
        raise ValueError(
            f"Expected one name per score column ({scores.shape[-1]}). "
            f"Received: {len(label_names)} label names"
        )
    model_thresholds = np.full(scores.shape[-1], threshold) if thresholds is None else np.asarray(thresholds)
    if model_thresholds.shape != (scores.shape[-1],):
        raise ValueError(
            f"Expected one threshold per score column ({scores.shape[-1]}). "
            f"Received: thresholds of shape {model_thresholds.shape}"
        )
    at_model = scores >= model_thresholds
    average_precisions = per_class_average_precision(full_labels, scores)
    with_positives = [c for c in range(scores.shape[1]) if full_labels[:, c].any()]
    at_best = np.zeros_like(scores, dtype=bool)
    per_class = []
    for c, name in enumerate(label_names):
        precision, recall, f1 = precision_recall_f1(full_labels[:, c], scores[:, c] >= threshold)
        best = best_f1_threshold(full_labels[:, c], scores[:, c])
        if best is not None:
            at_best[:, c] = scores[:, c] >= best[0]
        per_class.append(dict(zip(PER_CLASS_COLUMNS, (
            name, int(full_labels[:, c].sum()), _json_number(float(average_precisions[c])),
            precision, recall, f1,
            *(best if best is not None else (None,) * 4),
            float(model_thresholds[c]), *precision_recall_f1(full_labels[:, c], at_model[:, c]),
        ))))
    return {
        "map": _json_number(float(np.nanmean(average_precisions))) if with_positives else None,
        "num_images": int(len(scores)),
        "num_classes_with_positives": len(with_positives),
        "threshold": threshold,
        "model_thresholds": [float(value) for value in model_thresholds],
        "at_threshold": _averages(full_labels, scores >= threshold, with_positives),
        "at_model_thresholds": _averages(full_labels, at_model, with_positives),
        "at_best_thresholds": _averages(full_labels, at_best, with_positives),
        "per_class": per_class,
    }
