"""`.keras` files saved before the backbone/task split load, weights and all (fixtures/make_flat_files.py)."""

import os

import keras
import numpy as np
import pytest

from patchpu_keras.models import CAMClassifier, PatchPUClassifier, load_model
from tests.conftest import to_numpy

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.mark.parametrize("name, cls", [("patch_pu_classifier_flat", PatchPUClassifier),
                                       ("cam_classifier_flat", CAMClassifier)])
def test_a_flat_file_loads_with_the_outputs_it_had(name, cls):
    path = os.path.join(FIXTURES, f"{name}.keras")
    saved = np.load(os.path.join(FIXTURES, f"{name}_outputs.npz"))
    model = load_model(path)
    assert type(model) is cls
    outputs = model(saved["images"], training=False)
    keys = [key for key in saved.files if key != "images"]
    assert sorted(keys) == sorted(outputs)
    for key in keys:
        # The saved outputs differ across images by 1,000 times the tolerance (saved on TensorFlow:
        # the other backends round differently, about 1e-5).
        assert np.ptp(saved[key], axis=0).max() > 0.1, key
        np.testing.assert_allclose(to_numpy(outputs[key]), saved[key], rtol=1e-4, atol=1e-4, err_msg=key)
    # The training run's loss state is dropped: the model holds weights only.
    assert not any("loss_state" in variable.path or "label_estimate" in variable.path for variable in model.variables)
    assert "loss_state" not in model.get_config()
    np.testing.assert_array_equal(model.thresholds, [0.5, 0.5, 0.5])


def test_the_flat_patch_file_keeps_its_config():
    model = load_model(os.path.join(FIXTURES, "patch_pu_classifier_flat.keras"))
    assert model.label_names == ["a", "b", "c"]
    assert (model.image_size, model.backbone.patch_size, model.backbone.embedding_dim, model.mlp_units) == (32, 16, 16, 16)
    cam = load_model(os.path.join(FIXTURES, "cam_classifier_flat.keras"))
    assert (cam.backbone.architecture, cam.boost_lu_alpha, cam.preprocessing) == ("tiny", 5.0, "unit")


def test_keras_load_model_on_a_flat_file_says_what_to_do():
    with pytest.raises(Exception, match=r"patchpu_keras.models.load_model\(path\)"):
        keras.models.load_model(os.path.join(FIXTURES, "patch_pu_classifier_flat.keras"))
