import numpy as np
import pytest

from patchpu_keras.layers import MultiResolutionPatches
from tests.conftest import to_numpy


def test_paper_patch_count_for_640_input():
    layer = MultiResolutionPatches(patch_size=64, stride=64, num_resolutions=3)
    assert layer.level_grids(640, 640) == [(10, 10), (5, 5), (2, 2)]
    assert layer.num_patches(640, 640) == 129
    out = layer(np.zeros((1, 640, 640, 3), "float32"))
    assert tuple(out.shape) == (1, 129, 64, 64, 3)


def test_level_zero_patches_are_the_input_windows(rng):
    images = rng.uniform(0, 1, (2, 32, 40, 3)).astype("float32")
    layer = MultiResolutionPatches(patch_size=8, stride=8, num_resolutions=1)
    out = to_numpy(layer(images))
    assert out.shape == (2, 4 * 5, 8, 8, 3)
    for index, (i, j) in enumerate((i, j) for i in range(4) for j in range(5)):
        np.testing.assert_array_equal(out[:, index], images[:, 8 * i : 8 * i + 8, 8 * j : 8 * j + 8])


def test_overlapping_stride_and_dropped_remainder(rng):
    images = rng.uniform(0, 1, (1, 21, 21, 2)).astype("float32")
    layer = MultiResolutionPatches(patch_size=8, stride=6, num_resolutions=1)
    out = to_numpy(layer(images))
    # (21 - 8) // 6 + 1 = 3 windows per axis; the last 1 pixel is dropped.
    assert out.shape == (1, 9, 8, 8, 2)
    np.testing.assert_array_equal(out[0, 4], images[0, 6:14, 6:14])
    np.testing.assert_array_equal(out[0, 8], images[0, 12:20, 12:20])


def test_coarser_levels_are_2x2_averages(rng):
    images = rng.uniform(0, 1, (2, 16, 16, 3)).astype("float32")
    layer = MultiResolutionPatches(patch_size=4, stride=4, num_resolutions=3)
    out = to_numpy(layer(images))
    assert out.shape == (2, 16 + 4 + 1, 4, 4, 3)
    level1 = images.reshape(2, 8, 2, 8, 2, 3).mean(axis=(2, 4))
    level2 = level1.reshape(2, 4, 2, 4, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(out[:, 16], level1[:, :4, :4], atol=1e-5)
    np.testing.assert_allclose(out[:, 19], level1[:, 4:, 4:], atol=1e-5)
    np.testing.assert_allclose(out[:, 20], level2, atol=1e-5)


def test_training_subsamples_each_level_and_inference_keeps_all(rng):
    images = rng.uniform(0, 1, (2, 32, 32, 1)).astype("float32")
    layer = MultiResolutionPatches(patch_size=8, stride=8, num_resolutions=2, max_patches_per_resolution=3, seed=1)
    assert layer.num_patches(32, 32, training=True) == 6
    everything = to_numpy(layer(images, training=False))
    assert everything.shape[1] == 16 + 4
    sampled = to_numpy(layer(images, training=True))
    assert sampled.shape == (2, 6, 8, 8, 1)
    # Level 0 samples are level-0 patches, level 1 samples level-1 patches.
    for position, candidates in ((range(0, 3), range(0, 16)), (range(3, 6), range(16, 20))):
        for p in position:
            assert any(np.array_equal(sampled[:, p], everything[:, c]) for c in candidates)
    chosen = [next(c for c in range(16) if np.array_equal(sampled[:, p], everything[:, c])) for p in range(3)]
    assert len(set(chosen)) == 3


def test_patch_boxes_cover_the_grid():
    layer = MultiResolutionPatches(patch_size=16, stride=16, num_resolutions=2)
    boxes, levels = layer.patch_boxes(64, 64)
    assert boxes.shape == (16 + 4, 4)
    np.testing.assert_array_equal(levels, [0] * 16 + [1] * 4)
    np.testing.assert_allclose(boxes[5], (16, 16, 32, 32))
    np.testing.assert_allclose(boxes[16 + 3], (32, 32, 64, 64))  # level 1, scaled x2


def test_too_small_image_and_bad_arguments_raise():
    layer = MultiResolutionPatches(patch_size=64, num_resolutions=3)
    with pytest.raises(ValueError, match="Received: image size=\\(100, 100\\)"):
        layer(np.zeros((1, 100, 100, 3), "float32"))
    with pytest.raises(ValueError, match="Received: interpolation='cubic'"):
        MultiResolutionPatches(interpolation="cubic")
    with pytest.raises(ValueError, match="Received: downsample_factor=1"):
        MultiResolutionPatches(downsample_factor=1)


def test_config_round_trip():
    layer = MultiResolutionPatches(
        patch_size=32, stride=16, num_resolutions=2, downsample_factor=3,
        interpolation="nearest", max_patches_per_resolution=5, seed=7, name="p",
    )
    clone = MultiResolutionPatches.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
