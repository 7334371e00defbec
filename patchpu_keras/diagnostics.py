"""What a trained model does beyond its scores: where it looks, and how its weak negatives weigh.

`localization` scores a model's attention (patch model) or class activation
maps (CAM model) against the objects of labelled images: the pointing score
and the attention entropy. `weak_negative_diagnostics` measures how well eq.
(7)-(8)'s weights separate hidden positives from true negatives. `train` logs
both every epoch on a probe of training images whose full labels are known
(`training.TrainingDiagnostics`); `evaluate --localization` reports the first
on the held-out split.
"""

import keras
import numpy as np

from patchpu_keras.losses.weak_negative import weak_negative_targets
from patchpu_keras.metrics.localization import (
    activation_peak_boxes,
    attention_entropy,
    attention_peak_boxes,
    pointing_score,
)
from patchpu_keras.metrics.weak_negative_separation import weak_negative_separation

# Model outputs the diagnostics read, for `inference.predict_labelled(collect=...)`.
DIAGNOSED_OUTPUTS = ("probabilities", "label_embeddings", "attention", "cam")


def localization(model, outputs, full_labels, objects=None, level=0):
    """Attention entropy and pointing score of a model's outputs on labelled images.

    Args:
        model: the model (its patch boxes or input size place the peaks).
        outputs: dict of `(n, ...)` model outputs with `attention` (patch
            model) or `cam` (CAM model).
        full_labels: `(n, L)` in {0, 1}.
        objects: optional `(boxes, classes)`: per image, a `(k, 4)` array of
            object boxes `(top, left, bottom, right)` in input pixels and a
            `(k,)` array of their labels. Without it, no pointing score.
        level: the patch level whose peak is taken (0 is the finest).

    Returns:
        A dict with `attention_entropy_present` and `attention_entropy_absent`
        (patch model) and `pointing` (with `objects`); empty when the model
        returns neither attention nor maps.
    """
    result = {}
    peaks = None
    if outputs.get("attention") is not None:
        entropy = attention_entropy(outputs["attention"], full_labels)
        result.update(attention_entropy_present=entropy["present"], attention_entropy_absent=entropy["absent"])
        if objects is not None:
            boxes, levels = model.backbone.patches.patch_boxes(model.image_size, model.image_size)
            peaks = attention_peak_boxes(outputs["attention"], boxes, levels, level=level)
    elif outputs.get("cam") is not None and objects is not None:
        peaks = activation_peak_boxes(outputs["cam"], model.image_size)
    if peaks is not None:
        result["pointing"] = pointing_score(peaks, objects[0], objects[1], full_labels)
    return result


def weak_negative_diagnostics(outputs, observed_labels, full_labels, theta):
    """`metrics.weak_negative_separation` of the WN weights a model's label embeddings give.

    Returns:
        The separation dict, or an empty dict when the model returns no label
        embeddings (the CAM model).
    """
    if outputs.get("label_embeddings") is None:
        return {}
    weights = keras.ops.convert_to_numpy(
        weak_negative_targets(observed_labels, outputs["label_embeddings"], theta=theta)
    )
    return weak_negative_separation(observed_labels, full_labels, weights, np.asarray(outputs["probabilities"]))
