import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from patchpu_keras.data.image_reader import read_image
from patchpu_keras.inference import explain_files, explanation_figure, predict_files
from patchpu_keras.models import CAMClassifier, load_model
from patchpu_keras.visualization import CAPTION_HEIGHT, PANEL_SIZE


@pytest.fixture(scope="module")
def model(trained_model):
    # Trained on another backend: predictions and explanations below run on this one.
    return trained_model


@pytest.fixture
def folder(tmp_path, image_files):
    """Two photos, a grayscale one in a subfolder, a corrupt JPEG and a text file."""
    shutil.copy(image_files["chelsea.png"], tmp_path / "a_cat.png")
    shutil.copy(image_files["coffee_rgba.png"], tmp_path / "b_coffee.png")
    (tmp_path / "sub").mkdir()
    shutil.copy(image_files["camera.png"], tmp_path / "sub" / "camera.png")
    jpeg = open(image_files["astronaut.jpg"], "rb").read()
    (tmp_path / "broken.jpg").write_bytes(jpeg[:2000])
    (tmp_path / "readme.txt").write_text("not an image, and not one of the folder's images")
    return tmp_path


@pytest.fixture
def expected(model_predict):
    """`model.predict` on one image file's decoded pixels, at their own size."""
    return lambda path: model_predict(read_image(path)[None])[0]


def test_predict_files_scores_every_readable_file_and_reports_the_rest(model, folder, image_files, expected):
    missing = str(folder / "missing.jpg")
    records = list(predict_files(model, [folder, image_files["astronaut.jpg"], missing], threshold=0.0, batch_size=2))
    assert [record["path"] for record in records] == [
        str(folder / "a_cat.png"), str(folder / "b_coffee.png"), str(folder / "broken.jpg"),
        str(folder / "sub" / "camera.png"), image_files["astronaut.jpg"], missing,
    ]
    broken, lost = records[2], records[5]
    assert set(broken) == {"path", "error"} and str(folder / "broken.jpg") in broken["error"]
    assert "Invalid JPEG data" in broken["error"]
    assert "No such file" in lost["error"]
    for record in records[:2] + records[3:5]:
        labels = record["labels"]
        assert list(labels) == sorted(labels, key=labels.get, reverse=True)
        assert set(labels) == set(model.label_names)
        want = dict(zip(model.label_names, expected(record["path"])))
        for name, score in labels.items():
            assert score == pytest.approx(want[name], abs=2e-6)
    # Different images, different scores: the checks above are not about a constant.
    assert records[0]["labels"] != records[4]["labels"]


def test_threshold_keeps_labels_at_or_above_it_and_batching_changes_nothing(model, folder):
    everything = list(predict_files(model, [folder], threshold=0.0, batch_size=1))
    batched = list(predict_files(model, [folder], threshold=0.0, batch_size=3))
    for one, other in zip(everything, batched):
        assert one.keys() == other.keys()
        if "labels" in one:
            for name, score in one["labels"].items():
                assert other["labels"][name] == pytest.approx(score, abs=2e-6)
    assert everything[0]["path"].endswith("a_cat.png")
    scores = everything[0]["labels"]
    # The threshold sits in the widest gap between scores, so the 2e-6 by which
    # batch sizes may move a score cannot carry it across.
    ordered = sorted(scores.values())
    low, high = max(zip(ordered, ordered[1:]), key=lambda pair: pair[1] - pair[0])
    assert high - low > 1e-4
    threshold = (low + high) / 2
    kept = next(predict_files(model, [folder / "a_cat.png"], threshold=threshold))["labels"]
    expected_kept = {name: score for name, score in scores.items() if score >= threshold}
    assert set(kept) == set(expected_kept)
    assert kept == pytest.approx(expected_kept, abs=2e-6)
    assert 0 < len(kept) < len(scores)
    with pytest.raises(ValueError, match="Received: threshold=1.5"):
        next(predict_files(model, [folder], threshold=1.5))


def test_by_default_each_label_is_kept_at_the_models_own_threshold(trained_elsewhere, image_files, expected, tmp_path):
    from click.testing import CliRunner

    from cli import cli

    model = load_model(trained_elsewhere["model"])  # a copy: the session's model keeps no thresholds
    paths = [image_files["chelsea.png"], image_files["astronaut.jpg"], image_files["camera.png"]]
    scores = np.stack([expected(path) for path in paths])
    # Each class's threshold in the widest gap between its scores over the three images:
    # every label is kept for some image and dropped for another, and no rounding decides.
    ordered = np.sort(scores, axis=0)
    gaps = np.diff(ordered, axis=0)
    widest, columns = np.argmax(gaps, axis=0), np.arange(scores.shape[1])
    assert gaps[widest, columns].min() > 1e-4
    model.set_thresholds((ordered[widest, columns] + ordered[widest + 1, columns]) / 2)
    want = [{name for name, score, threshold in zip(model.label_names, row, model.thresholds) if score >= threshold}
            for row in scores]
    records = list(predict_files(model, paths, batch_size=2))
    assert [set(record["labels"]) for record in records] == want
    for record, row in zip(records, scores):
        assert record["labels"] == pytest.approx(
            {name: score for name, score in zip(model.label_names, row) if name in record["labels"]}, abs=2e-6)
    # The CLI reads them from the file; --threshold overrides them.
    model.save(tmp_path / "model.keras")
    result = CliRunner().invoke(cli, ["predict", "--model", str(tmp_path / "model.keras"), *paths])
    assert result.exit_code == 0, result.output
    assert [set(json.loads(line)["labels"]) for line in result.stdout.splitlines()] == want
    result = CliRunner().invoke(cli, ["predict", "--model", str(tmp_path / "model.keras"), *paths, "--threshold", "0"])
    assert [len(json.loads(line)["labels"]) for line in result.stdout.splitlines()] == [model.num_labels] * 3


