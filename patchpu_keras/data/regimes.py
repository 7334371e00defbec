"""Annotation regimes: which of an image's labels the learner observes."""

import numpy as np

from patchpu_keras.labels import check_full_labels, observed_from_full


def single_positive(full_labels, seed=1200):
    """One observed positive per image, drawn uniformly among its positives.

    Args:
        full_labels: `(n, L)` in {0, 1}; every row needs a positive.
        seed: int (1200 by default, as Cole et al. 2021).

    Returns:
        `(n, L)` float32 observed labels: +1 at the drawn positive, 0 elsewhere.
    """
    full_labels = check_full_labels(full_labels, np.shape(full_labels)[-1])
    empty = np.flatnonzero(full_labels.sum(axis=1) == 0)
    if len(empty):
        raise ValueError(
            f"Single-positive annotation needs a positive in every image, but "
            f"{len(empty)} images have none, the first is row {empty[0]}. "
            "Received: a full-label row of zeros"
        )
    rng = np.random.default_rng(seed)
    observed = np.zeros(full_labels.shape, dtype=np.float32)
    for row, labels in enumerate(full_labels):
        observed[row, rng.choice(np.flatnonzero(labels))] = 1.0
    return observed


def full(full_labels):
    """Every label observed: +1 for positives, -1 for negatives."""
    return observed_from_full(full_labels)


REGIMES = {"single_positive": single_positive, "full": full}


def observe(full_labels, regime, seed=1200):
    """Observed labels of `full_labels` under a regime of `REGIMES`."""
    if regime == "single_positive":
        return single_positive(full_labels, seed=seed)
    if regime == "full":
        return full(full_labels)
    raise ValueError(f"Unknown annotation regime. Expected one of {sorted(REGIMES)}. Received: regime={regime!r}")
