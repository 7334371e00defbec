import json
import os

import keras
import numpy as np
import pytest
from click.testing import CliRunner

import recipes
from cli import cli
from patchpu_keras.data import load_data
from patchpu_keras.data.mosaics import recipe_mosaics
from patchpu_keras.data.recipe_data import validation_rows
from patchpu_keras.training.best_epoch import BEST_MODEL, BestEpoch
from patchpu_keras.training.run_progress import RunProgress
from tests.configs import TINY_DEMO, set_options


def test_the_validation_split_is_a_seeded_part_of_the_training_images_annotated_like_them():
    config = recipes.apply_overrides(recipes.load("demo"), [f"{k}={v}" for k, v in TINY_DEMO.items()]
                                     + ["val_fraction=0.25", "holdout_seed=3", "items_per_image=2,2"])
    train_rows, val_rows = validation_rows(36, 0.25, 3)
    assert len(val_rows) == 9 and not set(train_rows) & set(val_rows)
    assert sorted([*train_rows, *val_rows]) == list(range(36))
    assert not np.array_equal(val_rows, validation_rows(36, 0.25, 4)[1])  # the seed decides
    data = load_data(config)
    mosaics = recipe_mosaics(config)
    assert (data.num_train, data.num_val, data.val_labels) == (27, 9, "full")
    images, full, observed = (np.concatenate(part) for part in zip(*[
        (x.numpy(), y["full_labels"].numpy(), y["observed_labels"].numpy()) for x, y in data.val]))
    np.testing.assert_array_equal(full, mosaics["train"]["full_labels"][val_rows])
    np.testing.assert_allclose(images[..., 0], mosaics["train"]["images"][val_rows].astype("float32"))
    # Single positives, like the training split's: one observed positive, a true one, where two are present.
    assert np.any(full.sum(axis=1) == 2) and np.all((observed == 1).sum(axis=1) == 1) and np.all(full[observed == 1] == 1)
    np.testing.assert_array_equal(observed, data.val_observed_labels)
    assert len(data.observed_labels) == 27
    # The paper's protocol: no validation split.
    assert load_data({**config, "val_fraction": 0.0}).val is None


class _Model:
    def __init__(self):
        self.saved, self.stop_training = [], False

    def save(self, path):
        self.saved.append(path)
        open(path, "w").close()


def test_best_epoch_keeps_the_best_validation_map_and_stops_after_patience(tmp_path):
    history = {"val_map": [0.3, 0.5]}  # a resumed run's first two epochs
    best = BestEpoch(str(tmp_path), history, patience=2)
    best.set_model(_Model())
    assert (best.best_epoch, best.best_value) == (2, 0.5)
    best.on_epoch_end(2, {"val_map": 0.4})
    assert best.model.saved == [] and not best.model.stop_training
    best.on_epoch_end(3, {"val_map": 0.5})  # a tie is not better
    assert best.model.saved == [] and best.model.stop_training and best.stopped_early
    best = BestEpoch(str(tmp_path), {"val_map": [0.3, 0.5]}, patience=None)
    best.set_model(_Model())
    best.on_epoch_end(2, {"val_map": 0.6})
    assert best.best_epoch == 3 and os.path.exists(tmp_path / BEST_MODEL) and not best.model.stop_training
    with pytest.raises(ValueError, match="early_stopping_patience"):
        BestEpoch(str(tmp_path), {}, patience=0)


def test_run_progress_estimates_from_the_measured_steps_and_extrapolates_epochs(monkeypatch):
    clock = iter([100.0, 101.0, 103.0, 110.0, 130.0])
    monkeypatch.setattr("patchpu_keras.training.run_progress.time.time", lambda: next(clock))
    lines = []
    progress = RunProgress(steps_to_train=10, epochs_to_train=4, print_fn=lines.append, measured_steps=2)
    progress.on_train_begin()  # t=100
    progress.on_train_batch_end(0)  # t=101: the first step (it compiles) starts the timer
    progress.on_train_batch_end(1)
    progress.on_train_batch_end(2)  # t=103: 2 steps in 2 s
    assert "1.000 s per step" in lines[0] and "about 10 s for 10 steps" in lines[0]
    progress.on_epoch_end(0)  # t=110: 10 s for 1 epoch, 3 to go
    assert lines[1].startswith("epoch 1: 10 s elapsed, about 30 s remaining")
    progress.on_epoch_end(1)  # t=130: 30 s for 2 epochs, 2 to go
    assert "30 s elapsed, about 30 s remaining" in lines[2]


