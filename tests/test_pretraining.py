import os

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from cli import cli

import recipes
from patchpu_keras import PatchPUClassifier
from patchpu_keras import pretraining
from patchpu_keras import training
from patchpu_keras.layers import PatchEmbedder
from patchpu_keras.training import run as run_module
from tests.configs import TINY, TINY_DEMO, TINY_DEMO_OVERRIDES
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


def test_masked_patch_loss_counts_the_hidden_pixels_only(rng):
    patches = rng.uniform(0, 1, (3, 4, 4, 3)).astype("float32")
    reconstructions = rng.uniform(0, 1, (3, 4, 4, 3)).astype("float32")
    mask = (rng.uniform(size=(3, 4, 4, 1)) < 0.5).astype("float32")
    expected = np.sum(mask * (reconstructions - patches) ** 2) / (3 * mask.sum())
    np.testing.assert_allclose(to_numpy(pretraining.masked_patch_loss(reconstructions, patches, mask)), expected,
                               rtol=1e-5)
    # Anything drawn on the visible pixels costs nothing.
    elsewhere = np.where(mask > 0, reconstructions, 1.0 - patches)
    np.testing.assert_allclose(to_numpy(pretraining.masked_patch_loss(elsewhere, patches, mask)), expected, rtol=1e-5)


@pytest.mark.parametrize("size", [16, 14])
def test_masked_views_hide_half_the_blocks_with_gray_and_keep_the_rest(rng, size):
    patches = rng.uniform(0, 1, (6, size, size, 3)).astype("float32")
    masked, target = next(iter(pretraining.masked_views(patches, batch_size=6, seed=3)))
    masked, target = masked.numpy(), target.numpy()
    assert masked.shape == (6, 1, size, size, 3) and target.shape == (6, size, size, 4)
    mask = target[..., 3:]
    assert set(np.unique(mask)) == {0.0, 1.0}
    # 8 of the 16 blocks of a 4 x 4 split: half the pixels when 4 divides the side, about half otherwise.
    hidden = mask.mean(axis=(1, 2, 3))
    if size == 16:
        np.testing.assert_array_equal(hidden, 0.5)
        blocks = mask[:, :, :, 0].reshape(6, 4, 4, 4, 4)
        assert np.all(blocks.min(axis=(2, 4)) == blocks.max(axis=(2, 4)))  # whole blocks, not scattered pixels
    else:
        assert np.all(np.abs(hidden - 0.5) < 0.15)
    np.testing.assert_array_equal(masked[:, 0][mask[..., 0] > 0], 0.5)
    visible = np.broadcast_to(mask == 0, masked[:, 0].shape)
    np.testing.assert_array_equal(masked[:, 0][visible], target[..., :3][visible])
    # Each target is one of the patches (shuffled), itself or its mirror image.
    for found in target[..., :3]:
        assert any(np.array_equal(found, patch) or np.array_equal(found, patch[:, ::-1]) for patch in patches)
    assert len({mask_of.tobytes() for mask_of in mask}) > 1  # each patch draws its own blocks


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


@pytest.mark.parametrize("objective", pretraining.OBJECTIVES)
def test_pretrain_command_trains_and_writes_loadable_weights(tmp_path, objective):
    out = str(tmp_path / "embedder.weights.h5")
    overrides = sum((["--set", f"{key}={value}"] for key, value in TINY_DEMO.items()), [])
    result = CliRunner().invoke(
        cli,
        ["pretrain", "--recipe", "demo", "--out", out, "--objective", objective, "--steps", "2",
         "--batch-size", "8"] + overrides,
    )
    assert result.exit_code == 0, result.output
    assert f"({objective})" in result.output and "embedder_weights=" in result.output
    assert os.listdir(tmp_path) == ["embedder.weights.h5"]  # the partial file was renamed
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


def test_an_unknown_objective_is_refused_in_one_line_before_reading_data(tmp_path):
    result = CliRunner().invoke(cli, ["pretrain", "--recipe", "demo", "--out", str(tmp_path / "w.weights.h5"),
                                      "--objective", "mae"])
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [
        "Error: `objective` must be one of contrastive, masked. Received: objective='mae'"]


