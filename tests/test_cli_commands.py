"""The evaluate, predict, explain and export commands, through click's runner."""

import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import recipes
from cli import cli
from patchpu_keras.data.image_reader import read_image
from patchpu_keras.metrics import attention_peak_boxes, mean_average_precision_score, pointing_score
from patchpu_keras.models import load_model
from tests.configs import TINY_DEMO, TINY_DEMO_OVERRIDES, TINY_PAPER, as_overrides, set_options
from tests.helpers.train_on_backend import calibrate_batch_norms, held_out_arrays

SET_TINY_DEMO = set_options(TINY_DEMO)


@pytest.fixture(scope="module")
def run_dir(trained_elsewhere, tmp_path_factory):
    """A run folder as `cli.py train` leaves it: model.keras and report.json with its config."""
    folder = tmp_path_factory.mktemp("run")
    shutil.copy(trained_elsewhere["model"], folder / "model.keras")
    config = recipes.apply_overrides(recipes.load("demo"), TINY_DEMO_OVERRIDES)
    (folder / "report.json").write_text(json.dumps({"config": config}))
    return folder


def test_evaluate_prints_and_writes_the_models_map(run_dir, model_predict):
    result = CliRunner().invoke(
        cli, ["evaluate", "--model", str(run_dir / "model.keras"), "--recipe", "demo", "--batch-size", "8",
              "--localization"] + SET_TINY_DEMO
    )
    assert result.exit_code == 0, result.output
    metrics = json.load(open(run_dir / "eval-test" / "metrics.json"))
    found = metrics["localization"]
    assert f"localization: pointing {found['pointing']:.3f}, attention_entropy_present " in result.stdout
    assert f"test split, 16 images: mAP {metrics['map']:.4f}" in result.stdout
    assert "2/2" in result.stdout  # the progress bar counted both batches
    assert metrics["recipe"] == "demo" and metrics["model"] == str(run_dir / "model.keras")
    images, full = held_out_arrays(recipes.apply_overrides(recipes.load("demo"), TINY_DEMO_OVERRIDES))
    scores = model_predict(images)
    assert metrics["map"] == pytest.approx(mean_average_precision_score(full, scores), abs=1e-6)
    assert metrics["evaluated_on"] == "full_labels" and "(against full_labels)" in result.stdout
    for name in ("per_class.csv", "pr_curves.png"):
        assert os.path.getsize(run_dir / "eval-test" / name) > 100


def test_evaluate_warns_when_the_recipe_differs_from_the_run(run_dir, tmp_path):
    model = str(run_dir / "model.keras")
    missing = str(tmp_path / "missing")
    # batch_size is not a data setting: only data_dir differs from the run.
    result = CliRunner().invoke(
        cli, ["evaluate", "--model", model, "--recipe", "demo", "--data-dir", missing] + SET_TINY_DEMO[:-2]
    )
    assert result.stderr.count("warning:") == 1
    assert (f"the model was trained with data_dir=None, the recipe gives {missing!r}; leave out --data-dir"
            in result.stderr)
    assert result.exit_code != 0 and f"--data-dir {missing} does not exist" in result.output
    result = CliRunner().invoke(cli, ["evaluate", "--model", model, "--recipe", "demo", "--data-dir", missing])
    assert "the model was trained with image_size=56, the recipe gives 112; add --set image_size=56" in result.stderr
    result = CliRunner().invoke(cli, ["evaluate", "--model", model, "--recipe", "demo", "--split", "train"])
    assert result.exit_code == 2 and "'train' is not one of 'test', 'val'" in result.output


