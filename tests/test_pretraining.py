import keras
import numpy as np
import pytest
from click.testing import CliRunner

from cli import cli

from patchpu_keras import PatchPUClassifier
from patchpu_keras import pretraining
from patchpu_keras.layers import PatchEmbedder
from tests.configs import TINY, TINY_DEMO
from tests.conftest import to_numpy


def numpy_nt_xent(projections, temperature):
    batch = len(projections)
    views = np.concatenate([projections[:, 0], projections[:, 1]])
    views = views / np.linalg.norm(views, axis=1, keepdims=True)
    similarity = views @ views.T / temperature
    total = 0.0
    for i in range(2 * batch):
        positive = (i + batch) % (2 * batch)
        others = [k for k in range(2 * batch) if k != i]
        total += -similarity[i, positive] + np.log(np.sum(np.exp(similarity[i, others])))
    return total / (2 * batch)


def test_contrastive_patch_loss_matches_numpy(rng):
    projections = rng.normal(size=(5, 2, 3)).astype("float32")
    for temperature in (0.2, 1.0):
        np.testing.assert_allclose(
            to_numpy(pretraining.contrastive_patch_loss(projections, temperature)),
            numpy_nt_xent(projections, temperature), rtol=1e-5)
    # Two patches whose views agree and differ from the other's: the loss is near its floor, -log(1 / 1).
    aligned = np.array([[[1, 0], [1, 0]], [[0, 1], [0, 1]]], "float32")
    assert float(to_numpy(pretraining.contrastive_patch_loss(aligned, 0.05))) < 1e-6


def _randomized(embedder, rng):
    for sublayer, _ in embedder.efficientnet_b0_layer_names():
        sublayer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in sublayer.get_weights()])


def test_saved_embedder_weights_load_through_embedder_weights(tmp_path, rng):
    embedder = PatchEmbedder(embedding_dim=TINY["embedding_dim"])
    embedder.build((None, 5, TINY["patch_size"], TINY["patch_size"], 3))
    _randomized(embedder, rng)
    path = str(tmp_path / "embedder.weights.h5")
    pretraining.save_embedder_weights(embedder, path)
    model = PatchPUClassifier.create(3, embedder_weights=path, **TINY)
    assert model.preprocessing == "unit"  # the pretraining saw [0, 1] pixels
    for (source, name), (loaded, _) in zip(embedder.efficientnet_b0_layer_names(),
                                           model.backbone.embedder.efficientnet_b0_layer_names()):
        for expected, found in zip(source.get_weights(), loaded.get_weights()):
            np.testing.assert_array_equal(found, expected, err_msg=name)
    # Same weights, same patch embeddings (the projection aside, which starts from scratch).
    model.backbone.embedder.projection.set_weights(embedder.projection.get_weights())
    patches = rng.uniform(0, 1, (2, 5, TINY["patch_size"], TINY["patch_size"], 3)).astype("float32")
    np.testing.assert_allclose(to_numpy(model.backbone.embedder(patches)), to_numpy(embedder(patches)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"\.weights\.h5\. Received: path="):
        pretraining.save_embedder_weights(embedder, str(tmp_path / "embedder.h5"))


def test_pretrain_command_trains_and_writes_loadable_weights(tmp_path):
    out = str(tmp_path / "embedder.weights.h5")
    overrides = sum((["--set", f"{key}={value}"] for key, value in TINY_DEMO.items()), [])
    result = CliRunner().invoke(
        cli,
        ["pretrain", "--recipe", "demo", "--out", out, "--steps", "2", "--batch-size", "8"] + overrides,
    )
    assert result.exit_code == 0, result.output
    assert "embedder_weights=" in result.output
    # The file holds trained weights: not those the pretrainer starts from with the same seed.
    keras.utils.set_random_seed(0)
    start = pretraining.ContrastivePatchPretrainer(embedding_dim=TINY_DEMO["embedding_dim"])
    start.embedder.build((None, 2, 28, 28, 3))
    model = PatchPUClassifier.create(3, image_size=56, patch_size=28, num_resolutions=2,
                              embedding_dim=TINY_DEMO["embedding_dim"], embedder_weights=out)
    changed = [
        not np.allclose(initial.get_weights()[0], loaded.get_weights()[0])
        for (initial, _), (loaded, _) in zip(start.embedder.efficientnet_b0_layer_names(),
                                             model.backbone.embedder.efficientnet_b0_layer_names())
    ]
    assert all(changed), changed


def test_training_patches_are_the_models_patches_without_blank_ones():
    import recipes

    config = recipes.apply_overrides(recipes.load("demo"), [f"{k}={v}" for k, v in TINY_DEMO.items()])
    patches = pretraining.training_patches(config)
    # 56x56 mosaics, 28x28 patches on 2 levels: at most 4 + 1 a mosaic, pixels in [0, 1].
    assert patches.shape[1:] == (28, 28, 3) and 0 < len(patches) <= 5 * TINY_DEMO["num_train"]
    assert patches.min() >= 0.0 and patches.max() <= 1.0 and patches.max() > 0.5
    assert np.all(patches.std(axis=(1, 2, 3)) >= 0.02)
