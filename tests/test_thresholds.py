"""Per-class thresholds: chosen on a validation split, saved with the model, reported by evaluate."""

import numpy as np
import pytest
from sklearn import metrics as sk

from patchpu_keras.metrics import classification_report
from patchpu_keras.models import load_model
from patchpu_keras.thresholds import choose_thresholds, positive_share_threshold
from tests.conftest import to_numpy


# === choose_thresholds ===


def test_full_labels_give_each_class_its_max_f1_threshold_by_hand():
    probabilities = np.array([
        [0.9, 0.30],
        [0.8, 0.20],
        [0.4, 0.25],
        [0.3, 0.10],
    ], "float32")  # what a model outputs
    full = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    chosen = choose_thresholds(probabilities, full_labels=full)
    # Class 0: t=0.9 F1 2/3, t=0.8 F1 1/2, t=0.4 F1 4/5, t=0.3 F1 2/3 -> 0.4.
    # Class 1: t=0.3 F1 0, t=0.25 F1 1/2, t=0.2 F1 4/5, t=0.1 F1 2/3 -> 0.2.
    np.testing.assert_array_equal(chosen.thresholds, np.float32([0.4, 0.2]))
    assert chosen.thresholds.dtype == np.float32
    assert chosen.rules == ("max_f1", "max_f1")


def test_full_label_thresholds_reach_scikit_learns_best_f1(rng):
    full = (rng.random((80, 6)) < 0.3).astype(int)
    probabilities = np.clip(0.3 * full + rng.random((80, 6)) * 0.6, 0, 1).astype("float32")
    chosen = choose_thresholds(probabilities, full_labels=full)
    for c in range(6):
        precision, recall, candidates = sk.precision_recall_curve(full[:, c], probabilities[:, c])
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)
        best = sk.f1_score(full[:, c], probabilities[:, c] >= chosen.thresholds[c])
        assert best == pytest.approx(f1[:-1].max())  # sklearn's last point is (1, 0) without a threshold
        assert chosen.thresholds[c] in probabilities[:, c]


def test_observed_positives_give_the_threshold_keeping_a_share_of_them():
    scores = np.array([0.9, 0.5, 0.8, 0.6, 0.7])
    # Descending 0.9 0.8 0.7 0.6 0.5: 80 % of 5 keeps 4, 50 % keeps ceil(2.5) = 3, 100 % keeps all.
    assert positive_share_threshold(scores, 0.8) == 0.6
    assert positive_share_threshold(scores, 0.5) == 0.7
    assert positive_share_threshold(scores, 1.0) == 0.5
    assert positive_share_threshold(scores, 0.01) == 0.9
    probabilities = np.array([
        [0.9, 0.05], [0.5, 0.02], [0.8, 0.30], [0.6, 0.95], [0.7, 0.40], [0.99, 0.2],
    ], "float32")
    observed = np.array([[1, 0], [1, 0], [1, 1], [1, -1], [1, 1], [0, -1]])
    chosen = choose_thresholds(probabilities, observed_labels=observed, positive_share=0.8)
    # Class 0 reads rows 0-4 only (row 5's 0.99 is unknown); class 1 its two positives (0.4, 0.3),
    # not the observed negative's 0.95.
    np.testing.assert_array_equal(chosen.thresholds, np.float32([0.6, 0.3]))
    assert chosen.rules == ("positive_share", "positive_share")
    # Full labels win over observed ones when both are given.
    full = (probabilities > 0.55).astype(int)
    assert choose_thresholds(probabilities, full, observed).rules == ("max_f1", "max_f1")


def test_a_class_without_positives_takes_the_median_of_the_others():
    probabilities = np.array([[0.2, 0.6, 0.1, 0.3], [0.1, 0.2, 0.7, 0.9]], "float32")
    observed = np.array([[1, 0, 0, 1], [0, 1, 1, 0]])
    observed[:, 1] = 0
    chosen = choose_thresholds(probabilities, observed_labels=observed, positive_share=1.0)
    # Classes 0, 2, 3 chose 0.2, 0.7, 0.3; class 1 has no positive: their median, 0.3.
    np.testing.assert_array_equal(chosen.thresholds, np.float32([0.2, 0.3, 0.7, 0.3]))
    assert chosen.rules == ("positive_share", "fallback", "positive_share", "positive_share")
    nothing = choose_thresholds(probabilities, full_labels=np.zeros((2, 4)), fallback_threshold=0.25)
    np.testing.assert_array_equal(nothing.thresholds, np.float32([0.25] * 4))
    assert nothing.rules == ("fallback",) * 4


def test_a_float64_score_stays_selected_by_its_float32_threshold():
    upper = np.nextafter(np.float32(0.3), np.float32(1))
    score = float(upper) - 1e-12  # between two float32 numbers, nearer the upper one
    chosen = choose_thresholds(np.array([[score], [0.1]]), full_labels=np.array([[1], [0]]))
    assert float(chosen.thresholds[0]) <= score  # as Python floats: no cast of the score to float32


def test_bad_inputs_raise_clear_errors():
    probabilities = np.full((3, 2), 0.5)
    with pytest.raises(ValueError, match="full_labels.*or.*observed_labels.*Received: neither"):
        choose_thresholds(probabilities)
    with pytest.raises(ValueError, match=r"shape of `probabilities` \(3, 2\). Received: full_labels.shape=\(3, 3\)"):
        choose_thresholds(probabilities, full_labels=np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"only \[-1, 0, 1\]. Received: values \[2\]"):
        choose_thresholds(probabilities, observed_labels=np.full((3, 2), 2))
    with pytest.raises(ValueError, match=r"Received: positive_share=0"):
        choose_thresholds(probabilities, observed_labels=np.ones((3, 2)), positive_share=0)
    with pytest.raises(ValueError, match=r"finite.*Received: probabilities of shape \(3, 2\)"):
        choose_thresholds(np.full((3, 2), np.nan), full_labels=np.ones((3, 2)))


