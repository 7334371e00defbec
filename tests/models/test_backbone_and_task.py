"""The backbones run, save and load alone; the tasks hold the head and the thresholds."""

import os

import keras
import numpy as np
import pytest

from patchpu_keras import CAMBackbone, CAMClassifier, PatchBackbone, PatchPUClassifier
from tests.configs import TINY
from tests.conftest import random_batch_norm_statistics, to_numpy

BACKBONE = {key: value for key, value in TINY.items() if key != "mlp_units"}


def _images(rng, count=4):
    return rng.integers(0, 256, (count, 32, 32, 3)).astype("uint8")


def _calibrated_backbone(rng, images, **overrides):
    """A tiny backbone whose patch embeddings differ across images (random batch-norm statistics)."""
    backbone = PatchBackbone(**{**BACKBONE, **overrides})
    random_batch_norm_statistics(backbone.embedder, backbone.patches(backbone.image_preprocessing(images)), rng)
    return backbone


def test_the_backbone_runs_alone_and_the_task_runs_on_its_embeddings(rng):
    images = _images(rng)
    backbone = _calibrated_backbone(rng, images)
    embeddings = to_numpy(backbone(images, training=False))
    assert embeddings.shape == (4, 5, 16)
    # The embeddings depend on the image, far beyond the tolerances below.
    assert embeddings.std(axis=0).mean() > 1e-2
    patches = backbone.patches(images.astype("float32") / 255.0)
    np.testing.assert_allclose(embeddings, to_numpy(backbone.embedder(patches, training=False)), rtol=1e-5, atol=1e-6)
    model = PatchPUClassifier(backbone, 4, mlp_units=16)
    label_embeddings, attention = model.attention(embeddings)
    outputs = model(images, training=False)
    np.testing.assert_allclose(to_numpy(outputs["attention"]), to_numpy(attention), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(outputs["probabilities"]), to_numpy(model.classifier(label_embeddings)),
                               rtol=1e-5, atol=1e-6)


def test_the_backbone_saves_and_loads_alone_with_equal_outputs(rng, tmp_path):
    images = _images(rng)
    backbone = _calibrated_backbone(rng, images, seed=3, preprocessing="torch")
    path = os.path.join(tmp_path, "backbone.keras")
    backbone.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is PatchBackbone and loaded.get_config() == backbone.get_config()
    np.testing.assert_allclose(to_numpy(loaded(images, training=False)), to_numpy(backbone(images, training=False)),
                               rtol=1e-6, atol=1e-6)
    assert loaded.preprocessing == "torch" and loaded.image_preprocessing.scaling == "torch"


def test_folding_the_backbone_keeps_its_outputs(rng):
    images = _images(rng)
    backbone = _calibrated_backbone(rng, images)
    folded = backbone.fold_batch_norm()
    assert folded.folded_batch_norm and not backbone.folded_batch_norm
    np.testing.assert_allclose(to_numpy(folded(images, training=False)), to_numpy(backbone(images, training=False)),
                               rtol=1e-4, atol=1e-4)


def test_create_gives_the_head_arguments_to_the_task_and_the_rest_to_the_backbone():
    model = PatchPUClassifier.create(3, label_names=["a", "b", "c"], attention_score_scale=0.5, seed=7, **TINY)
    assert (model.mlp_units, model.attention_score_scale, model.label_names) == (16, 0.5, ["a", "b", "c"])
    assert model.attention.score_scale == 0.5 and model.attention.mlp_units == 16
    backbone = model.backbone
    assert (backbone.image_size, backbone.patch_size, backbone.embedding_dim, backbone.seed) == (32, 16, 16, 7)
    assert model.image_size == 32 and model.num_patches == 5
    assert "mlp_units" not in backbone.get_config() and "patch_size" not in model.get_config()
    assert model.get_config()["backbone"]["config"] == backbone.get_config()
    cam = CAMClassifier.create(3, backbone="tiny", image_size=32, boost_lu_alpha=5.0, label_names=["a", "b", "c"])
    assert (cam.backbone.architecture, cam.image_size, cam.boost_lu_alpha) == ("tiny", 32, 5.0)
    with pytest.raises(ValueError, match="`backbone` must be a `PatchBackbone`.*Received: backbone="):
        PatchPUClassifier(cam.backbone, 3)
    with pytest.raises(ValueError, match="`backbone` must be a `CAMBackbone`.*Received: backbone="):
        CAMClassifier(model.backbone, 3)


def test_cam_backbone_runs_saves_and_loads_alone(rng, tmp_path):
    images = _images(rng)
    backbone = CAMBackbone("tiny", image_size=32)
    random_batch_norm_statistics(backbone.features, backbone.image_preprocessing(images), rng)
    features = to_numpy(backbone(images, training=False))
    assert features.shape == (4, 4, 4, 64) and features.std(axis=0).mean() > 1e-2
    backbone.save(tmp_path / "cam_backbone.keras")
    loaded = keras.models.load_model(tmp_path / "cam_backbone.keras")
    assert type(loaded) is CAMBackbone and loaded.architecture == "tiny"
    np.testing.assert_allclose(to_numpy(loaded(images, training=False)), features, rtol=1e-6, atol=1e-6)


# === Thresholds ===


@pytest.mark.parametrize("family", ["patch", "cam"])
def test_thresholds_default_to_one_half_are_set_validated_and_saved(family, tmp_path):
    model = (PatchPUClassifier.create(3, **TINY) if family == "patch"
             else CAMClassifier.create(3, backbone="tiny", image_size=32))
    assert model.thresholds.dtype == np.float32
    np.testing.assert_array_equal(model.thresholds, [0.5, 0.5, 0.5])
    assert model.get_config()["thresholds"] is None
    model.set_thresholds([0.25, 0.0, 1.0])
    np.testing.assert_array_equal(model.thresholds, np.array([0.25, 0.0, 1.0], "float32"))
    assert model.get_config()["thresholds"] == [0.25, 0.0, 1.0]
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(loaded.thresholds, np.array([0.25, 0.0, 1.0], "float32"))
    for bad in ([0.5, 0.5], [0.5, 0.5, 1.5], [0.5, -0.1, 0.5], [[0.5, 0.5, 0.5]]):
        with pytest.raises(ValueError, match=r"3 numbers in \[0, 1\].*Received: thresholds="):
            model.set_thresholds(bad)
    with pytest.raises(ValueError, match="Received: thresholds=\\[0.1\\]"):
        type(model)(model.backbone, 3, thresholds=[0.1])
    model.set_thresholds(None)
    np.testing.assert_array_equal(model.thresholds, [0.5, 0.5, 0.5])


def test_folded_copies_keep_the_thresholds_and_label_names():
    model = PatchPUClassifier.create(3, label_names=["a", "b", "c"], thresholds=[0.1, 0.2, 0.3], **TINY)
    for folded in (model.fold_batch_norm(), model.for_inference()):
        np.testing.assert_array_equal(folded.thresholds, np.array([0.1, 0.2, 0.3], "float32"))
        assert folded.label_names == ["a", "b", "c"] and folded.backbone.folded_batch_norm
