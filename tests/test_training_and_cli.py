import json
import os

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import recipes
from cli import cli
from patchpu_keras import PatchPUClassifier, TrainingModel, losses, training
from patchpu_keras.metrics import mean_average_precision_score
from patchpu_keras.training.run_checkpoint import read_checkpoint, restore_checkpoint

from tests.configs import TINY_DEMO_OVERRIDES as TINY_DEMO


def _saved_model_and_its_test_map(out, report, name=None):
    """The run's kept model (or `name`) and its mAP on the run's held-out mosaics."""
    from patchpu_keras.data import load_data

    model = keras.models.load_model(os.path.join(out, name or report["kept_model"]))
    data = load_data(report["config"], splits=("test",))
    images, targets = zip(*[(x.numpy(), y["full_labels"].numpy()) for x, y in data.test])
    scores = model.predict(np.concatenate(images), verbose=0)["probabilities"]
    return model, mean_average_precision_score(np.concatenate(targets), scores)


def _checkpointed_loss_state(out, config, observed, num_labels):
    """The loss state of the run's checkpoint, restored as `train(..., resume=True)` restores it."""
    loss = losses.build_loss(config)
    trainer = TrainingModel(training.build_model(config, num_labels), loss.make_state(observed))
    trainer.compile(optimizer=training.build_optimizer(config, 1, loss, model=trainer), loss=loss)
    restore_checkpoint(trainer, read_checkpoint(out))
    return trainer.loss_state


def _assert_the_saved_annotation_is_the_regimes_draw(out, config):
    """observed_labels.npz holds the draw of the recipe's regime and label seed from the full labels."""
    from patchpu_keras.data import observe
    from patchpu_keras.data.mosaics import recipe_mosaics

    from patchpu_keras.data.recipe_data import validation_rows

    drawn = np.load(os.path.join(out, "observed_labels.npz"))
    full = recipe_mosaics(config)["train"]["full_labels"]
    train_rows, _ = validation_rows(len(full), config["val_fraction"], config["holdout_seed"])
    full = full[train_rows]
    np.testing.assert_array_equal(drawn["observed_labels"], observe(full, config["regime"], seed=config["label_seed"]))
    assert np.all((drawn["observed_labels"] == 1).sum(1) == 1) and np.all(full[drawn["observed_labels"] == 1] == 1)
    assert (str(drawn["regime"]), int(drawn["label_seed"])) == (config["regime"], config["label_seed"])
    return drawn["observed_labels"]


def test_recipes_list_and_overrides():
    methods = ["an", "an_ls", "wan", "epr", "role", "ll_r", "ll_ct", "ll_cp", "em_apl", "en_cl",
               "resnet50_bce", "resnet50_an", "resnet50_ll_r_boostlu"]
    peers = ["peers_an", "peers_ll_r", "peers_ll_r_boostlu", "peers_em_apl", "peers_gr"]
    expected = ["custom_on", "custom_on_pretrained", "custom_wn", "custom_wn_imagenet", "demo"] + [
        f"{data}_{name}" for data in ("voc", "coco") for name in ["bce", "wn", "wn_imagenet"] + methods + peers
    ]
    assert recipes.names() == sorted(expected)
    config = recipes.apply_overrides(recipes.load("demo"), ["epochs=2", "learning_rate=1", "items_per_image=1,2", "fashion_mnist_dir=/x"])
    assert config["epochs"] == 2 and config["learning_rate"] == 1.0 and isinstance(config["learning_rate"], float)
    assert config["items_per_image"] == (1, 2) and config["fashion_mnist_dir"] == "/x"
    with pytest.raises(ValueError, match="Unknown recipe key 'epoch'"):
        recipes.apply_overrides(config, ["epoch=3"])
    with pytest.raises(ValueError, match="expects a whole number"):
        recipes.apply_overrides(config, ["epochs=many"])
    result = CliRunner().invoke(cli, ["recipes"])
    recipe_lines, loss_lines = result.output.split("\n\nLosses (--set loss=NAME):\n")
    assert result.exit_code == 0 and [line.split()[0] for line in recipe_lines.splitlines()] == recipes.names()
    assert [line.split()[0] for line in loss_lines.splitlines()] == losses.registry.names()


