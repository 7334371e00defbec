import keras
import numpy as np
import pytest

from patchpu_keras import losses
from tests.conftest import to_numpy

EPS = 1e-7


def _log(x):
    return np.log(np.clip(x, EPS, 1.0))


def _random_problem(rng, batch=6, num_labels=5, features=4):
    observed = rng.choice([-1, 0, 0, 0, 1], size=(batch, num_labels)).astype("float32")
    observed[0] = 0  # a row without any positive
    observed[1] = [1, 0, 0, -1, 1][:num_labels]
    probabilities = rng.uniform(0, 1, (batch, num_labels)).astype("float32")
    probabilities[2, :2] = [0.0, 1.0]  # exact 0 and 1 must not give NaN
    embeddings = rng.normal(size=(batch, num_labels, features)).astype("float32")
    return observed, probabilities, embeddings


def numpy_weak_negative_weights(observed, embeddings, theta):
    batch, num_labels, _ = embeddings.shape
    weights = np.zeros((batch, num_labels))
    for b in range(batch):
        unit = embeddings[b] / np.linalg.norm(embeddings[b], axis=-1, keepdims=True)
        sim = unit @ unit.T
        beta = np.where(sim > theta, sim, 0.0)  # eq. (7)
        positives = np.flatnonzero(observed[b] == 1)
        for l in range(num_labels):
            if observed[b, l] == 1:
                weights[b, l] = 0.0
            elif observed[b, l] == -1:
                weights[b, l] = 1.0
            elif len(positives):
                weights[b, l] = max(beta[l, k] for k in positives)  # eq. (8)
    return weights


def test_full_bce_matches_numpy(rng):
    y = rng.integers(0, 2, (6, 5)).astype("float32")
    _, p, _ = _random_problem(rng)
    expected = np.mean(-(y * _log(p) + (1 - y) * _log(1 - p)))
    assert np.isfinite(expected)
    np.testing.assert_allclose(to_numpy(losses.full_bce(y, p)), expected, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(losses.FullBCE()({"observed_labels": 2 * y - 1, "full_labels": y}, p)), expected, rtol=1e-5)
    # Fully observed +1/-1 labels without a full_labels entry give the same loss.
    np.testing.assert_allclose(to_numpy(losses.FullBCE()(2 * y - 1, p)), expected, rtol=1e-5)


def test_assume_negative_matches_numpy(rng):
    observed, p, _ = _random_problem(rng)
    positive = observed == 1
    expected = np.mean(np.where(positive, -_log(p), -_log(1 - p)))
    np.testing.assert_allclose(to_numpy(losses.assume_negative(observed, p)), expected, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(losses.AssumeNegative()(observed, p)), expected, rtol=1e-5)


@pytest.mark.parametrize("theta", [0.0, 0.3])
def test_weak_negative_matches_numpy(rng, theta):
    observed, p, embeddings = _random_problem(rng)
    weights = numpy_weak_negative_weights(observed, embeddings, theta)
    expected_terms = np.where(observed == 1, -_log(p), -weights * _log(1 - p))
    expected = expected_terms.mean()
    np.testing.assert_allclose(to_numpy(losses.weak_negative_targets(observed, embeddings, theta)), weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(losses.weak_negative(observed, p, embeddings, theta)), expected, rtol=1e-5)
    outputs = {"probabilities": p, "label_embeddings": embeddings}
    np.testing.assert_allclose(to_numpy(losses.WeakNegative(theta=theta)(observed, outputs)), expected, rtol=1e-5)
    # Row 0 has no positive: none of its unknowns is a weak negative.
    assert np.all(weights[0] == 0)
    # Observed negatives weigh 1, positives 0; some unknown got a fractional weight.
    assert np.all(weights[observed == -1] == 1) and np.all(weights[observed == 1] == 0)
    assert np.any((weights > 0) & (weights < 1))


