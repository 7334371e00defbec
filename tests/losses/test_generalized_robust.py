"""GR-Loss against a numpy version, its schedules, and a fit through the stateful path."""

import keras
import numpy as np
import pytest

from patchpu_keras import PatchPUClassifier, TrainingModel, losses
from patchpu_keras.data.pipeline import array_dataset
from patchpu_keras.training.builders import resolve_jit_compile
from tests.conftest import TINY, to_numpy

EPS = 1e-7


def numpy_generalized_robust_terms(y, p, w, b, mu, sigma, q2=0.01, q3=1.0):
    k = 1 / (1 + np.exp(-(w * p + b)))
    v = np.exp(-0.5 * ((p - mu) / sigma) ** 2)
    missing = v * (k * (1 - p**q2) / q2 + (1 - k) * (1 - (1 - p) ** q3) / q3)
    positive = -np.log(np.clip(p, EPS, 1))
    negative = -np.log(np.clip(1 - p, EPS, 1))
    return np.where(y == 1, positive, np.where(y == -1, negative, missing))


@pytest.fixture
def problem():
    # Fixed values, with p exactly 0 and 1 among the positives, negatives and unknowns.
    y = np.array(
        [[1, 0, 0, 0, -1], [0, 1, 0, 0, 0], [0, 0, 1, -1, 0], [1, 0, 0, 0, 0]], "float32"
    )
    p = np.array(
        [
            [0.9, 0.05, 0.5, 0.0, 1.0],
            [1.0, 0.3, 0.7, 0.95, 0.2],
            [0.0, 1.0, 0.0, 0.0, 0.6],
            [1.0, 0.4, 0.99, 0.01, 0.8],
        ],
        "float32",
    )
    return y, p


@pytest.mark.parametrize(
    "w, b, mu, sigma, q2, q3",
    [(0.0, -2.0, 0.5, 2.0, 0.01, 1.0), (1.75, -2.0, 0.8, 0.5, 0.01, 1.0), (1.0, -1.0, 0.6, 1.0, 0.5, 0.3)],
)
def test_matches_numpy_and_is_finite_at_zero_and_one(problem, w, b, mu, sigma, q2, q3):
    y, p = problem
    expected = numpy_generalized_robust_terms(y, p.astype("float64"), w, b, mu, sigma, q2, q3).mean()
    assert np.isfinite(expected)
    got = to_numpy(losses.generalized_robust(y, p, w, b, mu, sigma, q2, q3))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_hand_computed_values(problem):
    y, p = problem
    # Unknown p = 0 with K, V at the first epoch's w = 0, b = -2, mu = 0.5375, sigma = 1.8125:
    # V = exp(-0.5 (0.5375 / 1.8125)^2), and the missing term is V * K * 1/q2 (p^q2 = 0).
    k = 1 / (1 + np.exp(2.0))
    v = np.exp(-0.5 * (0.5375 / 1.8125) ** 2)
    np.testing.assert_allclose(
        to_numpy(losses.generalized_robust([[0.0]], [[0.0]], 0.0, -2.0, 0.5375, 1.8125)),
        v * k * 100.0,
        rtol=1e-5,
    )
    assert abs(v * k * 100.0 - 11.4075) < 1e-3
    # Unknown p = 1 and q3 = 1: (1 - p^q2) = 0 and (1 - (1 - p)) = 1, so the term is V(1) (1 - K(1)).
    k1 = 1 / (1 + np.exp(-(0.0 - 2.0)))
    v1 = np.exp(-0.5 * ((1 - 0.5375) / 1.8125) ** 2)
    np.testing.assert_allclose(
        to_numpy(losses.generalized_robust([[0.0]], [[1.0]], 0.0, -2.0, 0.5375, 1.8125)),
        v1 * (1 - k1),
        rtol=1e-5,
    )
    # The fixture's batch at those parameters.
    np.testing.assert_allclose(
        to_numpy(losses.generalized_robust(y, p, 0.0, -2.0, 0.5375, 1.8125)), 3.19746, rtol=1e-4
    )


def _gradient(function, x):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = function(x)
        return tape.gradient(value, x).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(function)(x))
    if backend == "torch":
        import torch

        x = torch.tensor(x, requires_grad=True)
        function(x).backward()
        return x.grad.numpy()
    pytest.skip(f"no gradient helper for {backend}")


def test_k_and_v_carry_no_gradient(problem):
    y, _ = problem
    p = np.array(
        [[0.9, 0.05, 0.5, 0.3, 0.6], [0.2, 0.3, 0.7, 0.95, 0.2], [0.4, 0.8, 0.1, 0.5, 0.6], [0.7, 0.4, 0.99, 0.01, 0.8]],
        "float32",
    )
    w, b, mu, sigma, q2, q3 = 1.5, -2.0, 0.7, 0.8, 0.01, 0.5
    grad = _gradient(lambda x: losses.generalized_robust(y, x, w, b, mu, sigma, q2, q3), p)
    # K and V held constant: d/dp of the missing term is V [-K p^(q2-1) + (1 - K)(1 - p)^(q3-1)].
    q = p.astype("float64")
    k = 1 / (1 + np.exp(-(w * q + b)))
    v = np.exp(-0.5 * ((q - mu) / sigma) ** 2)
    missing = v * (-k * q ** (q2 - 1) + (1 - k) * (1 - q) ** (q3 - 1))
    expected = np.where(y == 1, -1 / q, np.where(y == -1, 1 / (1 - q), missing)) / y.size
    np.testing.assert_allclose(grad, expected, rtol=1e-4)


