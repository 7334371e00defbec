import json
import os
import warnings

import keras
import numpy as np
import pytest
from click.testing import CliRunner

import recipes
from cli import cli
from data import trees
from patchpu_keras import PatchPUClassifier, losses
from patchpu_keras.losses.registry import build_loss
from patchpu_keras.data import load_index
from patchpu_keras.data.voc import CLASS_NAMES as VOC_CLASSES
from patchpu_keras.metrics import mean_average_precision_score
from patchpu_keras.training.builders import resolve_patch_geometry
from patchpu_keras.training.settings import check_settings
from recipes._table import OWN_SETTING, PATCH_PAPER

# The paper's recipes shrunk to seconds: 32x32 images, 16x16 patches, 2 levels, F = 16.
TINY_PAPER = ["image_size=32", "patch_size=16", "stride=16", "num_resolutions=2", "embedding_dim=16",
              "mlp_units=16"]
PAPER = {"image_size": 640, "patch_size": 64, "stride": 64, "num_resolutions": 3, "downsample_factor": 2,
         "embedding_dim": 256, "epochs": 25, "batch_size": 16, "learning_rate": 1e-3, "lr_decay_epochs": 5,
         "lr_decay_rate": 0.5, "weight_decay": 1e-4, "theta": 0.0, "label_seed": 1200}


def _sets(assignments):
    return sum((["--set", assignment] for assignment in assignments), [])


def _train(recipe, data_dir, out, *assignments, source=None):
    result = CliRunner().invoke(
        cli, ["train", "--recipe", recipe, "--data-dir", str(data_dir), "--epochs", "1", "--out", str(out)]
        + (["--source", source] if source else []) + _sets(TINY_PAPER + list(assignments)),
    )
    assert result.exit_code == 0, result.output
    return result.output, json.load(open(os.path.join(out, "report.json")))


@pytest.mark.parametrize("name, dataset, loss, regime, reported", [
    ("voc_wn", "voc2012", "weak_negative", "single_positive", "60.4"),
    ("voc_bce", "voc2012", "full_bce", "full", "61.6"),
    ("coco_wn", "coco2014", "weak_negative", "single_positive", "63.2"),
    ("coco_bce", "coco2014", "full_bce", "full", "65.8"),
    ("custom_wn", "custom", "weak_negative", "observed", None),
])
def test_dataset_recipes_hold_the_papers_settings(name, dataset, loss, regime, reported):
    config = check_settings(recipes.load(name))
    # Own data: the learning rate chosen by bench/schedule_study.py (docs/recipes.md).
    expected = {**PAPER, "learning_rate": 5e-3} if dataset == "custom" else PAPER
    assert {key: config[key] for key in PAPER} == expected
    assert (config["dataset"], config["loss"], config["regime"]) == (dataset, loss, regime)
    if reported:
        row = recipes.row(name)
        assert (row.reported[0].map, row.reported[0].source, row.measured_on) == (
            float(reported), PATCH_PAPER, OWN_SETTING)
        assert f"(reported mAP {reported})." in recipes.summary(name)


def test_demo_recipe_is_the_papers_structure_at_one_item_per_patch():
    # What recipes/demo.py's docstring promises, checked on what its settings build (not a copy of them).
    from patchpu_keras.training import build_model

    config = check_settings(recipes.load("demo"))
    model = build_model(config, num_labels=10)
    # docs/architecture.md and docs/benchmarks.md quote 215,842 parameters and 16 + 4 + 1 patches.
    assert model.count_params() == 215_842 and model.num_patches == 21
    boxes, levels = model.backbone.patches.patch_boxes(model.image_size, model.image_size)
    # 3 levels, factor 2; the finest level's patches are one Fashion-MNIST item wide and tile the
    # mosaic without overlap, as items are placed on that grid.
    assert np.bincount(levels).tolist() == [16, 4, 1]
    finest = boxes[levels == 0]
    assert np.all(finest[:, 2] - finest[:, 0] == config["item_size"])
    covered = np.zeros((model.image_size, model.image_size), "int32")
    for top, left, bottom, right in finest.astype(int):
        covered[top:bottom, left:right] += 1
    assert covered.min() == covered.max() == 1
    # The paper's loss and its eq. (8) threshold, on single positives.
    loss = build_loss(config)
    assert isinstance(loss, losses.WeakNegative) and loss.theta == 0.0
    assert config["regime"] == "single_positive"


