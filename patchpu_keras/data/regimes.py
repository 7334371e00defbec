"""Annotation regimes: which of an image's labels the learner observes."""

import numpy as np

from patchpu_keras.labels import check_full_labels, check_observed_labels, observed_from_full

REGIMES = ("single_positive", "partial", "full", "observed")


def single_positive(full_labels, seed=1200):
    """One observed positive per image, drawn uniformly among its positives.

    Args:
        full_labels: `(n, L)` in {0, 1}; every row needs a positive.
        seed: int (1200 by default, as Cole et al. 2021).

    Returns:
        `(n, L)` float32 observed labels: +1 at the drawn positive, 0 elsewhere.

    Reference:
        Cole, Mac Aodha, Lorieul, Perona, Morris, Jojic, "Multi-Label Learning
        from Single Positive Labels", CVPR 2021.
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


def partial(full_labels, fraction, seed=1200):
    """A fraction of every image's labels observed, positives and negatives alike.

    Each image keeps `max(1, round(fraction * L))` of its L labels, drawn
    uniformly without replacement; kept labels are observed (+1 or -1), the
    others unknown (0).

    Args:
        full_labels: `(n, L)` in {0, 1}.
        fraction: float in (0, 1], the part of the labels kept.
        seed: int.

    Returns:
        `(n, L)` float32 observed labels in {-1, 0, 1}.

    Reference:
        Durand, Mehrasa, Mori, "Learning a Deep ConvNet for Multi-label
        Classification with Partial Labels", CVPR 2019.
    """
    full_labels = check_full_labels(full_labels, np.shape(full_labels)[-1])
    if fraction is None or not 0.0 < fraction <= 1.0:
        raise ValueError(f"`partial_fraction` must be in (0, 1]. Received: partial_fraction={fraction}")
    num_images, num_labels = full_labels.shape
    kept_per_image = max(1, int(round(fraction * num_labels)))
    rng = np.random.default_rng(seed)
    # The first `kept_per_image` columns of a random permutation per row.
    order = np.argsort(rng.random((num_images, num_labels)), axis=1)
    kept = np.zeros(full_labels.shape, dtype=bool)
    np.put_along_axis(kept, order[:, :kept_per_image], True, axis=1)
    return np.where(kept, observed_from_full(full_labels), 0.0).astype(np.float32)


def full(full_labels):
    """Every label observed: +1 for positives, -1 for negatives."""
    return observed_from_full(full_labels)


def observe(full_labels, regime, seed=1200, partial_fraction=0.1, observed_labels=None):
    """Observed labels of a training set under an annotation regime.

    Args:
        full_labels: `(n, L)` in {0, 1}, or None when the source only gives
            observed labels (folders, manifests).
        regime: "single_positive" (one positive per image, drawn uniformly),
            "partial" (`partial_fraction` of every image's labels), "full"
            (every label) or "observed" (the labels the source gives: the full
            labels when it has them, else `observed_labels`).
        seed: int, seed of the draws (1200 by default, as Cole et al. 2021).
        partial_fraction: float in (0, 1], for "partial" (10% by default).
        observed_labels: `(n, L)` in {-1, 0, 1}, the source's own labels when
            `full_labels` is None. "single_positive" then draws among their
            positives; "partial" and "full" need full labels and raise.

    Returns:
        `(n, L)` float32 observed labels in {-1, 0, 1}.

    Example:
    >>> observe(np.array([[1, 0, 1]]), "single_positive", seed=1200)
    array([[1., 0., 0.]], dtype=float32)
    """
    if regime not in REGIMES:
        raise ValueError(f"Unknown annotation regime. Expected one of {list(REGIMES)}. Received: regime={regime!r}")
    if full_labels is None:
        if observed_labels is None:
            raise ValueError("Give full_labels or observed_labels. Received: neither")
        observed_labels = check_observed_labels(observed_labels, np.shape(observed_labels)[-1])
        if regime == "observed":
            return observed_labels.astype(np.float32)
        if regime == "single_positive":
            return single_positive((observed_labels > 0).astype(np.float32), seed=seed)
        raise ValueError(
            f"The {regime!r} regime hides part of the full labels, but this data only has "
            "observed labels (label folders or a manifest's train rows): use regime=observed "
            f"or single_positive. Received: regime={regime!r}"
        )
    if regime == "single_positive":
        return single_positive(full_labels, seed=seed)
    if regime == "partial":
        return partial(full_labels, partial_fraction, seed=seed)
    return full(full_labels)