@pytest.mark.large
def test_a_finished_run_is_kept_evaluated_from_its_report_and_replaced_only_with_force(tmp_path):
    from patchpu_keras.evaluation import validation_predictions
    from patchpu_keras.models import load_model

    out = str(tmp_path / "run")
    args = ["train", "--recipe", "demo", "--epochs", "1", "--out", out] + set_options(TINY_DEMO)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.load(open(os.path.join(out, "report.json")))
    assert "warning: the test split has 16 image(s)" in result.output

    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code != 0 and "--force" in refused.output and "finished run" in refused.output

    # evaluate reads the recipe and settings from the run's report.json: the run's 16 test mosaics
    # (the demo recipe alone has 600, at another size), with their labels.
    evaluated = CliRunner().invoke(cli, ["evaluate", "--model", os.path.join(out, BEST_MODEL)])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.load(open(os.path.join(out, "eval-test", "metrics.json")))
    test_labels = np.concatenate([y["full_labels"].numpy() for _, y in load_data(report["config"], splits=("test",)).test])
    assert metrics["num_images"] == report["num_test_images"] == 16
    assert [row["num_positives"] for row in metrics["per_class"]] == test_labels.sum(axis=0).astype(int).tolist()
    assert "warning: the test split has 16 image(s)" in evaluated.output and "UserWarning" not in evaluated.output

    # --split validation scores the split the epoch was kept on: its images and full labels, the
    # mAP scikit-learn gives for the kept model's scores on them (its inference form, as `evaluate`
    # loads it: batch norms folded. The unfolded model's scores differ in the last bits, which can
    # reorder this tiny model's near-tied scores on 4 images: its `best_val_map` is not compared).
    from sklearn.metrics import average_precision_score

    validated = CliRunner().invoke(cli, ["evaluate", "--model", os.path.join(out, BEST_MODEL), "--split", "validation"])
    assert validated.exit_code == 0, validated.output
    on_validation = json.load(open(os.path.join(out, "eval-validation", "metrics.json")))
    kept = load_model(os.path.join(out, BEST_MODEL))
    data = load_data(report["config"], splits=("val",))
    images = np.concatenate([x.numpy() for x, _ in data.val])
    val_labels = np.concatenate([y["full_labels"].numpy() for _, y in data.val])
    val_scores = kept.for_inference().predict(images, verbose=0)["probabilities"]
    expected = np.mean([average_precision_score(val_labels[:, k], val_scores[:, k])
                        for k in range(val_labels.shape[1]) if val_labels[:, k].any()])
    assert on_validation["num_images"] == 4 and on_validation["split"] == "validation"
    assert [row["num_positives"] for row in on_validation["per_class"]] == val_labels.sum(axis=0).astype(int).tolist()
    assert on_validation["map"] == pytest.approx(expected, abs=1e-6)

    # The kept model's validation predictions, with the validation images' labels.
    predictions = validation_predictions(kept, report["config"], batch_size=16)
    np.testing.assert_allclose(predictions["probabilities"], kept.predict(images, verbose=0)["probabilities"],
                               atol=1e-5)
    np.testing.assert_array_equal(predictions["observed_labels"], data.val_observed_labels)
    assert predictions["full_labels"].shape == (4, 10)
    assert np.mean(predictions["probabilities"]) > 0

    # --force replaces the run: the stale evaluation goes with it.
    replaced = CliRunner().invoke(cli, args + ["--force"])
    assert replaced.exit_code == 0, replaced.output
    assert not os.path.exists(os.path.join(out, "eval-test"))
    replaced_report = json.load(open(os.path.join(out, "report.json")))
    assert replaced_report["status"] == "completed"
    assert sorted(os.listdir(out)) == sorted(name.rstrip("/") for name in replaced_report["files"])
    keras.utils.clear_session()
