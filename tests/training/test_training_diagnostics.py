import json

import numpy as np
import pytest

import recipes
from patchpu_keras.data import load_data
from patchpu_keras.diagnostics import DIAGNOSED_OUTPUTS, localization, weak_negative_diagnostics
from patchpu_keras.inference import predict_labelled
from patchpu_keras.models import load_model
from patchpu_keras.training import train
from tests.configs import TINY_DEMO_OVERRIDES


def test_every_epoch_logs_the_diagnostics_of_the_saved_model(tmp_path):
    config = recipes.apply_overrides(recipes.load("demo"), TINY_DEMO_OVERRIDES + ["epochs=2", "diagnostics_images=24"])
    report = train(config, str(tmp_path), verbose=0)
    history = json.load(open(tmp_path / "history.json"))["history"]
    keys = ["wn_weight_hidden_positive", "wn_weight_true_negative", "wn_weight_auc", "probability_auc",
            "attention_entropy_present", "attention_entropy_absent", "pointing"]
    for key in keys:
        assert len(history[f"diagnostics_{key}"]) == 2, key
        assert report["history"][f"diagnostics_{key}"] == history[f"diagnostics_{key}"]
    # The last epoch's values are those of the saved model on the first 24 training mosaics.
    data = load_data(config)
    model = load_model(str(tmp_path / "model.keras"))
    outputs = predict_labelled(model, data.probe, 16, collect=DIAGNOSED_OUTPUTS)
    assert len(outputs["probabilities"]) == 24
    np.testing.assert_array_equal(outputs["observed_labels"], data.observed_labels[:24])
    expected = {
        **weak_negative_diagnostics(outputs, outputs["observed_labels"], outputs["full_labels"], theta=0.0),
        **localization(model, outputs, outputs["full_labels"], data.probe_objects),
    }
    for key in keys:
        assert history[f"diagnostics_{key}"][-1] == pytest.approx(expected[key], abs=1e-4), key
    assert 0.0 <= expected["pointing"] <= 1.0 and 0.0 < expected["attention_entropy_present"] <= 1.0


def test_no_diagnostics_without_full_labels_or_when_turned_off():
    config = recipes.apply_overrides(recipes.load("demo"), TINY_DEMO_OVERRIDES + ["diagnostics_images=0"])
    assert load_data(config).probe is None