def test_a_crash_while_writing_leaves_no_weights_file(tmp_path, monkeypatch):
    embedder = PatchEmbedder(embedding_dim=TINY["embedding_dim"])
    embedder.build((None, 5, TINY["patch_size"], TINY["patch_size"], 3))

    def crash_half_way(self, path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(keras.Model, "save_weights", crash_half_way)
    path = tmp_path / "embedder.weights.h5"
    with pytest.raises(OSError, match="disk full"):
        pretraining.save_embedder_weights(embedder, str(path))
    assert not path.exists()  # `embedder_weights=` or a resumed run never finds half a file


def _chained_config(**changes):
    config = recipes.apply_overrides(recipes.load("demo"), TINY_DEMO_OVERRIDES + ["epochs=1"])
    return {**config, "pretrain_steps": 2, **changes}


def test_pretrain_steps_pretrains_into_the_run_trains_from_it_and_a_resume_reuses_it(tmp_path, monkeypatch):
    built_from = []
    build_model = run_module.build_model
    monkeypatch.setattr(run_module, "build_model",
                        lambda config, *args, **kwargs: built_from.append(config["embedder_weights"])
                        or build_model(config, *args, **kwargs))
    out, lines = str(tmp_path / "run"), []
    report = training.train(_chained_config(pretrain_objective="masked"), out, verbose=2, print_fn=lines.append,
                            num_heatmaps=0)
    weights = os.path.join(out, pretraining.PRETRAINED_EMBEDDER)
    assert f"  pretraining: the patch embedder, masked, on the training images: 2 steps into {weights}, then " \
           "training from it" in lines, lines
    assert built_from == [weights] and os.path.exists(weights)
    assert report["pretraining"]["weights"] == weights and report["pretraining"]["steps"] == 2
    assert report["pretraining"]["objective"] == "masked" and report["pretraining"]["seconds"] > 0
    assert report["config"]["embedder_weights"] is None  # the recipe as given: resumable, re-runnable
    assert pretraining.PRETRAINED_EMBEDDER in report["files"]
    PatchPUClassifier.create(3, image_size=56, patch_size=28, num_resolutions=2,
                             embedding_dim=TINY_DEMO["embedding_dim"], embedder_weights=weights)

    # A resumed run trains from the file it has, without pretraining again.
    monkeypatch.setattr(run_module, "pretrain_for_run", lambda *args, **kwargs: pytest.fail("pretrained again"))
    written = os.path.getmtime(weights)
    lines = []
    report = training.train(_chained_config(pretrain_objective="masked", epochs=2), out, resume=True, verbose=2,
                            print_fn=lines.append, num_heatmaps=0)
    assert report["pretraining"]["reuse"] and os.path.getmtime(weights) == written
    assert any(line.startswith("  pretraining: the patch embedder, masked") and f"reusing {weights}" in line
               for line in lines), lines


@pytest.mark.parametrize("changes, message", [
    ({"embedder_weights": "mine.weights.h5"},
     "Received: pretrain_steps=2, embedder_weights='mine.weights.h5'"),
    ({"pretrain_steps": -1}, "Received: pretrain_steps=-1"),
    ({"pretrain_objective": "mae"}, "Received: pretrain_objective='mae'"),
])
def test_chained_pretraining_settings_are_refused_in_one_line_before_reading_data(tmp_path, monkeypatch, changes,
                                                                                  message):
    from patchpu_keras.training import plan as plan_module

    monkeypatch.setattr(plan_module, "load_data", lambda *args, **kwargs: pytest.fail("read the data"))
    with pytest.raises(ValueError) as raised:
        training.train(_chained_config(**changes), str(tmp_path), verbose=0)
    assert str(raised.value).endswith(message) and "\n" not in str(raised.value)


def test_pretrain_steps_is_a_recipe_key_off_by_default():
    config = recipes.load("demo")
    assert config["pretrain_steps"] == 0 and config["pretrain_objective"] == "contrastive"
    assert pretraining.chained_pretraining(config, "runs/x") is None
    found = recipes.apply_overrides(config, ["pretrain_steps=300", "pretrain_objective=masked"])
    assert pretraining.chained_pretraining(found, "runs/x") == {
        "weights": os.path.join("runs/x", pretraining.PRETRAINED_EMBEDDER), "steps": 300, "objective": "masked",
        "reuse": False}