def test_explain_files_writes_one_figure_per_readable_image(model, folder, image_files, expected, tmp_path):
    out = tmp_path / "explanations"
    paths = [image_files["astronaut.jpg"], folder / "broken.jpg", folder / "a_cat.png", image_files["chelsea.png"]]
    records = list(explain_files(model, paths, out, top_k=2))
    assert "error" in records[1] and str(folder / "broken.jpg") in records[1]["error"]
    figures = [record["figure"] for record in records if "figure" in record]
    assert [os.path.basename(path) for path in figures] == ["astronaut.png", "a_cat.png", "chelsea.png"]
    for record in (records[0], records[2]):
        figure = np.asarray(Image.open(record["figure"]))
        assert figure.shape == (PANEL_SIZE + CAPTION_HEIGHT, 2 * PANEL_SIZE, 3)
        top = np.argsort(-expected(record["path"]))[:2]
        assert list(record["labels"]) == [model.label_names[i] for i in top]
    # Two inputs with the same name do not overwrite each other's figure.
    twice = list(explain_files(model, [image_files["chelsea.png"], folder / "a_cat.png", image_files["chelsea.png"]], out))
    assert [os.path.basename(r["figure"]) for r in twice] == ["chelsea.png", "a_cat.png", "chelsea-2.png"]


def test_patches_are_tinted_where_the_attention_is(tiny_model):
    # A 2-level tiny model: level 0 is a 2x2 grid of 16x16 patches on its 32x32 input.
    model = tiny_model(label_names=["a", "b", "c", "d"])
    image = np.full((60, 90, 3), 128, np.uint8)  # not square, not the model's size
    attention = np.zeros((4, model.num_patches), np.float32)
    attention[2, 3] = 1.0  # label "c" looks at the bottom-right patch only
    attention[0, 0] = 1.0  # label "a" at the top-left one
    outputs = {"probabilities": np.array([0.6, 0.1, 0.9, 0.2]), "attention": attention}
    figure = np.asarray(explanation_figure(model, image, outputs, top_k=2)).astype(int)
    redness = figure[..., 0] - figure[..., 2]
    half = PANEL_SIZE // 2
    first, second = redness[:PANEL_SIZE, :PANEL_SIZE], redness[:PANEL_SIZE, PANEL_SIZE:]
    # Panel 1 is label "c" (0.9): bottom-right quadrant red, top-left untouched.
    assert first[half + 5:, half + 5:].min() > 80 and first[:half - 5, :half - 5].max() == 0
    assert second[:half - 5, :half - 5].min() > 80 and second[half + 5:, half + 5:].max() == 0


def test_class_activation_maps_are_upsampled_over_the_image():
    model = CAMClassifier.create(3, backbone="tiny", image_size=32, label_names=["a", "b", "c"])
    image = np.full((64, 64, 3), 128, np.uint8)
    cam = np.full((4, 4, 3), -1.0, np.float32)  # negative evidence is not drawn
    cam[2:, 2:, 1] = 3.0  # label "b": bottom-right quarter
    outputs = {"probabilities": np.array([0.2, 0.8, 0.1]), "cam": cam}
    figure = np.asarray(explanation_figure(model, image, outputs, top_k=2)).astype(int)
    assert figure.shape == (PANEL_SIZE + CAPTION_HEIGHT, 2 * PANEL_SIZE, 3)
    redness = figure[..., 0] - figure[..., 2]
    first, second = redness[:PANEL_SIZE, :PANEL_SIZE], redness[:PANEL_SIZE, PANEL_SIZE:]
    assert first[-40:, -40:].min() > 80 and first[:80, :80].max() == 0
    assert second.max() == 0  # label "a" has no positive evidence anywhere


def test_explain_and_predict_files_work_for_a_saved_cam_model(image_files, tmp_path):
    CAMClassifier.create(3, backbone="tiny", image_size=32, label_names=["a", "b", "c"]).save(tmp_path / "cam.keras")
    model = load_model(tmp_path / "cam.keras")
    (record,) = explain_files(model, [image_files["chelsea.png"]], tmp_path / "out", top_k=3)
    assert Image.open(record["figure"]).size == (3 * PANEL_SIZE, PANEL_SIZE + CAPTION_HEIGHT)
    (prediction,) = predict_files(model, [image_files["chelsea.png"]], threshold=0.0)
    expected = model.predict(read_image(image_files["chelsea.png"])[None], verbose=0)["probabilities"][0]
    assert list(prediction["labels"].values()) == pytest.approx(sorted(expected, reverse=True), abs=2e-6)
    assert record["labels"] == prediction["labels"]


def test_explanations_dispatch_on_the_model_outputs(tiny_model):
    model = tiny_model()
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match=r"Received: output keys=\['probabilities'\]"):
        explanation_figure(model, image, {"probabilities": np.ones(4)})
    attention = {"probabilities": np.ones(4), "attention": np.ones((4, model.num_patches))}
    with pytest.raises(ValueError, match="Received: level=5"):
        explanation_figure(model, image, attention, level=5)
