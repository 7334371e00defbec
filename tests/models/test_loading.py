import numpy as np
import pytest

from patchpu_keras import PatchPUClassifier
from patchpu_keras.models import CAMClassifier
from patchpu_keras.models import load_model
from tests.conftest import assert_outputs_differ, to_numpy


def test_loads_a_saved_model_with_its_label_names(calibrated_model, rng, tmp_path):
    model = calibrated_model(label_names=["wood", "metal", "glass", "stone"])
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = load_model(path)
    assert isinstance(loaded, PatchPUClassifier) and loaded.label_names == model.label_names
    images = rng.integers(0, 256, (4, 32, 32, 3)).astype("float32")
    expected = to_numpy(model(images)["probabilities"])
    assert_outputs_differ(expected, 1e-6)
    np.testing.assert_allclose(to_numpy(loaded(images)["probabilities"]), expected, atol=1e-6)


def test_loads_a_cam_model_too(tmp_path):
    model = CAMClassifier.create(3, backbone="tiny", image_size=32, label_names=["a", "b", "c"])
    model.save(tmp_path / "cam.keras")
    loaded = load_model(tmp_path / "cam.keras")
    assert isinstance(loaded, CAMClassifier) and loaded.label_names == ["a", "b", "c"]


def test_files_that_are_not_patchpu_models_get_clear_errors(not_patchpu):
    with pytest.raises(ValueError, match=r"holds a Sequential \(from keras\), not a patchpu-keras model"):
        load_model(not_patchpu / "sequential.keras")
    for name in ("notes.keras", "empty.keras"):
        with pytest.raises(ValueError, match=r"Not a \.keras model archive.*Received: path="):
            load_model(not_patchpu / name)
    with pytest.raises(FileNotFoundError, match="Received: path="):
        load_model(not_patchpu / "missing.keras")