def test_predict_prints_json_lines_and_skips_unreadable_files(run_dir, image_files, trained_model, model_predict, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    args = ["predict", "--model", str(run_dir / "model.keras"), image_files["chelsea.png"], str(broken),
            image_files["astronaut.jpg"], "--threshold", "0.1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["path"] for line in lines] == [image_files["chelsea.png"], image_files["astronaut.jpg"]]
    for line in lines:
        expected = model_predict(read_image(line["path"])[None])[0]
        kept = {name: score for name, score in zip(trained_model.label_names, expected) if score >= 0.1}
        assert line["labels"].keys() == kept.keys()
        assert list(line["labels"].values()) == pytest.approx(sorted(kept.values(), reverse=True), abs=2e-6)
    assert f"skipped {broken}:" in result.stderr
    assert "predicted 2 image(s), skipped 1 unreadable" in result.stderr
    nothing = CliRunner().invoke(cli, ["predict", "--model", str(run_dir / "model.keras"), str(broken)])
    assert nothing.exit_code == 1 and "no readable image" in nothing.output and nothing.stdout == ""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    none_found = CliRunner().invoke(cli, ["predict", "--model", str(run_dir / "model.keras"), str(empty)])
    assert none_found.exit_code == 1 and "no image file among the inputs" in none_found.output


def test_evaluate_reads_the_runs_recipe_and_settings_from_its_report(run_dir, tmp_path):
    model = str(run_dir / "model.keras")
    given = CliRunner().invoke(cli, ["evaluate", "--model", model, "--recipe", "demo", "--out", str(tmp_path / "a")]
                               + SET_TINY_DEMO)
    from_report = CliRunner().invoke(cli, ["evaluate", "--model", model, "--out", str(tmp_path / "b")])
    assert given.exit_code == 0 and from_report.exit_code == 0, from_report.output
    a, b = (json.load(open(tmp_path / name / "metrics.json")) for name in ("a", "b"))
    assert b["num_images"] == 16 and b["map"] == pytest.approx(a["map"], abs=1e-6)
    assert b["per_class"] == a["per_class"]
    # The run's tiny test split: a warning, printed as every command prints them.
    assert "warning: the test split has 16 image(s)" in from_report.stderr and "1 warning(s)" in from_report.stderr
    alone = tmp_path / "alone.keras"
    shutil.copy(model, alone)
    refused = CliRunner().invoke(cli, ["evaluate", "--model", str(alone)])
    assert refused.exit_code == 2 and "pass --recipe NAME" in refused.output


def test_explain_writes_figures_and_skips_unreadable_files(run_dir, image_files, tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    out = tmp_path / "figures"
    result = CliRunner().invoke(cli, ["explain", "--model", str(run_dir / "model.keras"), image_files["camera.png"],
                                      str(tmp_path / "empty.jpg"), "--out", str(out), "--top-k", "4"])
    assert result.exit_code == 0, result.output
    assert f"skipped {tmp_path / 'empty.jpg'}: " in result.stderr and "the file is empty" in result.stderr
    assert sorted(os.listdir(out)) == ["camera.png"]
    assert Image.open(out / "camera.png").size == (4 * 224, 224 + 22)
    assert str(out / "camera.png") in result.stdout


def test_explain_draws_the_level_asked_for(run_dir, image_files, trained_model, tmp_path):
    from patchpu_keras.data.image_files import resize_image
    from patchpu_keras.inference import explanation_figure, predict_batch

    image = read_image(image_files["chelsea.png"])
    # What explain does: the decoded image resized by the serving ops, in a batch of 16.
    resized = resize_image(image, trained_model.image_size).numpy()[None]
    outputs = {key: value[0] for key, value in predict_batch(trained_model, resized, 16).items()}
    drawn = {}
    for level in (0, 1):
        out = tmp_path / f"level{level}"
        result = CliRunner().invoke(cli, ["explain", "--model", str(run_dir / "model.keras"), image_files["chelsea.png"],
                                          "--out", str(out), "--top-k", "2", "--level", str(level)])
        assert result.exit_code == 0, result.output
        drawn[level] = np.asarray(Image.open(out / "chelsea.png").convert("RGB")).astype(int)
        expected = np.asarray(explanation_figure(trained_model, image, outputs, top_k=2, level=level).convert("RGB"))
        assert np.abs(drawn[level] - expected).max() <= 1, level
    assert np.abs(drawn[0] - drawn[1]).max() > 50  # 4 fine patches vs 1 coarse: different tints
    result = CliRunner().invoke(cli, ["explain", "--model", str(run_dir / "model.keras"), image_files["chelsea.png"],
                                      "--out", str(tmp_path / "level2"), "--level", "2"])
    assert result.exit_code != 0 and "`level` must be one of the model's levels [0, 1]. Received: level=2" in result.output


@pytest.mark.parametrize("command", [
    ["predict", "IMAGE"],
    ["explain", "IMAGE", "--out", "OUT"],
    ["export", "--out", "OUT"],
    ["evaluate", "--recipe", "demo"],
])
def test_every_command_refuses_a_model_that_is_not_patchpu(not_patchpu, command):
    args = [a.replace("IMAGE", str(not_patchpu / "x.png")).replace("OUT", str(not_patchpu / "out")) for a in command]
    result = CliRunner().invoke(cli, args + ["--model", str(not_patchpu / "sequential.keras")])
    assert result.exit_code != 0
    assert "holds a Sequential (from keras), not a patchpu-keras model" in result.output
    assert not (not_patchpu / "out").exists()


def test_evaluate_a_model_on_voc_data_on_disk(tmp_path, tiny_model):
    """The held-out split of data on disk (VOC's val here), through the same pipeline as training."""
    from data import trees
    from patchpu_keras.data.voc import CLASS_NAMES as VOC_CLASSES

    trees.make_voc(tmp_path / "voc")
    tiny_paper = as_overrides({**TINY_PAPER, "batch_size": 4})
    config = recipes.apply_overrides(recipes.load("voc_wn"), tiny_paper + [f"data_dir={tmp_path / 'voc'}"])
    images, full = held_out_arrays(config)
    model = tiny_model(num_labels=20, label_names=VOC_CLASSES)  # 32x32 input, as tiny_paper
    calibrate_batch_norms(model, images.astype("float32"))  # scores that differ between images
    model.save(tmp_path / "model.keras")
    args = ["evaluate", "--model", str(tmp_path / "model.keras"), "--recipe", "voc_wn",
            "--data-dir", str(tmp_path / "voc"), "--split", "val", "--out", str(tmp_path / "eval"), "--localization"]
    result = CliRunner().invoke(cli, args + sum((["--set", s] for s in tiny_paper), []))
    assert result.exit_code == 0, result.output
    metrics = json.load(open(tmp_path / "eval" / "metrics.json"))
    assert metrics["num_images"] == len(images) == len(trees.VOC_VAL) and metrics["evaluated_on"] == "full_labels"
    outputs = load_model(tmp_path / "model.keras").predict(images, verbose=0)
    scores = outputs["probabilities"]
    assert scores.std(axis=0).max() > 0.005
    assert metrics["map"] == pytest.approx(mean_average_precision_score(full, scores), abs=1e-6)
    assert [row["num_positives"] for row in metrics["per_class"]] == full.sum(0).astype(int).tolist()
    # Pointing against the annotations' boxes, scaled from the 96 x 72 photos to the 32 px input.
    boxes, classes = [], []
    for objects in trees.VOC_VAL.values():  # val.txt's order, the split's
        pixel_boxes = [trees.voc_box(number) for number in range(len(objects))]
        boxes.append(np.array([[(y0 - 1) / 72 * 32, (x0 - 1) / 96 * 32, y1 / 72 * 32, x1 / 96 * 32]
                               for x0, y0, x1, y1 in pixel_boxes]))
        classes.append(np.array([VOC_CLASSES.index(name) for name, _ in objects]))
    patch_boxes, levels = model.backbone.patches.patch_boxes(32, 32)
    peaks = attention_peak_boxes(np.asarray(outputs["attention"]), patch_boxes, levels)
    found = metrics["localization"]
    assert found["objects_known"] and found["pointing"] == pytest.approx(pointing_score(peaks, boxes, classes, full))
    assert "localization: pointing" in result.output
