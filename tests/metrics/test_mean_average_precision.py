import keras
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from patchpu_keras.metrics import (
    MeanAveragePrecision,
    average_precision,
    mean_average_precision_score,
    per_class_average_precision,
)
from tests.conftest import to_numpy


def sklearn_map(y, s):
    aps = [average_precision_score(y[:, c], s[:, c]) for c in range(y.shape[1]) if y[:, c].any()]
    return float(np.mean(aps))


@pytest.mark.parametrize("rounding", [None, 1])  # rounding=1 creates many ties
def test_numpy_functions_match_sklearn(rng, rounding):
    y = rng.integers(0, 2, (200, 6))
    s = rng.uniform(size=(200, 6))
    if rounding is not None:
        s = np.round(s, rounding)
    for c in range(6):
        assert average_precision(y[:, c], s[:, c]) == pytest.approx(average_precision_score(y[:, c], s[:, c]), abs=1e-12)
    assert mean_average_precision_score(y, s) == pytest.approx(sklearn_map(y, s), abs=1e-12)


def test_classes_without_positive_are_left_out(rng):
    y = rng.integers(0, 2, (50, 4))
    y[:, 2] = 0
    s = rng.uniform(size=(50, 4))
    per_class = per_class_average_precision(y, s)
    assert np.isnan(per_class[2]) and not np.isnan(per_class[[0, 1, 3]]).any()
    assert mean_average_precision_score(y, s) == pytest.approx(sklearn_map(y, s))


def test_keras_metric_accumulates_batches_like_sklearn(rng):
    y = rng.integers(0, 2, (70, 5)).astype("float32")
    y[:, 4] = 0
    s = np.round(rng.uniform(size=(70, 5)), 2).astype("float32")
    metric = MeanAveragePrecision(5, capacity=100)
    for start in range(0, 70, 16):
        metric.update_state(y[start : start + 16], s[start : start + 16])
    assert float(to_numpy(metric.result())) == pytest.approx(sklearn_map(y, s), abs=1e-5)
    metric.reset_state()
    metric.update_state(y[:10], s[:10])
    assert float(to_numpy(metric.result())) == pytest.approx(sklearn_map(y[:10], s[:10]), abs=1e-5)


def test_keras_metric_reports_overflow_as_nan(rng):
    metric = MeanAveragePrecision(2, capacity=8)
    metric.update_state(np.ones((6, 2)), rng.uniform(size=(6, 2)))
    assert np.isfinite(float(to_numpy(metric.result())))
    metric.update_state(np.ones((6, 2)), rng.uniform(size=(6, 2)))
    assert np.isnan(float(to_numpy(metric.result())))


def test_keras_metric_inside_compiled_evaluate(rng):
    # The metric runs in the compiled test step of every backend.
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="sigmoid")(inputs))
    model.compile(loss="binary_crossentropy", metrics=[MeanAveragePrecision(3, capacity=64)])
    x = rng.normal(size=(40, 3)).astype("float32")
    y = rng.integers(0, 2, (40, 3)).astype("float32")
    logs = model.evaluate(x, y, batch_size=8, return_dict=True, verbose=0)
    assert logs["map"] == pytest.approx(sklearn_map(y, model.predict(x, verbose=0)), abs=1e-5)


def test_config_round_trip():
    metric = MeanAveragePrecision(7, capacity=33, name="m")
    clone = MeanAveragePrecision.from_config(metric.get_config())
    assert (clone.num_labels, clone.capacity, clone.name) == (7, 33, "m")
