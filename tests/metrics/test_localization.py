import numpy as np
import pytest

from patchpu_keras.data.mosaics import compose_mosaics
from patchpu_keras.layers import MultiResolutionPatches
from patchpu_keras.metrics import (
    activation_peak_boxes,
    attention_entropy,
    attention_peak_boxes,
    normalized_attention_entropy,
    pointing_chance,
    pointing_hits,
    pointing_score,
)

# A 4x4 image cut into 2x2 patches at two levels: four level-0 patches
# (row-major) and one level-1 patch covering everything.
PATCH_BOXES = np.array(
    [[0, 0, 2, 2], [0, 2, 2, 4], [2, 0, 4, 2], [2, 2, 4, 4], [0, 0, 4, 4]], dtype=float
)
PATCH_LEVELS = np.array([0, 0, 0, 0, 1])


def test_attention_peak_boxes_search_only_the_level():
    attention = np.array(
        [
            # label 0: the level-1 patch has the most weight, the best level-0 one is patch 2
            [[0.1, 0.1, 0.3, 0.1, 0.4], [0.2, 0.5, 0.1, 0.1, 0.1]],
        ]
    )
    boxes = attention_peak_boxes(attention, PATCH_BOXES, PATCH_LEVELS, level=0)
    np.testing.assert_array_equal(boxes, [[[2, 0, 4, 2], [0, 2, 2, 4]]])
    coarse = attention_peak_boxes(attention, PATCH_BOXES, PATCH_LEVELS, level=1)
    np.testing.assert_array_equal(coarse, [[[0, 0, 4, 4], [0, 0, 4, 4]]])


def test_activation_peak_boxes_map_cells_to_pixels():
    maps = np.zeros((1, 2, 4, 2))  # 2 rows x 4 columns over a 40 (h) x 80 (w) image
    maps[0, 1, 2, 0] = 5.0  # label 0 peaks at row 1, column 2
    maps[0, 0, 3, 1] = 1.0  # label 1 at row 0, column 3
    boxes = activation_peak_boxes(maps, (40, 80))
    np.testing.assert_array_equal(boxes, [[[20, 40, 40, 60], [0, 60, 20, 80]]])


def test_pointing_counts_positive_overlap_with_the_labels_own_objects():
    # Image 0: label 0 at (0,0)-(2,2), label 1 at (2,2)-(4,4). Image 1: label 1 at (1,1)-(3,3).
    object_boxes = [np.array([[0, 0, 2, 2], [2, 2, 4, 4]]), np.array([[1, 1, 3, 3]])]
    object_classes = [np.array([0, 1]), np.array([1])]
    labels = np.array([[1, 1, 0], [0, 1, 0]])
    peaks = np.array(
        [
            # label 0 on its object (hit); label 1 on label 0's object (miss); label 2 absent
            [[0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 2, 2]],
            # label 1's peak (0,2)-(2,4) overlaps (1,1)-(3,3) on (1,2)-(2,3): hit
            [[0, 0, 2, 2], [0, 2, 2, 4], [0, 0, 2, 2]],
        ],
        dtype=float,
    )
    hits = pointing_hits(peaks, object_boxes, object_classes, labels)
    np.testing.assert_array_equal(hits, [[1, 0, np.nan], [np.nan, 1, np.nan]])
    assert pointing_score(peaks, object_boxes, object_classes, labels) == pytest.approx(2 / 3)
    # An edge shared with the object is no overlap.
    touching = peaks.copy()
    touching[1, 1] = [3, 3, 4, 4]
    assert pointing_score(touching, object_boxes, object_classes, labels) == pytest.approx(1 / 3)
    # An image whose objects are unknown (None) is not scored: image 0's two pairs remain.
    hits = pointing_hits(peaks, [object_boxes[0], None], [object_classes[0], None], labels)
    np.testing.assert_array_equal(hits, [[1, 0, np.nan], [np.nan, np.nan, np.nan]])
    assert pointing_score(peaks, [object_boxes[0], None], [object_classes[0], None], labels) == 0.5


def test_pointing_chance_is_the_share_of_candidates_on_the_object():
    object_boxes = [np.array([[1, 1, 3, 3]])]  # overlaps all 4 level-0 patches
    object_classes = [np.array([0])]
    labels = np.array([[1, 0]])
    assert pointing_chance(PATCH_BOXES[:4], object_boxes, object_classes, labels) == 1.0
    object_boxes = [np.array([[0, 0, 2, 1]])]  # inside patch 0 only
    assert pointing_chance(PATCH_BOXES[:4], object_boxes, object_classes, labels) == 0.25


def test_normalized_entropy_by_hand():
    uniform = np.full(4, 0.25)
    one_hot = np.array([1.0, 0.0, 0.0, 0.0])
    half = np.array([0.5, 0.5, 0.0, 0.0])  # log 2 / log 4 = 0.5
    values = normalized_attention_entropy(np.stack([uniform, one_hot, half]))
    np.testing.assert_allclose(values, [1.0, 0.0, 0.5], atol=1e-12)
    # float32 softmax weights of 784 patches sum to 1 only up to rounding: still <= 1.
    near_uniform = np.full(784, 1.0 / 784, dtype="float32") * np.float32(1.0 + 3e-7)
    assert normalized_attention_entropy(near_uniform[None])[0] <= 1.0


def test_attention_entropy_splits_present_and_absent_labels():
    attention = np.array(
        [
            [[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]],
            [[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]],
        ]
    )
    labels = np.array([[1, 0], [1, 0]])
    result = attention_entropy(attention, labels)
    assert result["present"] == pytest.approx((0.5 + 0.0) / 2)
    assert result["absent"] == pytest.approx(1.0)


def test_pointing_on_mosaics_with_the_models_patch_geometry():
    # Two 28x28 items on a 112 canvas; the mosaic generator returns their boxes.
    items = np.full((4, 28, 28), 255, np.uint8)
    mosaics = compose_mosaics(items, np.array([0, 1, 2, 3]), 3, 4, canvas_size=112, items_per_image=(2, 2), seed=3)
    patches = MultiResolutionPatches(patch_size=28, stride=28, num_resolutions=3)
    boxes, levels = patches.patch_boxes(112, 112)
    labels = mosaics["full_labels"]
    # An attention that puts all weight on the level-0 patch holding each item's
    # centre points at every item; one that peaks on the level-1 and level-2
    # patches only (uniform on level 0) points at patch 0.
    attention = np.zeros((3, 4, len(boxes)))
    for image, (item_boxes, classes) in enumerate(zip(mosaics["boxes"], mosaics["item_classes"])):
        for (top, left, bottom, right), label in zip(item_boxes, classes):
            centre_patch = int((top + bottom) / 2 // 28 * 4 + (left + right) / 2 // 28)
            attention[image, label, centre_patch] = 1.0
    peaks = attention_peak_boxes(attention, boxes, levels)
    assert pointing_score(peaks, mosaics["boxes"], mosaics["item_classes"], labels) == 1.0
    assert labels.sum() == 6


def test_errors_name_what_was_received():
    with pytest.raises(ValueError, match="Received: level=3"):
        attention_peak_boxes(np.ones((1, 1, 5)) / 5, PATCH_BOXES, PATCH_LEVELS, level=3)
    with pytest.raises(ValueError, match="Received: num_patches=1"):
        normalized_attention_entropy(np.ones((2, 1)))
