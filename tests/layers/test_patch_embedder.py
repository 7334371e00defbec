import keras
import numpy as np
import pytest

from patchpu_keras.layers import MBConvBlock, PatchEmbedder
from tests.conftest import random_batch_norm_statistics, to_numpy


def _efficientnet_cut(patch_size):
    base = keras.applications.EfficientNetB0(
        weights=None, include_top=False, input_shape=(patch_size, patch_size, 3)
    )
    return keras.Model(base.input, base.get_layer("block3b_add").output), base


@pytest.mark.parametrize("patch_size", [32, 33])  # even and odd: EfficientNet pads them differently
def test_same_outputs_as_keras_efficientnet_b0_cut_at_block3b_then_pooled_and_projected(rng, patch_size):
    cut, base = _efficientnet_cut(patch_size)
    embedder = PatchEmbedder(embedding_dim=8)
    embedder.build((None, 1, patch_size, patch_size, 3))
    reference_trainable = sum(int(np.prod(w.shape)) for w in cut.trainable_weights)
    ours_trainable = sum(int(np.prod(w.shape)) for w in embedder.trainable_weights)
    assert ours_trainable - (40 * 8 + 8) == reference_trainable == 65730

    # Copy EfficientNet's own random initial weights into ours, layer by layer, by
    # EfficientNet's names; batch norms get statistics and scales away from the identity
    # (small enough that the pooled features still depend on the patch).
    pairs = [(embedder.stem_conv, "stem_conv"), (embedder.stem_bn, "stem_bn")]
    for block in embedder.blocks:
        for sub in (block.expand_conv, block.expand_bn, block.depthwise_conv, block.depthwise_bn,
                    block.se_reduce, block.se_expand, block.project_conv, block.project_bn):
            if sub is not None:
                pairs.append((sub, f"{block.name}_{sub.name}"))
    for ours, name in pairs:
        reference = base.get_layer(name)
        weights = reference.get_weights()
        if "bn" in name:  # gamma, beta, moving mean, moving variance
            gamma, beta, mean, variance = (rng.normal(0, 0.1, w.shape).astype("float32") for w in weights)
            weights = [1 + gamma, beta, mean, 1 + np.abs(variance)]
            reference.set_weights(weights)
        ours.set_weights(weights)
    kernel, bias = rng.normal(0, 0.3, (40, 8)).astype("float32"), rng.normal(0, 0.3, 8).astype("float32")
    embedder.projection.set_weights([kernel, bias])

    # Two images of two patches each, values in [0, 1] (EfficientNet takes [0, 255]),
    # of different brightness so that their pooled features differ.
    brightness = np.array([0.2, 0.5, 0.8, 1.0], "float32").reshape((2, 2, 1, 1, 1))
    patches = rng.uniform(0, 1, (2, 2, patch_size, patch_size, 3)).astype("float32") * brightness
    features = to_numpy(cut(patches.reshape((4, patch_size, patch_size, 3)) * 255.0, training=False))
    expected = (features.mean(axis=(1, 2)) @ kernel + bias).reshape((2, 2, 8))
    got = to_numpy(embedder(patches, training=False))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    # The comparison is sensitive: outputs are far from zero, and two patches' outputs differ
    # by ten times the tolerance above.
    assert np.abs(expected).max() > 0.1 and np.abs(expected[0, 0] - expected[1, 1]).max() > 1e-3


def test_patches_are_folded_into_the_batch(rng):
    embedder = PatchEmbedder(embedding_dim=8)
    patches = rng.uniform(0, 1, (2, 3, 16, 16, 3)).astype("float32")
    out = to_numpy(embedder(patches, training=False))
    assert out.shape == (2, 3, 8)
    single = to_numpy(embedder(patches[1:2, 2:3], training=False))
    np.testing.assert_allclose(out[1, 2], single[0, 0], rtol=1e-5, atol=1e-5)


