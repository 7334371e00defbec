import csv
import json

import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as sk

import recipes
from patchpu_keras import PatchPUClassifier
from patchpu_keras.data import CLASS_NAMES
from patchpu_keras.evaluation import data_differences, evaluate, evaluation_data
from patchpu_keras.metrics import (
    best_f1_threshold,
    classification_report,
    mean_average_precision_score,
    precision_recall_curve,
)
from tests.configs import TINY_DEMO_OVERRIDES
from tests.helpers.train_on_backend import held_out_arrays

TINY_DEMO = recipes.apply_overrides(recipes.load("demo"), TINY_DEMO_OVERRIDES)


def _scores_with_ties(rng, n=60, labels=5):
    full = (rng.random((n, labels)) < 0.3).astype(int)
    full[:, -1] = 0  # a class without positives
    # Rounded to 1 decimal: many ties, which is where curves go wrong.
    scores = np.round(np.clip(0.4 * full + rng.random((n, labels)) * 0.7, 0, 1), 1)
    return full, scores


def test_precision_recall_curve_matches_scikit_learn(rng):
    full, scores = _scores_with_ties(rng)
    for c in range(4):
        precision, recall, thresholds = precision_recall_curve(full[:, c], scores[:, c])
        sk_precision, sk_recall, sk_thresholds = sk.precision_recall_curve(full[:, c], scores[:, c])
        # scikit-learn: increasing thresholds and a final (1, 0) point; here: decreasing, no extra point.
        np.testing.assert_allclose(thresholds, sk_thresholds[::-1])
        np.testing.assert_allclose(precision, sk_precision[:-1][::-1])
        np.testing.assert_allclose(recall, sk_recall[:-1][::-1])
    assert np.isnan(precision_recall_curve(full[:, 4], scores[:, 4])[1]).all()


def test_best_threshold_is_the_f1_maximum_over_all_thresholds(rng):
    full, scores = _scores_with_ties(rng)
    for c in range(4):
        threshold, precision, recall, f1 = best_f1_threshold(full[:, c], scores[:, c])
        candidates = np.unique(scores[:, c])
        f1s = [sk.f1_score(full[:, c], scores[:, c] >= t, zero_division=0) for t in candidates]
        assert f1 == pytest.approx(max(f1s))
        # The highest threshold reaching the maximum.
        assert threshold == pytest.approx(max(t for t, v in zip(candidates, f1s) if v == pytest.approx(max(f1s))))
        assert precision == pytest.approx(sk.precision_score(full[:, c], scores[:, c] >= threshold))
        assert recall == pytest.approx(sk.recall_score(full[:, c], scores[:, c] >= threshold))
    assert best_f1_threshold(full[:, 4], scores[:, 4]) is None


def test_classification_report_matches_scikit_learn(rng):
    full, scores = _scores_with_ties(rng)
    names = ["a", "b", "c", "d", "never"]
    report = classification_report(full, scores, names)
    predicted = scores >= 0.5
    precision, recall, f1, support = sk.precision_recall_fscore_support(full, predicted, zero_division=0)
    for c, row in enumerate(report["per_class"]):
        assert row["label"] == names[c] and row["num_positives"] == support[c]
        assert (row["precision@0.5"], row["recall@0.5"], row["f1@0.5"]) == pytest.approx(
            (precision[c], recall[c], f1[c]))
        if c < 4:
            assert row["ap"] == pytest.approx(sk.average_precision_score(full[:, c], scores[:, c]))
    never = report["per_class"][4]
    assert never["ap"] is None and never["best_threshold"] is None and never["f1@best"] is None
    assert report["map"] == pytest.approx(mean_average_precision_score(full, scores))
    assert report["num_classes_with_positives"] == 4 and report["num_images"] == 60
    # Averages over the classes that have positives.
    micro = sk.precision_recall_fscore_support(full[:, :4], predicted[:, :4], average="micro", zero_division=0)
    macro = sk.precision_recall_fscore_support(full[:, :4], predicted[:, :4], average="macro", zero_division=0)
    assert list(report["at_threshold"]["micro"].values()) == pytest.approx(micro[:3])
    assert list(report["at_threshold"]["macro"].values()) == pytest.approx(macro[:3])
    at_best = np.stack([scores[:, c] >= report["per_class"][c]["best_threshold"] for c in range(4)], 1)
    assert report["at_best_thresholds"]["micro"]["f1"] == pytest.approx(sk.f1_score(full[:, :4], at_best, average="micro"))
    assert report["at_best_thresholds"]["macro"]["f1"] == pytest.approx(
        np.mean([row["f1@best"] for row in report["per_class"][:4]]))
    assert report["at_best_thresholds"]["macro"]["f1"] >= report["at_threshold"]["macro"]["f1"]
    json.dumps(report)  # NaN-free: undefined values are None


