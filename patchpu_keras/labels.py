"""Label encodings shared by losses, metrics, models and data.

Observed labels are `(batch, num_labels)`: +1 observed positive, 0 unknown, -1
observed negative. Full labels are `(batch, num_labels)` in {0, 1}. A model's
target `y` is either an observed-label array or a dict with the keys below.
"""

import numpy as np

OBSERVED_LABELS = "observed_labels"
FULL_LABELS = "full_labels"
INDEX = "index"
LABEL_KEYS = (OBSERVED_LABELS, FULL_LABELS, INDEX)


def unpack_labels(y, num_labels=None):
    """Returns the target as a dict `{"observed_labels", ["full_labels"], ["index"]}`.

    A plain array is taken as observed labels. Label widths are checked against
    `num_labels` from static shapes, so a wrong width fails when the step is
    traced, on every backend.
    """
    if isinstance(y, dict):
        unknown = sorted(set(y) - set(LABEL_KEYS))
        if unknown or OBSERVED_LABELS not in y:
            raise ValueError(
                f"Targets must be an observed-label array or a dict with keys "
                f"{OBSERVED_LABELS!r} (required), {FULL_LABELS!r}, {INDEX!r}. "
                f"Received: keys={sorted(y)}"
            )
        labels = dict(y)
    else:
        labels = {OBSERVED_LABELS: y}
    if num_labels is not None:
        for key in (OBSERVED_LABELS, FULL_LABELS):
            if key in labels:
                width = labels[key].shape[-1]
                if width is not None and width != num_labels:
                    raise ValueError(
                        f"`{key}` must have {num_labels} columns, one per label. "
                        f"Received: {key}.shape={tuple(labels[key].shape)}"
                    )
    return labels


def check_observed_labels(labels, num_labels, source="observed labels"):
    """Raises a ValueError unless `labels` is `(n, num_labels)` in {-1, 0, 1}."""
    return _check_values(labels, num_labels, (-1, 0, 1), source)


def check_full_labels(labels, num_labels, source="full labels"):
    """Raises a ValueError unless `labels` is `(n, num_labels)` in {0, 1}."""
    return _check_values(labels, num_labels, (0, 1), source)


def _check_values(labels, num_labels, allowed, source):
    array = np.asarray(labels)
    if array.ndim != 2 or array.shape[1] != num_labels:
        raise ValueError(
            f"{source} must have shape (num_images, {num_labels}). "
            f"Received: shape={array.shape}"
        )
    bad = ~np.isin(array, allowed)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise ValueError(
            f"{source} may only hold values {list(allowed)}; "
            f"{int(bad.sum())} entries do not, the first at row {row}, column {column}. "
            f"Received: value={array[row, column].item()!r}"
        )
    return array


def check_images(images, source="images"):
    """Raises a ValueError unless `images` is a finite `(n, height, width, channels)` array."""
    array = np.asarray(images)
    if array.ndim != 4:
        raise ValueError(
            f"{source} must have shape (num_images, height, width, channels). "
            f"Received: shape={array.shape}"
        )
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            index = int(np.argwhere(~finite)[0][0])
            raise ValueError(
                f"{source} must be finite, but image {index} holds "
                f"{int((~finite[index]).sum())} NaN or infinite values. "
                f"Received: dtype={array.dtype}"
            )
    return array


def observed_from_full(full_labels):
    """Fully observed labels: +1 for positives, -1 for negatives."""
    return 2 * np.asarray(full_labels, dtype="float32") - 1


def check_arrays(images, targets, num_labels, where):
    """Checks in-memory images and targets (numpy arrays; anything else is left to its pipeline).

    Args:
        images: images, checked by `check_images` when a numpy array.
        targets: None, observed labels, or a dict of `LABEL_KEYS` (`index` is not checked).
        num_labels: int, L.
        where: str, what the arrays were given to (`"fit"`), named in the error.
    """
    if isinstance(images, np.ndarray):
        check_images(images, f"{where}: images")
    targets = targets if isinstance(targets, dict) else {OBSERVED_LABELS: targets}
    for key, value in targets.items():
        if not isinstance(value, np.ndarray) or key == INDEX:
            continue
        if key == FULL_LABELS:
            check_full_labels(value, num_labels, f"{where}: {key}")
        else:
            check_observed_labels(value, num_labels, f"{where}: {key}")
