import numpy as np
import pytest
from scipy.special import softmax

from patchpu_keras.layers import LabelCodebookAttention, SoftmaxLabelClassifier
from tests.conftest import to_numpy


def _gelu(x):
    from scipy.special import erf

    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def test_attention_pooling_matches_equations_1_and_2(rng):
    layer = LabelCodebookAttention(num_labels=3, embedding_dim=6, mlp_units=5)
    patches = rng.normal(size=(2, 7, 6)).astype("float32")
    layer.build(patches.shape)
    codebooks = rng.normal(size=(3, 6)).astype("float32")
    w1, b1 = rng.normal(size=(6, 5)).astype("float32"), rng.normal(size=5).astype("float32")
    w2, b2 = rng.normal(size=(5, 6)).astype("float32"), rng.normal(size=6).astype("float32")
    layer.label_codebooks.assign(codebooks)
    layer.mlp_hidden.set_weights([w1, b1])
    layer.mlp_output.set_weights([w2, b2])

    embeddings, attention = (to_numpy(t) for t in layer(patches))

    alpha = softmax(np.einsum("lf,bnf->bln", codebooks, patches), axis=-1)  # eq. (1)
    pooled = alpha @ patches
    expected = _gelu(pooled @ w1 + b1) @ w2 + b2 + pooled  # eq. (2)
    np.testing.assert_allclose(attention, alpha, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embeddings, expected, rtol=1e-4, atol=1e-4)


def test_softmax_classifier_matches_equation_3(rng):
    layer = SoftmaxLabelClassifier(num_labels=4)
    embeddings = rng.normal(size=(3, 4, 5)).astype("float32")
    layer.build(embeddings.shape)
    weights = rng.normal(size=(4, 5)).astype("float32")
    layer.kernel.assign(weights)
    out = to_numpy(layer(embeddings))
    logits = np.einsum("blf,kf->blk", embeddings, weights)
    expected = np.array([[softmax(logits[b, l])[l] for l in range(4)] for b in range(3)])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    # Softmax over the classifier index, not across labels: rows need not sum to 1.
    assert not np.allclose(out.sum(-1), 1.0)


def test_configs_round_trip():
    layer = LabelCodebookAttention(num_labels=5, embedding_dim=12, mlp_units=7, name="a")
    assert LabelCodebookAttention.from_config(layer.get_config()).get_config() == layer.get_config()
    layer = LabelCodebookAttention(
        num_labels=5, score_scale=0.5, learn_temperature=True, codebook_init_mode="fan_in"
    )
    assert LabelCodebookAttention.from_config(layer.get_config()).get_config() == layer.get_config()
    layer = SoftmaxLabelClassifier(num_labels=5, name="c")
    assert SoftmaxLabelClassifier.from_config(layer.get_config()).get_config() == layer.get_config()


def test_score_scale_and_learned_temperature_multiply_the_scores(rng):
    layer = LabelCodebookAttention(
        num_labels=3, embedding_dim=6, mlp_units=5, score_scale=0.25, learn_temperature=True
    )
    patches = rng.normal(size=(2, 7, 6)).astype("float32")
    layer.build(patches.shape)
    codebooks = rng.normal(size=(3, 6)).astype("float32")
    layer.label_codebooks.assign(codebooks)
    assert float(to_numpy(layer.temperature)) == 1.0  # starts as eq. (1) times score_scale
    layer.temperature.assign(3.0)
    _, attention = layer(patches)
    expected = softmax(0.25 * 3.0 * np.einsum("lf,bnf->bln", codebooks, patches), axis=-1)
    np.testing.assert_allclose(to_numpy(attention), expected, rtol=1e-5, atol=1e-6)
    assert [w.name for w in layer.trainable_weights].count("temperature") == 1


def test_codebook_init_modes_set_the_row_norm():
    # Variance 1/F (fan_out) gives rows of norm ~1; variance 1/L (fan_in) ~sqrt(F/L).
    # (Keras widens its truncated normal so that the variance is the nominal one.)
    for mode, expected in (("fan_out", 1.0), ("fan_in", np.sqrt(256 / 4))):
        layer = LabelCodebookAttention(num_labels=4, embedding_dim=256, codebook_init_mode=mode)
        layer.build((None, 5, 256))
        norms = np.linalg.norm(to_numpy(layer.label_codebooks), axis=-1)
        np.testing.assert_allclose(norms.mean(), expected, rtol=0.05)


def test_configs_saved_before_the_attention_arguments_load_as_eq_1():
    layer = LabelCodebookAttention(num_labels=5, embedding_dim=12, mlp_units=7, learn_temperature=True)
    config = layer.get_config()
    for key in ("score_scale", "learn_temperature", "codebook_init_mode"):
        config.pop(key)
    old = LabelCodebookAttention.from_config(config)
    assert (old.score_scale, old.learn_temperature, old.codebook_init_mode) == (1.0, False, "fan_out")


def test_attention_arguments_are_checked():
    with pytest.raises(ValueError, match="Received: score_scale=0"):
        LabelCodebookAttention(num_labels=2, score_scale=0)
    with pytest.raises(ValueError, match="Received: codebook_init_mode='fan_avg'"):
        LabelCodebookAttention(num_labels=2, codebook_init_mode="fan_avg")
