"""Whether the weak negative weights tell hidden positives from true negatives (numpy).

Eq. (7)-(8) weigh an unknown label's negative term by how much its label
embedding looks like an observed positive's. The loss helps only if the weight
is lower on hidden positives (present but not observed) than on true
negatives. With full labels known (benchmarks, the built-in mosaics), these
functions measure that, and how well the model's own probability separates the
same entries.
"""

import numpy as np


def roc_auc(higher, lower):
    """The chance that a value of `higher` exceeds one of `lower` (ties count half).

    The area under the ROC curve of telling the two groups apart by value
    (Mann-Whitney U / (n_higher * n_lower)).

    Args:
        higher: 1-D values expected to be larger.
        lower: 1-D values expected to be smaller.

    Returns:
        float in [0, 1]; NaN when either group is empty.
    """
    higher = np.asarray(higher, dtype="float64").ravel()
    lower = np.asarray(lower, dtype="float64").ravel()
    if not higher.size or not lower.size:
        return float("nan")
    values = np.concatenate([higher, lower])
    unique, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    # Average rank (1-based) of each distinct value: tied values share it.
    average_ranks = np.cumsum(counts) - (counts - 1) / 2.0
    rank_sum = average_ranks[inverse[: higher.size]].sum()
    return float((rank_sum - higher.size * (higher.size + 1) / 2.0) / (higher.size * lower.size))


def weak_negative_separation(observed_labels, full_labels, weights, probabilities):
    """Mean WN weights of hidden positives and true negatives, and how well each score separates them.

    Args:
        observed_labels: `(n, L)` observed labels (+1 / 0 / -1) of the training images.
        full_labels: `(n, L)` full labels in {0, 1}.
        weights: `(n, L)` weak negative weights (`losses.weak_negative_targets`).
        probabilities: `(n, L)` the model's probabilities.

    Returns:
        A dict: `wn_weight_hidden_positive`, `wn_weight_true_negative` (mean
        weights over the unknown entries of each kind), `wn_weight_auc` (the
        chance a true negative weighs more than a hidden positive: 0.5 is no
        separation) and `probability_auc` (the chance a hidden positive scores
        higher than a true negative). NaN where a group is empty.
    """
    observed_labels, full_labels = np.asarray(observed_labels), np.asarray(full_labels)
    weights, probabilities = np.asarray(weights, "float64"), np.asarray(probabilities, "float64")
    if not observed_labels.shape == full_labels.shape == weights.shape == probabilities.shape:
        raise ValueError(
            "Expected four (n, L) arrays of the same shape. Received: shapes "
            f"{[np.shape(a) for a in (observed_labels, full_labels, weights, probabilities)]}"
        )
    unknown = observed_labels == 0
    hidden_positive = unknown & (full_labels > 0)
    true_negative = unknown & (full_labels <= 0)

    def mean(values):
        return float(values.mean()) if values.size else float("nan")

    return {
        "wn_weight_hidden_positive": mean(weights[hidden_positive]),
        "wn_weight_true_negative": mean(weights[true_negative]),
        "wn_weight_auc": roc_auc(weights[true_negative], weights[hidden_positive]),
        "probability_auc": roc_auc(probabilities[hidden_positive], probabilities[true_negative]),
    }