def test_gradient_is_finite_at_zero_and_one(problem):
    y, p = problem
    grad = _gradient(lambda x: losses.generalized_robust(y, x, 1.0, -2.0, 0.6, 1.0, 0.01, 0.5), p)
    assert np.all(np.isfinite(grad))


def test_k_and_v_values():
    p = np.array([[0.0, 0.25, 1.0]], "float32")
    k, v = losses.missing_label_weights(p, 2.0, -2.0, 0.8, 0.5)
    np.testing.assert_allclose(to_numpy(k), 1 / (1 + np.exp(-(2 * p - 2))), rtol=1e-6)
    np.testing.assert_allclose(to_numpy(v), np.exp(-0.5 * ((p - 0.8) / 0.5) ** 2), rtol=1e-6)


def test_schedule_follows_the_authors_epoch_offsets():
    loss = losses.GeneralizedRobust(num_epochs=8)
    # Epoch e (0-based): w = 2 e / 8 (one epoch behind), b = -2,
    # mu = 0.5 + 0.3 (e + 1) / 8 and sigma = 2 - 1.5 (e + 1) / 8 (end values in the last epoch).
    expected = {
        0: (0.0, -2.0, 0.5375, 1.8125),
        1: (0.25, -2.0, 0.575, 1.625),
        3: (0.75, -2.0, 0.65, 1.25),
        7: (1.75, -2.0, 0.8, 0.5),
        9: (2.0, -2.0, 0.8, 0.5),  # past num_epochs: the end values
    }
    for epoch, values in expected.items():
        got = [float(to_numpy(x)) for x in loss.schedule(epoch)]
        np.testing.assert_allclose(got, values, rtol=1e-6, atol=1e-7, err_msg=f"epoch {epoch}")


def test_config_round_trip():
    loss = losses.GeneralizedRobust(num_epochs=10, w=(0.0, 3.0), mu=(0.4, 0.9), q2=0.1, q3=0.5)
    config = loss.get_config()
    clone = losses.GeneralizedRobust.from_config(config)
    assert clone.get_config() == config
    assert config["w"] == [0.0, 3.0] and config["num_epochs"] == 10 and config["q2"] == 0.1
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, losses.GeneralizedRobust) and restored.get_config() == config


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_epochs": 0}, "num_epochs"),
        ({"q2": 0.0}, "q2"),
        ({"sigma": (2.0, 0.0)}, "sigma"),
        ({"w": (0.0,)}, "pair"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        losses.GeneralizedRobust(**kwargs)


def test_traced_fit_reads_the_epoch_of_the_loss_state(rng, tmp_path):
    images = rng.integers(0, 256, (8, 32, 32, 3)).astype("uint8")
    observed = np.zeros((8, 4), "float32")
    observed[np.arange(8), np.arange(8) % 4] = 1
    loss = losses.GeneralizedRobust(num_epochs=2)
    state = loss.make_state(observed)
    model = TrainingModel(PatchPUClassifier.create(4, **TINY), state)
    # A traced train step (tf.function / jax.jit) reads the epoch from the state variable.
    # As `train` compiles it: XLA on JAX (which traces only then), none on TensorFlow CPU,
    # where XLA costs a minute and a half of CPU and checks nothing more.
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, jit_compile=resolve_jit_compile("auto"))
    dataset = array_dataset(images, observed_labels=observed, batch_size=8)
    history = model.fit(dataset, epochs=2, shuffle=False, verbose=0, callbacks=[losses.LossStateCallback(loss, state)])
    assert np.all(np.isfinite(history.history["loss"]))
    assert int(to_numpy(model.loss_state.epoch)) == 1
    # After fit the state is at the last epoch (1 of 2): w = 1, mu = 0.8, sigma = 0.5.
    outputs = model(images, training=False)
    labels = {"observed_labels": observed, "index": np.arange(8)}
    traced = to_numpy(loss.compute(labels, outputs, model.loss_state))
    expected = numpy_generalized_robust_terms(
        observed, to_numpy(outputs["probabilities"]).astype("float64"), 1.0, -2.0, 0.8, 0.5
    ).mean()
    np.testing.assert_allclose(traced, expected, rtol=1e-4)
    # The run's checkpoint (the training model's weights) keeps the epoch.
    model.save_weights(tmp_path / "gr.weights.h5")
    fresh = TrainingModel(PatchPUClassifier.create(4, **TINY), loss.make_state(observed))
    fresh.load_weights(tmp_path / "gr.weights.h5")
    assert int(to_numpy(fresh.loss_state.epoch)) == 1