def test_evaluation_data_is_the_held_out_split_with_full_labels():
    images, full = held_out_arrays(TINY_DEMO)
    data = evaluation_data(TINY_DEMO, batch_size=5)
    assert data["split"] == "test" and data["num_images"] == 16 == len(images)
    assert data["class_names"] == list(CLASS_NAMES) and data["evaluated_on"] == "full_labels"
    batches = list(data["dataset"].as_numpy_iterator())
    assert [len(batch) for batch, _ in batches] == [5, 5, 5, 1]
    np.testing.assert_array_equal(np.concatenate([batch for batch, _ in batches]), images)
    np.testing.assert_array_equal(np.concatenate([t["full_labels"] for _, t in batches]), full)
    assert evaluation_data(TINY_DEMO, split="val")["split"] == "test"  # VOC's val is load_data's test
    with pytest.raises(ValueError, match=r"Only the held-out or the validation split.*Received: split='train'"):
        evaluation_data(TINY_DEMO, split="train")
    with pytest.raises(FileNotFoundError, match="/somewhere does not exist"):
        evaluation_data(TINY_DEMO, data_dir="/somewhere")


def test_evaluation_data_of_the_validation_split_is_the_runs_held_out_part_of_the_training_images():
    # `--split validation`: the seeded val_fraction of the training mosaics that `train` chose the
    # epoch and the thresholds on, with their full labels; not the test split.
    from patchpu_keras.data.mosaics import recipe_mosaics
    from patchpu_keras.data.recipe_data import validation_rows

    data = evaluation_data(TINY_DEMO, split="validation", batch_size=3)
    mosaics = recipe_mosaics(TINY_DEMO)["train"]
    _, rows = validation_rows(len(mosaics["images"]), TINY_DEMO["val_fraction"], TINY_DEMO["holdout_seed"])
    assert data["split"] == "validation" and data["num_images"] == len(rows) == 4
    assert data["evaluated_on"] == "full_labels" and data["objects"] is None
    batches = list(data["dataset"].as_numpy_iterator())
    gray = np.concatenate([batch for batch, _ in batches])
    assert gray.shape == (4, 56, 56, 3) and np.ptp(gray) > 0  # the mosaics' gray, as RGB
    for channel in range(3):
        np.testing.assert_array_equal(gray[..., channel], mosaics["images"][rows])
    np.testing.assert_array_equal(np.concatenate([t["full_labels"] for _, t in batches]),
                                  mosaics["full_labels"][rows])
    with pytest.raises(ValueError, match=r"no validation split.*Received: val_fraction=0.0"):
        evaluation_data({**TINY_DEMO, "val_fraction": 0.0}, split="validation")