@pytest.mark.large
def test_cli_train_writes_a_complete_run(tmp_path):
    out = str(tmp_path / "run")
    result = CliRunner().invoke(
        cli, ["train", "--recipe", "demo", "--epochs", "2", "--out", out] + sum((["--set", s] for s in TINY_DEMO), [])
    )
    assert result.exit_code == 0, result.output
    report = json.load(open(os.path.join(out, "report.json")))
    assert report["status"] == "completed" and report["epochs_completed"] == 2
    assert set(report["per_class_ap"]) <= set(report["class_names"])
    assert len(report["history"]["loss"]) == 2 and len(report["history"]["val_map"]) == 2
    assert report["config"]["image_size"] == 56 and report["seconds"] > 0
    assert report["jit_compile"] is (keras.backend.backend() == "jax")  # "auto" on CPU
    assert f"Test mAP: {report['map']:.4f}" in result.output

    # The reported mAP is the kept model's mAP on the held-out mosaics: the best validation epoch.
    model, saved_map = _saved_model_and_its_test_map(out, report)
    assert isinstance(model, PatchPUClassifier) and model.label_names == report["class_names"]
    assert saved_map == pytest.approx(report["map"], abs=1e-5)
    assert report["kept_model"] == "best_model.keras" and report["validated_on"] == "full_labels"
    assert report["best_val_map"] == max(report["history"]["val_map"])
    assert report["kept_epoch"] == 1 + int(np.argmax(report["history"]["val_map"]))
    assert (report["num_train_images"], report["num_val_images"]) == (32, 4)
    for name in ("model.keras", "best_model.keras", "report.json", "history.json", "observed_labels.npz"):
        assert name in report["files"] and os.path.exists(os.path.join(out, name))
    assert "{" + ",".join(report["files"]) + "}" in result.output
    assert "Run plan for" in result.output and "4 validation (val_map against full labels)" in result.output
    assert report["num_parameters"] == model.count_params()
    _assert_the_saved_annotation_is_the_regimes_draw(out, report["config"])

    # TensorBoard: the epoch scalars are the history, the last point the report.
    scalars = tensorboard_scalars(os.path.join(out, "logs"))
    np.testing.assert_allclose(scalars["train/epoch_loss"], report["history"]["loss"], rtol=1e-6)
    np.testing.assert_allclose(scalars["validation/epoch_map"], report["history"]["val_map"], rtol=1e-6)
    np.testing.assert_allclose(scalars["validation/epoch_loss"], report["history"]["val_loss"], rtol=1e-6)
    # The demo's learning rate, 5e-3 halved every 2 epochs, read after each epoch's last step.
    np.testing.assert_allclose(scalars["train/epoch_learning_rate"], [5e-3, 2.5e-3], rtol=1e-6)
    # The per-epoch diagnostics of the training mosaics (docs/attention.md) are scalars too.
    diagnosed = [key for key in report["history"] if key.startswith("diagnostics_")]
    assert "diagnostics_pointing" in diagnosed and "diagnostics_wn_weight_auc" in diagnosed
    for key in diagnosed:
        np.testing.assert_allclose(scalars[f"train/epoch_{key}"], report["history"][key], rtol=1e-6)
    assert scalars["test/test/map"] == pytest.approx([report["map"]])  # scored once
    for name, ap in report["per_class_ap"].items():
        assert scalars.get(f"test/test/ap/{name}") == (None if ap is None else pytest.approx([ap]))
    # The run's checkpoint: the state and one weights file, nothing half-written.
    assert sorted(os.listdir(os.path.join(out, "checkpoint"))) == ["state.json", "weights-000000004.weights.h5"]
    heatmap = Image.open(os.path.join(out, "heatmaps", "test_0000.png"))
    assert heatmap.size == (3 * 224, 224 + 22)
    pixels = np.asarray(heatmap)
    assert (pixels[:224, :, 0].astype(int) - pixels[:224, :, 2]).max() > 100  # red tint present