def _gradient(function, x):
    """d function(x) / dx on the active backend (jitted on JAX, as training is)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return np.asarray(jax.jit(jax.grad(function))(x))
    if backend == "tensorflow":
        import tensorflow as tf

        variable = tf.Variable(x)
        with tf.GradientTape() as tape:
            value = function(variable)
        gradient = tape.gradient(value, variable)
    else:
        import torch

        variable = torch.tensor(x, requires_grad=True)
        value = function(variable)
        gradient = torch.autograd.grad(value, variable, allow_unused=True)[0] if value.requires_grad else None
    # An input the graph does not reach has no gradient at all: that is a zero gradient.
    return np.zeros_like(x) if gradient is None else to_numpy(gradient)


def test_weak_negative_weights_carry_no_gradient(rng):
    observed, p, embeddings = _random_problem(rng)
    p = np.clip(p, 0.05, 0.95)  # away from the clipped logs
    # The loss depends on the embeddings (through the weights) ...
    moved = embeddings + rng.normal(size=embeddings.shape).astype("float32")
    assert abs(float(to_numpy(losses.weak_negative(observed, p, moved))) - float(to_numpy(losses.weak_negative(observed, p, embeddings)))) > 1e-3
    # ... but no gradient flows into them: the weights are targets, held fixed (eq. 8).
    to_embeddings = _gradient(lambda e: losses.weak_negative(observed, p, e), embeddings)
    np.testing.assert_array_equal(to_embeddings, np.zeros_like(embeddings))
    # The probabilities get the gradient of the weighted terms, weights as constants.
    weights = numpy_weak_negative_weights(observed, embeddings, 0.0)
    expected = np.where(observed == 1, -1 / p, weights / (1 - p)) / p.size
    to_probabilities = _gradient(lambda q: losses.weak_negative(observed, q, embeddings), p)
    np.testing.assert_allclose(to_probabilities, expected, rtol=1e-4, atol=1e-7)


def test_weak_negative_targets_follow_similarity():
    # Label 1 copies the positive label 0's representation -> weight 1;
    # label 2 is orthogonal -> 0; label 3 is opposite -> thresholded to 0.
    embeddings = np.array([[[1, 0], [2, 0], [0, 1], [-1, 0]]], "float32")
    observed = np.array([[1, 0, 0, 0]], "float32")
    np.testing.assert_allclose(to_numpy(losses.weak_negative_targets(observed, embeddings)), [[0, 1, 0, 0]], atol=1e-6)


def test_losses_stay_finite_at_saturated_probabilities():
    observed = np.array([[1, 0, -1], [0, 0, 0]], "float32")
    embeddings = np.zeros((2, 3, 4), "float32")  # zero vectors: no NaN similarity either
    for p in (np.zeros((2, 3), "float32"), np.ones((2, 3), "float32")):
        values = [
            losses.full_bce((observed > 0).astype("float32"), p),
            losses.assume_negative(observed, p),
            losses.weak_negative(observed, p, embeddings),
        ]
        for value in values:
            value = float(to_numpy(value))
            assert np.isfinite(value) and value <= -np.log(EPS) + 1e-3


def test_loss_classes_serialize_and_build_from_the_table():
    loss = losses.WeakNegative(theta=0.2)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(clone, losses.WeakNegative) and clone.theta == 0.2
    assert isinstance(losses.build_loss({"loss": "assume_negative"}), losses.AssumeNegative)
    assert losses.build_loss({"loss": "weak_negative", "theta": 0.3}).theta == 0.3
    assert losses.build_loss({"loss": "weak_negative"}).theta == 0.0  # the table's default
    with pytest.raises(ValueError, match="Received: loss='nope'"):
        losses.build_loss({"loss": "nope"})
    with pytest.raises(ValueError, match=r"--set expected_positives=VALUE.*Received: expected_positives=None"):
        losses.build_loss({"loss": "role", "seed": 0})
    with pytest.raises(ValueError, match="label_embeddings"):
        losses.WeakNegative()(np.ones((1, 2), "float32"), np.ones((1, 2), "float32") / 2)