# === The model holds them ===


def test_model_thresholds_default_validate_save_and_survive_the_fold(tiny_model, rng, tmp_path):
    model = tiny_model(3)
    assert model.thresholds.dtype == np.float32
    np.testing.assert_array_equal(model.thresholds, np.full(3, 0.5, np.float32))
    assert model.get_config()["thresholds"] is None
    for bad in ([0.1, 0.2], [0.1, 0.2, 1.5], [0.1, float("nan"), 0.2], "abc"):
        with pytest.raises(ValueError, match=r"a list of 3 numbers in \[0, 1\], one per label. Received: thresholds="):
            model.set_thresholds(bad)
    with pytest.raises(ValueError, match=r"Received: thresholds=\[0.2, -0.1, 0.3\]"):
        tiny_model(3, thresholds=[0.2, -0.1, 0.3])
    model.set_thresholds(np.float32([0.25, 0.125, 1.0]))
    assert model.get_config()["thresholds"] == [0.25, 0.125, 1.0]
    model.save(tmp_path / "model.keras")
    reloaded = load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(reloaded.thresholds, np.float32([0.25, 0.125, 1.0]))
    np.testing.assert_array_equal(reloaded.fold_batch_norm().thresholds, model.thresholds)
    np.testing.assert_array_equal(reloaded.for_inference().thresholds, model.thresholds)
    model.set_thresholds(None)
    np.testing.assert_array_equal(model.thresholds, np.full(3, 0.5, np.float32))


def test_a_cam_model_holds_thresholds_too(tmp_path):
    from patchpu_keras.models import CAMClassifier

    model = CAMClassifier.create(2, backbone="tiny", image_size=32, thresholds=[0.3, 0.7])
    model.save(tmp_path / "cam.keras")
    np.testing.assert_array_equal(load_model(tmp_path / "cam.keras").thresholds, np.float32([0.3, 0.7]))


# === evaluate's report ===


def test_the_report_gives_precision_recall_f1_at_the_models_thresholds(rng):
    full = (rng.random((50, 4)) < 0.4).astype(int)
    full[:, 3] = 0  # no positive: left out of the averages
    scores = np.clip(0.25 * full + rng.random((50, 4)) * 0.6, 0, 1)
    thresholds = np.array([0.3, 0.45, 0.6, 0.2])
    report = classification_report(full, scores, list("abcd"), thresholds=thresholds)
    predicted = scores >= thresholds
    assert report["model_thresholds"] == pytest.approx(thresholds.tolist())
    for c, row in enumerate(report["per_class"]):
        assert row["model_threshold"] == pytest.approx(thresholds[c])
        for key, metric in (("precision", sk.precision_score), ("recall", sk.recall_score), ("f1", sk.f1_score)):
            assert row[f"{key}@model"] == pytest.approx(metric(full[:, c], predicted[:, c], zero_division=0))
    for average in ("micro", "macro"):
        for key, metric in (("precision", sk.precision_score), ("recall", sk.recall_score), ("f1", sk.f1_score)):
            want = metric(full[:, :3], predicted[:, :3], average=average, zero_division=0)
            assert report["at_model_thresholds"][average][key] == pytest.approx(want)
    # Not the 0.5 numbers under another name.
    assert report["at_model_thresholds"]["micro"]["f1"] != pytest.approx(report["at_threshold"]["micro"]["f1"])
    unset = classification_report(full, scores, list("abcd"))
    assert unset["at_model_thresholds"] == unset["at_threshold"]
    with pytest.raises(ValueError, match=r"one threshold per score column \(4\). Received: thresholds of shape \(3,\)"):
        classification_report(full, scores, list("abcd"), thresholds=thresholds[:3])


def test_evaluate_reports_the_models_own_thresholds(trained_elsewhere, model_predict, tmp_path):
    import recipes
    from patchpu_keras.data import CLASS_NAMES
    from patchpu_keras.evaluation import evaluate
    from tests.configs import TINY_DEMO_OVERRIDES
    from tests.helpers.train_on_backend import held_out_arrays

    config = recipes.apply_overrides(recipes.load("demo"), TINY_DEMO_OVERRIDES)
    model = load_model(trained_elsewhere["model"])  # a copy: the session's model keeps no thresholds
    images, full = held_out_arrays(config)
    scores = model_predict(images)
    # Each class's threshold in the widest gap between its scores: no rounding decides a label.
    ordered = np.sort(scores, axis=0)
    gaps = np.diff(ordered, axis=0)
    widest, columns = np.argmax(gaps, axis=0), np.arange(scores.shape[1])
    assert gaps[widest, columns].min() > 1e-4
    model.set_thresholds((ordered[widest, columns] + ordered[widest + 1, columns]) / 2)
    report = evaluate(model, config, tmp_path, batch_size=8, verbose=0)
    assert report["model_thresholds"] == pytest.approx(model.thresholds.tolist())
    expected = classification_report(full, scores, list(CLASS_NAMES), thresholds=model.thresholds)
    for average in ("micro", "macro"):
        assert report["at_model_thresholds"][average] == pytest.approx(expected["at_model_thresholds"][average])
        # Not the 0.5 numbers under another name.
        assert expected["at_model_thresholds"][average] != pytest.approx(expected["at_threshold"][average])
    assert [row["f1@model"] for row in report["per_class"]] == pytest.approx(
        [row["f1@model"] for row in expected["per_class"]])
