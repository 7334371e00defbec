import keras
import numpy as np
import pytest

from patchpu_keras import losses
from patchpu_keras.layers import LabelCodebookAttention
from patchpu_keras.losses.online_negative_clustered import (
    OnlineNegativeClustered,
    label_cluster,
    label_cluster_terms,
)
from tests.conftest import tiny_patch_model, to_numpy
from tests.losses.test_losses import _gradient

# One image, two labels, two patches: label 0 observed, attending mostly to patch 0.
OBSERVED = np.array([[1.0, 0.0]], "float32")
ATTENTION = np.array([[[0.8, 0.2], [0.5, 0.5]]], "float32")
PROBABILITIES = np.array([[0.9, 0.4]], "float32")


def numpy_label_cluster_terms(observed, attention):
    shares = attention / attention.sum(axis=1, keepdims=True)  # q[b, k, i]: label k's share of patch i
    terms = -(attention * np.log(shares)).sum(axis=-1)
    return np.where(observed > 0, terms, 0.0)


def _random_attention(rng, batch=5, num_labels=4, num_patches=6):
    observed = rng.choice([-1, 0, 0, 1], size=(batch, num_labels)).astype("float32")
    observed[0] = 0  # a row without any positive
    observed[1] = [1, 0, 1, -1]  # two positives
    scores = rng.normal(0, 2, (batch, num_labels, num_patches))
    attention = np.exp(scores) / np.exp(scores).sum(axis=-1, keepdims=True)
    return observed, attention.astype("float32")


def test_label_cluster_on_hand_values():
    # Shares of label 0: 0.8 / 1.3 on patch 0, 0.2 / 0.7 on patch 1, weighted by its attention, over 2 labels.
    expected = (-0.8 * np.log(0.8 / 1.3) - 0.2 * np.log(0.2 / 0.7)) / 2
    np.testing.assert_allclose(to_numpy(label_cluster(OBSERVED, ATTENTION)), expected, rtol=1e-5)
    # The loss adds it, times cluster_weight, to the online negative loss.
    outputs = {"probabilities": PROBABILITIES, "attention": ATTENTION}
    online = to_numpy(losses.online_negative(OBSERVED, PROBABILITIES))
    for weight in (0.0, 1.0, 2.5):
        np.testing.assert_allclose(
            to_numpy(OnlineNegativeClustered(cluster_weight=weight)({"observed_labels": OBSERVED}, outputs)),
            online + weight * expected, rtol=1e-5)


def test_label_cluster_matches_numpy(rng):
    observed, attention = _random_attention(rng)
    expected = numpy_label_cluster_terms(observed, attention)
    assert np.all(expected[observed <= 0] == 0) and np.all(expected[observed > 0] > 0)
    np.testing.assert_allclose(to_numpy(label_cluster_terms(observed, attention)), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(label_cluster(observed, attention)), expected.mean(), rtol=1e-5)


def test_label_cluster_gradient_flows_through_the_weights(rng):
    # d C[b, l] / d a[b, k, i] = [k = l] (-log q_li - 1) + a_li / sum_k' a_k'i, the weights a[b, l, i]
    # included; with them held fixed, the -log q_li term is missing.
    observed, attention = _random_attention(rng)
    positives = (observed > 0).astype("float64")
    totals = attention.sum(axis=1, keepdims=True)
    own = positives[:, :, None] * (-np.log(attention / totals) - 1.0)
    expected = own + np.einsum("bl,bli->bi", positives, attention)[:, None, :] / totals
    expected /= observed.size
    gradient = _gradient(lambda a: label_cluster(observed, a), attention)
    np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-6)


def test_label_cluster_pulls_attended_patches_to_the_observed_labels_codebook(rng):
    # Through eq. (1)'s attention, the gradient step moves the patch label 0 attends to most toward
    # label 0's codebook and away from the others' (orthogonal codebooks keep the directions apart),
    # and lowers the term.
    layer = LabelCodebookAttention(num_labels=3, embedding_dim=8, mlp_units=4)
    patches = rng.normal(0, 1, (2, 5, 8)).astype("float32")
    layer.build(patches.shape)
    codebooks = np.eye(3, 8, dtype="float32")
    layer.label_codebooks.assign(codebooks)
    observed = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, -1.0]], "float32")

    step = -_gradient(lambda x: label_cluster(observed, layer(x)[1]), patches)
    top = np.argmax(to_numpy(layer(patches)[1])[:, 0], axis=-1)
    along = np.einsum("bf,lf->bl", step[np.arange(2), top], codebooks)
    assert np.all(along[:, 0] > 0) and np.all(along[:, 1:] < 0), along
    moved = patches + 0.5 * step / np.abs(step).max()
    assert to_numpy(label_cluster(observed, layer(moved)[1])) < to_numpy(label_cluster(observed, layer(patches)[1]))


def test_config_round_trip_registry_and_bad_arguments():
    loss = OnlineNegativeClustered(cluster_weight=0.3, gamma=2.0)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is OnlineNegativeClustered and (restored.cluster_weight, restored.gamma) == (0.3, 2.0)
    entry = losses.LOSSES["online_negative_clustered"]
    assert entry.defaults == {"online_gamma": 1.0, "cluster_weight": 1.0}
    built = losses.build_loss({"loss": "online_negative_clustered", "online_gamma": 0.5, "cluster_weight": 0.2})
    assert type(built) is OnlineNegativeClustered and (built.gamma, built.cluster_weight) == (0.5, 0.2)
    with pytest.raises(ValueError, match=r"cluster_weight.*Received: cluster_weight=-1"):
        OnlineNegativeClustered(cluster_weight=-1)
    with pytest.raises(ValueError, match=r"needs the model's `attention`.*probabilities"):
        OnlineNegativeClustered()(OBSERVED, PROBABILITIES)


def test_trains_the_patch_model():
    model = tiny_patch_model(num_labels=4)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=OnlineNegativeClustered())
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)).astype("uint8")
    observed = np.zeros((8, 4), "float32")
    observed[np.arange(8), np.arange(8) % 4] = 1
    history = model.fit(images, observed, batch_size=4, epochs=2, verbose=0).history["loss"]
    assert np.all(np.isfinite(history)) and history[-1] < history[0]
