import keras
import numpy as np
import pytest

from patchpu_keras.layers import ImagePreprocessing
from tests.conftest import to_numpy


def _images(rng, channels, size=(12, 12)):
    return rng.integers(0, 256, (2, *size, channels)).astype("uint8")


def test_gray_is_repeated_to_every_channel_and_alpha_is_dropped(rng):
    layer = ImagePreprocessing(12)
    gray = _images(rng, 1)
    np.testing.assert_allclose(to_numpy(layer(gray)), np.repeat(gray, 3, axis=-1) / 255.0, rtol=1e-6)
    gray_alpha = np.concatenate([gray, _images(rng, 1)], axis=-1)
    np.testing.assert_allclose(to_numpy(layer(gray_alpha)), np.repeat(gray, 3, axis=-1) / 255.0, rtol=1e-6)
    rgba = _images(rng, 4)
    np.testing.assert_allclose(to_numpy(layer(rgba)), rgba[..., :3] / 255.0, rtol=1e-6)


def test_other_sizes_are_resized_bilinearly(rng):
    images = _images(rng, 3, size=(24, 18))
    expected = keras.ops.image.resize(images.astype("float32"), (12, 12), interpolation="bilinear")
    np.testing.assert_allclose(to_numpy(ImagePreprocessing(12)(images)), to_numpy(expected) / 255.0, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scaling", ["caffe", "torch"])
def test_scalings_match_keras_applications(rng, scaling):
    images = _images(rng, 3)
    expected = keras.applications.imagenet_utils.preprocess_input(images.astype("float32"), mode=scaling)
    np.testing.assert_allclose(to_numpy(ImagePreprocessing(12, scaling=scaling)(images)), expected, rtol=1e-5, atol=1e-4)


def test_config_round_trip_and_errors():
    layer = ImagePreprocessing(20, scaling="torch", name="pre")
    clone = ImagePreprocessing.from_config(layer.get_config())
    assert (clone.image_size, clone.scaling, clone.name) == (20, "torch", "pre")
    assert layer.compute_output_shape((None, 7, 9, 1)) == (None, 20, 20, 3)
    with pytest.raises(ValueError, match="Received: scaling='tf'"):
        ImagePreprocessing(20, scaling="tf")
    with pytest.raises(ValueError, match="Received: image_size=0"):
        ImagePreprocessing(0)
    with pytest.raises(ValueError, match=r"Received: images.shape=\(1, 4, 4, 5\)"):
        ImagePreprocessing(4)(np.zeros((1, 4, 4, 5), "uint8"))
