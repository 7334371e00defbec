import numpy as np


def average_precision(y_true, y_score):
    """Average precision of one class, as scikit-learn's `average_precision_score`.

    `AP = (1 / n_pos) * sum over positives j of precision(s_j)`, with
    `precision(s) = #positives scoring >= s / #samples scoring >= s`. Tied scores
    share one threshold, exactly like scikit-learn's step-wise definition.

    Args:
        y_true: `(n,)` labels in {0, 1}.
        y_score: `(n,)` scores.

    Returns:
        float, or NaN when the class has no positive.
    """
    y_true = np.asarray(y_true).astype(bool).ravel()
    y_score = np.asarray(y_score, dtype="float64").ravel()
    if y_true.shape != y_score.shape:
        raise ValueError(
            "y_true and y_score must have the same length. "
            f"Received: y_true.shape={y_true.shape}, y_score.shape={y_score.shape}"
        )
    num_positives = int(y_true.sum())
    if num_positives == 0:
        return float("nan")
    ascending = np.sort(y_score)
    positive_ascending = np.sort(y_score[y_true])
    positive_scores = y_score[y_true]
    at_or_above = len(ascending) - np.searchsorted(ascending, positive_scores, side="left")
    positives_at_or_above = num_positives - np.searchsorted(
        positive_ascending, positive_scores, side="left"
    )
    return float(np.mean(positives_at_or_above / at_or_above))


def per_class_average_precision(y_true, y_score):
    """`(num_labels,)` average precision of every column; NaN where no positive."""
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score)
    if y_true.ndim != 2 or y_true.shape != y_score.shape:
        raise ValueError(
            "y_true and y_score must both be (num_images, num_labels). "
            f"Received: y_true.shape={y_true.shape}, y_score.shape={y_score.shape}"
        )
    return np.array(
        [average_precision(y_true[:, label], y_score[:, label]) for label in range(y_true.shape[1])]
    )


def mean_average_precision_score(y_true, y_score):
    """Mean over classes of average precision; classes without a positive are left out.

    Args:
        y_true: `(num_images, num_labels)` full labels in {0, 1}.
        y_score: `(num_images, num_labels)` scores.

    Returns:
        float in [0, 1], or NaN when no class has a positive.
    """
    per_class = per_class_average_precision(y_true, y_score)
    if np.isnan(per_class).all():
        return float("nan")
    return float(np.nanmean(per_class))
