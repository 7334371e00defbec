import keras
import numpy as np
import pytest

from patchpu_keras import losses
from tests.conftest import to_numpy
from tests.losses.test_losses import _gradient

# One image, four labels: an observed positive, two unknowns and an observed negative.
OBSERVED = np.array([[1.0, 0.0, -1.0, 0.0]], "float32")
PROBABILITIES = np.array([[0.9, 0.4, 0.2, 0.8]], "float32")


def test_online_negative_on_hand_values():
    # -log 0.9, -(1 - 0.4) log(1 - 0.4), -log(1 - 0.2), -(1 - 0.8) log(1 - 0.8), by hand.
    terms = [0.1053605, 0.6 * 0.5108256, 0.2231436, 0.2 * 1.6094379]
    np.testing.assert_allclose(to_numpy(losses.online_negative(OBSERVED, PROBABILITIES)), np.mean(terms), rtol=1e-5)
    np.testing.assert_allclose(to_numpy(losses.OnlineNegative()(OBSERVED, PROBABILITIES)), np.mean(terms), rtol=1e-5)
    # gamma = 2 squares the unknowns' weights.
    terms = [0.1053605, 0.36 * 0.5108256, 0.2231436, 0.04 * 1.6094379]
    np.testing.assert_allclose(
        to_numpy(losses.online_negative(OBSERVED, PROBABILITIES, gamma=2.0)), np.mean(terms), rtol=1e-5)


def test_online_negative_weights_and_gamma_zero_is_assume_negative(rng):
    weights = to_numpy(losses.online_negative_targets(OBSERVED, PROBABILITIES))
    np.testing.assert_allclose(weights, [[0.0, 0.6, 1.0, 0.2]], rtol=1e-6)
    observed = rng.choice([-1, 0, 0, 1], size=(5, 6)).astype("float32")
    p = rng.uniform(0.01, 0.99, (5, 6)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(losses.online_negative(observed, p, gamma=0.0)), to_numpy(losses.assume_negative(observed, p)),
        rtol=1e-5)


def test_online_negative_weights_carry_no_gradient():
    # With w = 1 - p held fixed, d/dp of -w log(1 - p) is w / (1 - p) = 1 on each unknown;
    # a weight the gradient flows through would give 1 + log(1 - p) instead.
    gradient = _gradient(lambda p: losses.online_negative(OBSERVED, p), PROBABILITIES) * OBSERVED.size
    np.testing.assert_allclose(gradient[0, [1, 3]], [1.0, 1.0], rtol=1e-5)
    np.testing.assert_allclose(gradient[0, [0, 2]], [-1 / 0.9, 1 / 0.8], rtol=1e-5)


def test_online_negative_config_round_trip_and_bad_gamma():
    loss = losses.OnlineNegative(gamma=2.0)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is losses.OnlineNegative and restored.gamma == 2.0
    with pytest.raises(ValueError, match=r"gamma.*Received: gamma=-1"):
        losses.OnlineNegative(gamma=-1)


def test_custom_on_is_custom_wn_with_online_negatives():
    import recipes
    from patchpu_keras.training import build_loss

    online, weak = recipes.load("custom_on"), recipes.load("custom_wn")
    assert online["loss"] == "online_negative" and online["expected_positives"] is None
    assert {k: v for k, v in online.items() if k != "loss"} == {k: v for k, v in weak.items() if k != "loss"}
    built = build_loss(online)
    assert type(built) is losses.OnlineNegative and built.gamma == 1.0
    # The pretrained variant only adds the chained pretraining (contrastive, the measured default).
    pretrained = recipes.load("custom_on_pretrained")
    assert pretrained["pretrain_steps"] > 0 and pretrained["pretrain_objective"] == "contrastive"
    assert {**pretrained, "pretrain_steps": 0} == online