def test_mbconv_shapes_and_config():
    block = MBConvBlock(24, 40, kernel_size=5, strides=2, expand_ratio=6, drop_rate=0.1, name="b")
    assert tuple(block(np.zeros((2, 16, 16, 24), "float32")).shape) == (2, 8, 8, 40)
    clone = MBConvBlock.from_config(block.get_config())
    assert clone.get_config() == block.get_config()
    embedder = PatchEmbedder(embedding_dim=32, drop_connect_rate=0.1, name="e")
    assert PatchEmbedder.from_config(embedder.get_config()).get_config() == embedder.get_config()
    # EfficientNet-B0 drop-connect: rate * block_index / 16.
    np.testing.assert_allclose([b.drop_rate for b in embedder.blocks], [0, 0.1 / 16, 0.2 / 16, 0.3 / 16, 0.4 / 16])


def test_a_folded_embedder_computes_what_the_unfolded_one_does(rng):
    embedder = PatchEmbedder(embedding_dim=8)
    patches = rng.uniform(0, 1, (2, 3, 17, 17, 3)).astype("float32")  # odd: stride-2 padding
    embedder.build(patches.shape)
    identity_statistics = to_numpy(embedder(patches, training=False))
    random_batch_norm_statistics(embedder, patches, rng)
    expected = to_numpy(embedder(patches, training=False))
    # The statistics matter, and the outputs depend on the patch, by far more than the tolerance.
    assert np.abs(expected - identity_statistics).max() > 100 * 1e-4
    assert np.abs(expected[0, 0] - expected[1, 2]).max() > 100 * 1e-4

    folded = PatchEmbedder(embedding_dim=8, folded_batch_norm=True)
    folded.build(patches.shape)
    assert folded.stem_bn is None and all(
        bn is None for block in folded.blocks for _, bn in block.convolutions_and_batch_norms()
    )
    folded.copy_folded_weights(embedder)
    np.testing.assert_allclose(to_numpy(folded(patches, training=False)), expected, rtol=1e-4, atol=1e-4)
    # Fewer variables: a bias per batch norm instead of its four vectors.
    assert len(folded.weights) == len(embedder.weights) - 3 * (1 + 14)

    config = folded.get_config()
    assert config["folded_batch_norm"] is True
    assert PatchEmbedder.from_config(config).get_config() == config
    with pytest.raises(ValueError, match="folded into its convolutions.*Received: training=True"):
        folded(patches, training=True)
    with pytest.raises(ValueError, match="Received: folded_batch_norm=True"):
        folded.copy_efficientnet_b0_weights(None)


@pytest.mark.parametrize("strides,expand_ratio", [(1, 1), (2, 6)])
def test_a_folded_mbconv_block_computes_what_the_unfolded_one_does(rng, strides, expand_ratio):
    arguments = dict(filters_in=8, filters_out=8, kernel_size=3, strides=strides, expand_ratio=expand_ratio)
    block = MBConvBlock(**arguments, drop_rate=0.1)
    x = rng.normal(0, 1, (2, 9, 9, 8)).astype("float32")
    block.build(x.shape)
    random_batch_norm_statistics(block, x, rng)
    folded = MBConvBlock(**arguments, drop_rate=0.1, folded_batch_norm=True)
    folded.build(x.shape)
    folded.copy_folded_weights(block)
    np.testing.assert_allclose(
        to_numpy(folded(x, training=False)), to_numpy(block(x, training=False)), rtol=1e-4, atol=1e-4
    )
    assert MBConvBlock.from_config(folded.get_config()).get_config() == folded.get_config()
    with pytest.raises(ValueError, match="Received: training=True"):
        folded(x, training=True)
    with pytest.raises(ValueError, match="Received: kernel_size=5"):
        other = MBConvBlock(**{**arguments, "kernel_size": 5})
        other.build(x.shape)
        folded.copy_folded_weights(other)