def test_data_summary_prints_counts_regimes_and_every_skipped_file(tmp_path):
    trees.make_voc(tmp_path, bad=True)
    result = CliRunner().invoke(cli, ["data", "summary", "--recipe", "voc_wn", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "train: 10 images, 1.50 labels per image" in result.output
    assert "test : 6 images, 1.17 labels per image" in result.output
    assert "single_positive  1.00 positives, 0.00 negatives, 19.00 unknown" in result.output
    for image_id in trees.VOC_BAD:
        assert f"JPEGImages/{image_id}.jpg" in result.output
    result = CliRunner().invoke(
        cli, ["data", "summary", "--recipe", "voc_wn", "--data-dir", str(tmp_path), "--json",
              "--set", "partial_fraction=0.5"])
    summary = json.loads(result.output)
    assert summary["splits"]["train"]["images"] == 10 and summary["regimes"]["partial"]["observed_fraction"] == 0.5
    assert summary["problems"]["converted"] == {"CMYK converted to RGB": 1, "grayscale converted to RGB": 1}
    # --max-files 0: no file listed, only how many there are for each reason.
    result = CliRunner().invoke(cli, ["data", "summary", "--recipe", "voc_wn", "--data-dir", str(tmp_path),
                                      "--max-files", "0"])
    assert result.exit_code == 0, result.output
    assert not [line for line in result.output.splitlines() if line.startswith("    [")]
    assert len(summary["problem_files"]) >= 5
    for key, files in summary["problem_files"].items():
        assert f"  {key}: {len(files)}\n    ... and {len(files)} more" in result.output
    for image_id in trees.VOC_BAD:
        assert image_id not in result.output


@pytest.mark.parametrize("command", [["data", "summary"], ["train"]])
def test_missing_data_dir_says_which_file_and_where_to_get_it(tmp_path, command):
    if command == ["train"]:
        command = command + ["--out", str(tmp_path / "run")]
    result = CliRunner().invoke(cli, command + ["--recipe", "coco_wn", "--data-dir", str(tmp_path / "coco")])
    assert result.exit_code != 0
    assert "annotations/instances_train2014.json" in result.output and "cocodataset.org" in result.output
    result = CliRunner().invoke(cli, command + ["--recipe", "voc_wn"])
    assert result.exit_code != 0 and "No --data-dir given" in result.output
    assert "VOCtrainval_11-May-2012.tar" in result.output
    assert not (tmp_path / "run").exists()  # nothing written for a run that cannot start


# Each bad setting, and words its one-line error must hold (the key, the value, what works).
BAD_SETTINGS = [
    (["batch_size=0"], ["batch_size=0", "whole number > 0", "--set batch_size=16"]),
    (["image_size=-5"], ["image_size=-5", "whole number > 0"]),
    (["epochs=0"], ["epochs=0", "whole number > 0"]),
    (["learning_rate=0"], ["learning_rate=0", "number > 0"]),
    (["image_size=abc"], ["image_size", "expects a whole number", "image_size=abc"]),
    (["patch_size=big"], ["patch_size='big'", "whole number > 0"]),
    (["patch_size=16", "stride=64"], ["stride=64", "larger than patch_size=16", "--set stride=16"]),
    (["patch_size=48"], ["patch_size=48", "uncovered", "image_size - patch_size = 592"]),
    (["patch_size=256"], ["patch_size=256", "[640, 320, 160]", "patch_size <= 160"]),
    (["image_size=64", "num_resolutions=3", "patch_size=32"], ["patch_size=32", "[64, 32, 16]"]),
    (["los=role"], ["Unknown recipe key 'los'", "Did you mean 'loss'?"]),
    (["loss=rol"], ["loss='rol'", "Did you mean 'role'?"]),
    (["model=cnn"], ["model='cnn'", "'cam', 'patch'"]),
    (["loss=role", "expected_positives=none"], ["'expected_positives'", "--set expected_positives=VALUE"]),
]


@pytest.mark.parametrize("assignments, words", BAD_SETTINGS)
def test_a_bad_setting_is_one_line_naming_the_key_before_any_data_is_read(assignments, words, tmp_path):
    # voc_wn without --data-dir: reading data would fail with "No --data-dir given".
    out = tmp_path / "run"
    for command in (["train", "--out", str(out)], ["data", "summary"]):
        result = CliRunner().invoke(cli, command + ["--recipe", "voc_wn"] + _sets(assignments))
        assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
        for word in words:
            assert word in lines[0], (word, lines[0])
        assert "No --data-dir given" not in result.output and not out.exists()


def test_unknown_recipes_get_a_suggestion():
    result = CliRunner().invoke(cli, ["train", "--recipe", "voc_wm"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1
    assert "Unknown recipe. Did you mean 'voc_wn'?" in lines[0] and "recipe='voc_wm'" in lines[0]


@pytest.mark.parametrize("image_size", [96, 224, 320, 448, 1000])
def test_image_size_alone_works_on_every_recipe_and_patches_tile_the_image(image_size):
    """Without patch_size and stride, they follow image_size: the paper's 64 / 640, tiling every level.

    The demo's patches are one Fashion-MNIST item wide (28 px) at any canvas size, so its
    image_size must hold 28 px patches at every level (224, 448, ...)."""
    for name in recipes.names():
        if name == "demo" and image_size % 112:
            with pytest.raises(ValueError, match=r"patch_size=28 .*Received: patch_size=28"):
                check_settings(recipes.apply_overrides(recipes.load(name), [f"image_size={image_size}"]))
            continue
        config = check_settings(recipes.apply_overrides(recipes.load(name), [f"image_size={image_size}"]))
        if config["model"] != "patch":
            continue
        patch, stride = config["patch_size"], config["stride"]
        levels = [image_size // config["downsample_factor"] ** level for level in range(config["num_resolutions"])]
        assert image_size % patch == 0 and stride == patch and min(levels) >= patch, (name, patch, levels)
        if recipes.load(name)["patch_size"] is None:  # follows the image: close to a tenth of it
            assert abs(patch - image_size / 10) <= image_size / 10 * 0.5, (name, patch)
        else:  # the demo's patches are one item wide, whatever the canvas
            assert patch == recipes.load(name)["patch_size"]
    # The paper's own size gives the paper's 64x64 patches; an explicit patch_size is kept,
    # and a stride left unset follows it.
    assert resolve_patch_geometry(check_settings(recipes.load("voc_wn"))) == (64, 64)
    assert resolve_patch_geometry(recipes.apply_overrides(recipes.load("voc_wn"), ["image_size=224"])) == (28, 28)
    assert resolve_patch_geometry(recipes.apply_overrides(recipes.load("voc_wn"), ["patch_size=32"])) == (32, 32)
    assert resolve_patch_geometry(recipes.apply_overrides(recipes.load("demo"), ["patch_size=14"])) == (14, 14)


@pytest.mark.large
def test_voc_recipe_trains_one_epoch_on_the_voc_fixture(tmp_path):
    trees.make_voc(tmp_path / "voc")
    out = tmp_path / "run"
    output, report = _train("voc_wn", tmp_path / "voc", out, "batch_size=2")
    assert report["status"] == "completed" and report["epochs_completed"] == 1
    assert report["source"] == "voc" and report["evaluated_on"] == "full_labels"
    assert (report["num_train_images"], report["num_test_images"]) == (8, 6)
    assert "against their full labels" in output
    model = keras.models.load_model(out / "model.keras")
    assert isinstance(model, PatchPUClassifier) and model.label_names == list(VOC_CLASSES)
    # The saved annotation: one positive per training image, one of its true positives.
    index = load_index(str(tmp_path / "voc"))
    drawn = np.load(out / "observed_labels.npz")
    assert list(drawn["image_names"]) == index.train.names and str(drawn["regime"]) == "single_positive"
    assert np.all((drawn["observed_labels"] == 1).sum(1) == 1)
    assert np.all(index.train.full_labels[drawn["observed_labels"] == 1] == 1)
    # The reported mAP is the saved model's mAP on VOC val's full labels.
    from patchpu_keras.data import image_dataset

    test = image_dataset(index.test, full_labels=index.test.full_labels, image_size=32, batch_size=6)
    images, targets = next(iter(test))
    scores = model.predict(images.numpy(), verbose=0)["probabilities"]
    assert mean_average_precision_score(targets["full_labels"].numpy(), scores) == pytest.approx(report["map"], abs=1e-5)


@pytest.mark.large
def test_coco_recipe_trains_one_epoch_through_bad_files(tmp_path):
    trees.make_coco(tmp_path / "coco", bad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        output, report = _train("coco_wn", tmp_path / "coco", tmp_path / "run", "batch_size=7")
    # `train` prints each warning as a "warning: ..." line (the Python API raises them as warnings).
    messages = "\n".join([str(w.message) for w in caught] + [line for line in output.splitlines()
                                                            if line.startswith("warning: ")])
    for number, reason in [(7, "no annotations"), (8, "unknown category id"), (9, "missing file"),
                           (10, "grayscale converted to RGB")]:
        assert f"COCO_train2014_{number:012d}.jpg: {reason}" in messages
    assert "Files skipped: 1 unknown category id, 1 missing file" in output
    assert report["status"] == "completed" and np.isfinite(report["history"]["loss"][0])
    assert report["class_names"] == [c["name"] for c in trees.COCO_CATEGORIES]
    assert (report["num_train_images"], report["num_test_images"]) == (7, 4)
    assert report["files_skipped"] == {
        "left out": {"no annotations": 1}, "skipped": {"unknown category id": 1, "missing file": 1},
        "converted": {"grayscale converted to RGB": 1},
    }


@pytest.mark.large
def test_custom_folders_without_test_train_and_say_the_evaluation_is_on_observed_labels(tmp_path):
    trees.make_folders(tmp_path / "mine", test=False)
    out = tmp_path / "run"
    # --source names the reader: the folders read as VOC fail with VOC's message.
    result = CliRunner().invoke(cli, ["train", "--recipe", "custom_wn", "--data-dir", str(tmp_path / "mine"),
                                      "--source", "voc", "--out", str(out)] + _sets(TINY_PAPER))
    assert result.exit_code != 0 and "VOC" in result.output and not out.exists()
    output, report = _train("custom_wn", tmp_path / "mine", out, "batch_size=8",
                            "regime=single_positive", "redraw_each_epoch=true", source="folders")
    assert report["source"] == "folders" and report["config"]["source"] == "folders"
    assert report["class_names"] == ["cat", "dog", "sofa", "tree"]
    assert report["evaluated_on"].startswith("observed_labels (no test split in the data")
    assert "against their observed labels" in output
    assert any(note.startswith("No test/ folder") for note in report["data_notes"])
    assert bool(np.load(out / "observed_labels.npz")["redraw_each_epoch"])
