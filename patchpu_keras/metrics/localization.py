"""Whether a model looks where a label's object is: pointing and attention entropy (numpy).

The patch model's attention (eq. 1) should pick out each label's patches: the
argument of sec. 3.3.1 (a hidden positive's representation differs from the
observed positive's because it pools other patches) and Fig. 3 rest on it.
These functions measure it on images whose object boxes are known (the
built-in mosaics return them; VOC and COCO annotate them).

Boxes are `(top, left, bottom, right)` in input pixels, bottom and right
exclusive, as `MultiResolutionPatches.patch_boxes` and
`data.mosaics.compose_mosaics` give them.
"""

import numpy as np


def attention_peak_boxes(attention, patch_boxes, patch_levels, level=0):
    """The box of each label's most-attended patch of one resolution level.

    Args:
        attention: `(n, num_labels, num_patches)` attention weights (the patch
            model's `attention` output).
        patch_boxes: `(num_patches, 4)` boxes of the patches
            (`model.backbone.patches.patch_boxes(image_size, image_size)[0]`).
        patch_levels: `(num_patches,)` level of every patch.
        level: int, the level searched; 0 is the finest.

    Returns:
        `(n, num_labels, 4)` float boxes.
    """
    attention = np.asarray(attention, dtype="float64")
    patch_boxes = np.asarray(patch_boxes, dtype="float64")
    patch_levels = np.asarray(patch_levels)
    if attention.ndim != 3 or attention.shape[-1] != len(patch_boxes) or len(patch_levels) != len(patch_boxes):
        raise ValueError(
            "Expected attention (n, num_labels, num_patches) with one box and one level per patch. "
            f"Received: attention.shape={attention.shape}, patch_boxes.shape={patch_boxes.shape}, "
            f"patch_levels.shape={patch_levels.shape}"
        )
    candidates = np.flatnonzero(patch_levels == level)
    if candidates.size == 0:
        raise ValueError(
            f"No patch belongs to level {level}. Received: level={level}, "
            f"levels present={sorted(set(patch_levels.tolist()))}"
        )
    peaks = candidates[np.argmax(attention[..., candidates], axis=-1)]
    return patch_boxes[peaks]


def activation_peak_boxes(activation_maps, image_size):
    """The input-pixel box of each label's highest cell of a class activation map.

    Args:
        activation_maps: `(n, rows, cols, num_labels)` maps (the CAM model's
            `cam` output).
        image_size: int or `(height, width)` of the model's input, which the
            map's grid covers evenly.

    Returns:
        `(n, num_labels, 4)` float boxes of the peak cells.
    """
    maps = np.asarray(activation_maps, dtype="float64")
    if maps.ndim != 4:
        raise ValueError(
            f"Expected activation maps (n, rows, cols, num_labels). Received: shape={maps.shape}"
        )
    height, width = (image_size, image_size) if np.isscalar(image_size) else image_size
    n, rows, cols, num_labels = maps.shape
    flat = np.argmax(maps.reshape(n, rows * cols, num_labels), axis=1)  # (n, L)
    row, col = np.divmod(flat, cols)
    cell_h, cell_w = height / rows, width / cols
    return np.stack(
        [row * cell_h, col * cell_w, (row + 1) * cell_h, (col + 1) * cell_w], axis=-1
    )


def pointing_hits(peak_boxes, object_boxes, object_classes, labels):
    """Whether each (image, present label)'s peak box overlaps one of that label's objects.

    A hit is an intersection of positive area between the peak box and a box
    of an object of that label (touching edges do not count).

    Args:
        peak_boxes: `(n, num_labels, 4)` from `attention_peak_boxes` or
            `activation_peak_boxes`.
        object_boxes: sequence of n `(k_i, 4)` arrays, the objects of each
            image; None for an image whose objects are unknown (not scored).
        object_classes: sequence of n `(k_i,)` int arrays, each object's label
            (None where the boxes are).
        labels: `(n, num_labels)` full labels in {0, 1}: the pairs scored.

    Returns:
        `(n, num_labels)` float array: 1 hit, 0 miss, NaN where the label is
        absent or the image's objects are unknown.
    """
    peak_boxes = np.asarray(peak_boxes, dtype="float64")
    labels = np.asarray(labels)
    if peak_boxes.shape[:2] != labels.shape or len(object_boxes) != len(labels) or len(object_classes) != len(labels):
        raise ValueError(
            "Expected peak boxes (n, num_labels, 4), labels (n, num_labels) and n lists of "
            f"objects. Received: peak_boxes.shape={peak_boxes.shape}, labels.shape={labels.shape}, "
            f"{len(object_boxes)} object box arrays, {len(object_classes)} object class arrays"
        )
    hits = np.full(labels.shape, np.nan)
    for image, (boxes, classes) in enumerate(zip(object_boxes, object_classes)):
        if boxes is None or classes is None:
            continue
        boxes = np.asarray(boxes, dtype="float64").reshape(-1, 4)
        classes = np.asarray(classes).reshape(-1)
        for label in np.flatnonzero(labels[image] > 0):
            own = boxes[classes == label]
            peak = peak_boxes[image, label]
            overlap_h = np.minimum(own[:, 2], peak[2]) - np.maximum(own[:, 0], peak[0])
            overlap_w = np.minimum(own[:, 3], peak[3]) - np.maximum(own[:, 1], peak[1])
            hits[image, label] = float(np.any((overlap_h > 0) & (overlap_w > 0)))
    return hits


