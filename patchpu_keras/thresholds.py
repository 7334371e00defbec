"""Per-class decision thresholds chosen on a validation split, to ship with the model.

The softmax of eq. (3) shares one unit of probability among the labels, so
the score of a present label rarely reaches 0.5 on an image with several
labels: one threshold for every class selects too little. `choose_thresholds`
picks one threshold per class from the validation split's scores, by the
best rule its labels allow:

- `"max_f1"`, where the split has full labels: the score threshold of highest
  F1 for the class (`patchpu_keras.metrics.best_f1_threshold`);
- `"positive_share"`, where it has only observed labels (single positives):
  the highest threshold that keeps `positive_share` of the class's known
  positives, i.e. the score of the `ceil(positive_share * n)`-th highest of
  its `n` observed positives. If the observed positives were a random sample
  of the positives, the recall of the class would be about `positive_share`;
- `"fallback"`, for a class without any positive in the split: the median of
  the other classes' chosen thresholds (they share the softmax's scale), or
  `fallback_threshold` when no class has a positive.

`model.set_thresholds(choose_thresholds(...).thresholds)` saves them with the
model. docs/evaluation.md ("Per-class thresholds") says how the demo measures
each rule and why `positive_share` defaults to what it does.
"""

import math
from typing import NamedTuple

import numpy as np

from patchpu_keras.metrics.classification import DEFAULT_THRESHOLD, best_f1_threshold

MAX_F1 = "max_f1"
POSITIVE_SHARE = "positive_share"
FALLBACK = "fallback"


class ChosenThresholds(NamedTuple):
    """What `choose_thresholds` returns.

    Attributes:
        thresholds: float32 array `(L,)`, one threshold per class in [0, 1].
        rules: tuple of L strings, the rule that chose each class's threshold
            (`"max_f1"`, `"positive_share"` or `"fallback"`).
    """

    thresholds: np.ndarray
    rules: tuple


def _check_labels(name, labels, shape, allowed):
    labels = np.asarray(labels)
    if labels.shape != shape:
        raise ValueError(
            f"`{name}` must have the shape of `probabilities` {shape}. Received: {name}.shape={labels.shape}"
        )
    values = np.unique(labels)
    if not np.isin(values, allowed).all():
        raise ValueError(
            f"`{name}` must hold only {sorted(allowed)}. Received: values {values[~np.isin(values, allowed)][:5].tolist()}"
        )
    return labels


def positive_share_threshold(scores, positive_share):
    """The highest threshold that keeps `positive_share` of `scores` (`score >= threshold`).

    Args:
        scores: `(n,)` scores of a class's known positives, `n >= 1`.
        positive_share: float in (0, 1].

    Returns:
        float, the `ceil(positive_share * n)`-th highest score.
    """
    descending = np.sort(np.asarray(scores, dtype="float64").ravel())[::-1]
    # The rounding guard keeps 0.8 * 5 at 4, not 5 (4.000000000000001 in floats).
    kept = max(1, math.ceil(round(positive_share * len(descending), 9)))
    return float(descending[kept - 1])


def choose_thresholds(
    probabilities, full_labels=None, observed_labels=None, positive_share=0.8,
    fallback_threshold=DEFAULT_THRESHOLD,
):
    """Per-class thresholds from a validation split's scores and labels.

    Full labels are used where given; otherwise the observed positives
    (`observed_labels == 1`; 0 unknown and -1 observed negative are not read).

    Args:
        probabilities: `(n, L)` scores of the validation images.
        full_labels: optional `(n, L)` labels in {0, 1}.
        observed_labels: optional `(n, L)` labels in {1, 0, -1}, read only
            without `full_labels`.
        positive_share: float in (0, 1], the share of a class's known
            positives its threshold keeps (rule `"positive_share"`).
        fallback_threshold: float in [0, 1], the threshold of every class
            when no class has a positive in the split.

    Returns:
        A `ChosenThresholds` (`thresholds` float32 `(L,)`, `rules`).

    Raises:
        ValueError: neither labels given, shapes that differ, label values out
            of range, non-finite scores, or parameters out of range.

    Example:
    ```python
    chosen = choose_thresholds(validation_scores, observed_labels=validation_observed)
    model.set_thresholds(chosen.thresholds)
    ```
    """
    probabilities = np.asarray(probabilities, dtype="float64")
    if probabilities.ndim != 2 or not np.all(np.isfinite(probabilities)):
        raise ValueError(
            "`probabilities` must be a finite (images, labels) array. "
            f"Received: probabilities of shape {probabilities.shape}"
        )
    if not 0.0 < positive_share <= 1.0:
        raise ValueError(f"`positive_share` must be in (0, 1]. Received: positive_share={positive_share}")
    if not 0.0 <= fallback_threshold <= 1.0:
        raise ValueError(
            f"`fallback_threshold` must be in [0, 1]. Received: fallback_threshold={fallback_threshold}"
        )
    if full_labels is not None:
        labels = _check_labels("full_labels", full_labels, probabilities.shape, (0, 1))
        rule = MAX_F1
    elif observed_labels is not None:
        labels = _check_labels("observed_labels", observed_labels, probabilities.shape, (-1, 0, 1)) == 1
        rule = POSITIVE_SHARE
    else:
        raise ValueError(
            "Give the validation split's `full_labels` or `observed_labels`. Received: neither"
        )
    num_labels = probabilities.shape[1]
    thresholds = np.full(num_labels, np.nan)
    rules = [FALLBACK] * num_labels
    for c in range(num_labels):
        positives = labels[:, c] == 1
        if not positives.any():
            continue
        if rule == MAX_F1:
            thresholds[c] = best_f1_threshold(positives, probabilities[:, c])[0]
        else:
            thresholds[c] = positive_share_threshold(probabilities[positives, c], positive_share)
        rules[c] = rule
    chosen = ~np.isnan(thresholds)
    thresholds[~chosen] = np.median(thresholds[chosen]) if chosen.any() else fallback_threshold
    thresholds = np.clip(thresholds, 0.0, 1.0)
    as_float32 = thresholds.astype("float32")
    # Rounded down, never up: a threshold equal to a float64 score still selects it.
    rounded_up = as_float32 > thresholds
    as_float32[rounded_up] = np.nextafter(as_float32[rounded_up], np.float32(0))
    return ChosenThresholds(as_float32, tuple(rules))