def test_evaluate_writes_metrics_csv_and_curves_of_the_models_scores(trained_model, model_predict, tmp_path):
    # trained_model was trained on another backend.
    report = evaluate(trained_model, TINY_DEMO, tmp_path / "eval", batch_size=8, verbose=0)
    images, full = held_out_arrays(TINY_DEMO)
    scores = model_predict(images)
    assert report["map"] == pytest.approx(mean_average_precision_score(full, scores), abs=1e-6)
    assert report["split"] == "test" and report["num_images"] == 16
    assert report["evaluated_on"] == "full_labels"

    written = json.load(open(tmp_path / "eval" / "metrics.json"))
    assert written["map"] == report["map"] and written["files"] == report["files"]
    rows = list(csv.DictReader(open(tmp_path / "eval" / "per_class.csv")))
    assert [row["label"] for row in rows] == list(CLASS_NAMES)
    for row, expected in zip(rows, report["per_class"]):
        assert (float(row["ap"]) if row["ap"] else None) == pytest.approx(expected["ap"])
        assert float(row["f1@0.5"]) == pytest.approx(expected["f1@0.5"])
    curves = np.asarray(Image.open(tmp_path / "eval" / "pr_curves.png").convert("RGB")).astype(int)
    assert curves.shape == (480, 640, 3)
    coloured = (np.abs(curves - curves[..., :1]).max(-1) > 60).sum()
    assert coloured > 500  # the curves and their legend are drawn in colour


def test_evaluate_refuses_a_model_with_other_labels(tiny_model, tmp_path):
    model = tiny_model(num_labels=10, label_names=[f"class{i}" for i in range(10)])
    with pytest.raises(ValueError, match="The model's labels differ from the dataset's"):
        evaluate(model, TINY_DEMO, tmp_path, verbose=0)
    with pytest.raises(ValueError, match="differ"):
        evaluate(PatchPUClassifier.create(3, image_size=32, patch_size=16, num_resolutions=1), TINY_DEMO, tmp_path, verbose=0)


def test_data_differences_flag_data_settings_of_the_run(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps({"config": {**TINY_DEMO, "epochs": 1}}))
    model_path = tmp_path / "model.keras"
    assert data_differences(model_path, TINY_DEMO) == {}
    demo = recipes.load("demo")
    differences = data_differences(model_path, demo)
    assert differences["image_size"] == (56, 112) and differences["num_test"] == (16, 600)
    assert "epochs" not in differences and "embedding_dim" not in differences
    assert data_differences(tmp_path / "elsewhere" / "model.keras", demo) == {}


def test_a_split_given_as_a_tf_data_pipeline_gives_the_same_scores(trained_model):
    # How file-based datasets plug in: `{split}_dataset` instead of arrays.
    from patchpu_keras.data.pipeline import array_dataset
    from patchpu_keras.evaluation import predict_split

    images, full = held_out_arrays(TINY_DEMO)
    images, full = images[:12], full[:12]
    from_arrays = predict_split(trained_model, {"split": "test", "images": images, "full_labels": full},
                                batch_size=8, verbose=0)
    dataset = array_dataset(images, full_labels=full, batch_size=8)
    from_dataset = predict_split(trained_model, {"split": "test", "dataset": dataset}, batch_size=8, verbose=0)
    assert from_arrays[0].shape == (12, 10) and from_arrays[0].std(axis=0).max() > 0.005
    np.testing.assert_allclose(from_dataset[0], from_arrays[0], atol=1e-5)
    np.testing.assert_array_equal(from_dataset[1], full)


def test_evaluate_localization_points_with_the_models_attention_on_the_mosaics_items(trained_model, tmp_path):
    from patchpu_keras.data import load_data
    from patchpu_keras.metrics import attention_entropy, attention_peak_boxes, pointing_score

    report = evaluate(trained_model, TINY_DEMO, tmp_path / "eval", batch_size=8, verbose=0, localization=True)
    images, full = held_out_arrays(TINY_DEMO)
    attention = np.asarray(trained_model.predict(images.astype("float32"), verbose=0)["attention"])
    boxes, levels = trained_model.backbone.patches.patch_boxes(trained_model.image_size, trained_model.image_size)
    objects = load_data(TINY_DEMO, splits=("test",)).test_objects
    expected = pointing_score(attention_peak_boxes(attention, boxes, levels), objects[0], objects[1], full)
    found = report["localization"]
    assert found["objects_known"] and found["pointing"] == pytest.approx(expected)
    assert found["attention_entropy_present"] == pytest.approx(attention_entropy(attention, full)["present"], abs=1e-5)
    assert json.load(open(tmp_path / "eval" / "metrics.json"))["localization"] == found