def pointing_score(peak_boxes, object_boxes, object_classes, labels):
    """Share of (image, present label) pairs whose peak falls on that label's object.

    The pointing game (Zhang et al., "Top-down Neural Attention by Excitation
    Backprop", ECCV 2016) with the peak taken as a patch or map cell: see
    `pointing_hits`.

    Returns:
        Float in [0, 1]; NaN when no label is present.
    """
    hits = pointing_hits(peak_boxes, object_boxes, object_classes, labels)
    return float(np.nanmean(hits)) if np.any(~np.isnan(hits)) else float("nan")


def pointing_chance(peak_candidate_boxes, object_boxes, object_classes, labels):
    """Pointing score of a peak drawn uniformly among the candidate boxes.

    Args:
        peak_candidate_boxes: `(num_candidates, 4)` boxes a peak can take
            (e.g. the level-0 patches).
        object_boxes, object_classes, labels: as in `pointing_hits`.

    Returns:
        Float, the expected score of uniform pointing, the baseline to beat.
    """
    candidates = np.asarray(peak_candidate_boxes, dtype="float64")
    labels = np.asarray(labels)
    total = np.zeros(labels.shape)
    for candidate in candidates:
        peaks = np.broadcast_to(candidate, labels.shape + (4,))
        total += pointing_hits(peaks, object_boxes, object_classes, labels)
    hits = total / len(candidates)
    return float(np.nanmean(hits)) if np.any(~np.isnan(hits)) else float("nan")


def normalized_attention_entropy(attention):
    """Entropy of each label's attention over patches, divided by log(num_patches).

    1 is the uniform distribution (every patch pooled alike), 0 a single patch.

    Args:
        attention: `(..., num_patches)` weights summing to 1 over the last axis.

    Returns:
        Array of the leading shape, values in [0, 1].
    """
    attention = np.asarray(attention, dtype="float64")
    num_patches = attention.shape[-1]
    if num_patches < 2:
        raise ValueError(
            f"Entropy over patches needs at least 2 patches. Received: num_patches={num_patches}"
        )
    # float32 weights sum to 1 only up to rounding, which can put a near-uniform
    # attention's entropy a hair above log(num_patches): renormalise, then clip.
    attention = attention / np.sum(attention, axis=-1, keepdims=True)
    terms = np.where(attention > 0, -attention * np.log(np.where(attention > 0, attention, 1.0)), 0.0)
    return np.clip(terms.sum(axis=-1) / np.log(num_patches), 0.0, 1.0)


def attention_entropy(attention, labels):
    """Mean normalised attention entropy for present and for absent labels.

    Args:
        attention: `(n, num_labels, num_patches)`.
        labels: `(n, num_labels)` full labels in {0, 1}.

    Returns:
        A dict `{"present": float, "absent": float}` (NaN when no such pair).
    """
    entropy = normalized_attention_entropy(attention)
    labels = np.asarray(labels)
    if entropy.shape != labels.shape:
        raise ValueError(
            "Expected attention (n, num_labels, num_patches) and labels (n, num_labels). "
            f"Received: attention.shape={np.shape(attention)}, labels.shape={labels.shape}"
        )
    present, absent = entropy[labels > 0], entropy[labels <= 0]
    return {
        "present": float(present.mean()) if present.size else float("nan"),
        "absent": float(absent.mean()) if absent.size else float("nan"),
    }