def test_cli_rejects_bad_recipe_values(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--recipe", "demo", "--set", "loss=full_bce", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "--set regime=full" in result.output
    result = CliRunner().invoke(cli, ["train", "--recipe", "nope"])
    assert result.exit_code != 0 and "Unknown recipe" in result.output


def tensorboard_scalars(log_dir):
    """`{"SUBDIR/TAG": [values by step]}` read back from the event files under `log_dir`."""
    import glob

    import tensorflow as tf

    scalars = {}
    for path in sorted(glob.glob(os.path.join(log_dir, "*", "events.out.tfevents.*"))):
        run = os.path.basename(os.path.dirname(path))
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                scalars.setdefault(f"{run}/{value.tag}", []).append(
                    (event.step, float(tf.make_ndarray(value.tensor)))
                )
    return {tag: [value for _, value in sorted(points)] for tag, points in scalars.items()}


class _Crash(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("simulated crash")


@pytest.mark.large
def test_a_crash_keeps_the_last_epoch_and_reports_it(tmp_path, monkeypatch):
    config = recipes.apply_overrides(recipes.load("demo"), TINY_DEMO + ["epochs=3"])
    from patchpu_keras import training

    original_fit = PatchPUClassifier.fit

    def crashing_fit(self, *args, **kwargs):
        # The crash callback runs after RunCheckpoint, so epoch 1 is saved first.
        kwargs["callbacks"] = list(kwargs.get("callbacks", [])) + [_Crash()]
        return original_fit(self, *args, **kwargs)

    monkeypatch.setattr(PatchPUClassifier, "fit", crashing_fit)
    with pytest.raises(RuntimeError, match="simulated crash"):
        training.train(config, str(tmp_path))
    report = json.load(open(tmp_path / "report.json"))
    assert report["status"] == "failed" and "simulated crash" in report["error"]
    assert report["epochs_completed"] == 2
    assert json.load(open(tmp_path / "history.json"))["epochs_completed"] == 2
    assert isinstance(keras.models.load_model(tmp_path / "model.keras"), PatchPUClassifier)
    assert not os.path.exists(tmp_path / "model.tmp.keras")


@pytest.mark.large
@pytest.mark.parametrize(
    "overrides",
    [
        ["loss=role"],
        ["loss=ll_cp", "delta_rel=0.1"],
        ["model=cam", "backbone=tiny", "loss=ll_r", "boost_lu_alpha=5.0", "delta_rel=0.1"],
    ],
)
def test_compared_methods_train_from_the_cli(tmp_path, overrides):
    out = str(tmp_path / "run")
    args = ["train", "--recipe", "demo", "--epochs", "2", "--out", out]
    result = CliRunner().invoke(cli, args + sum((["--set", s] for s in TINY_DEMO + overrides), []))
    assert result.exit_code == 0, result.output
    report = json.load(open(os.path.join(out, "report.json")))
    assert report["status"] == "completed" and report["epochs_completed"] == 2
    assert [len(report["history"][key]) for key in ("loss", "val_loss", "val_map")] == [2, 2, 2]
    _, saved_map = _saved_model_and_its_test_map(out, report)
    assert saved_map == pytest.approx(report["map"], abs=1e-5)
    model = keras.models.load_model(os.path.join(out, "model.keras"))  # the last epoch's state
    observed = _assert_the_saved_annotation_is_the_regimes_draw(out, report["config"])
    # model.keras holds the model only; the loss state is in the run's checkpoint.
    assert not any("loss_state" in variable.path for variable in model.variables)
    state = _checkpointed_loss_state(out, report["config"], observed, model.num_labels)
    assert int(keras.ops.convert_to_numpy(state.epoch)) == 1  # the second epoch is epoch 1
    if "model=cam" in overrides:
        assert (model.backbone.architecture, model.boost_lu_alpha) == ("tiny", 5.0)
    elif "loss=role" in overrides:
        initial = losses.build_loss(report["config"]).make_state(observed)
        table = keras.ops.convert_to_numpy(state.table("label_estimate_logits"))
        start = keras.ops.convert_to_numpy(initial.table("label_estimate_logits"))
        assert np.all(table != start)  # every image was in a batch, every estimate trained
    else:
        # LL-Cp, epoch 1 at rate 0.1: ceil(0.1 x 16 x 10) = 16 flips in each of the 2 batches.
        stored = keras.ops.convert_to_numpy(state.table("observed"))
        assert np.all(stored[observed == 1] == 1) and set(np.unique(stored)) <= {0.0, 1.0}
        assert ((stored == 1) & (observed == 0)).sum() == 32
