import keras
import numpy as np

from patchpu_keras.layers import MBConvBlock, PatchEmbedder
from tests.conftest import to_numpy


def _efficientnet_cut(patch_size):
    base = keras.applications.EfficientNetB0(
        weights=None, include_top=False, input_shape=(patch_size, patch_size, 3)
    )
    return keras.Model(base.input, base.get_layer("block3b_add").output), base


def test_same_weights_and_outputs_as_keras_efficientnet_b0_blocks(rng):
    cut, base = _efficientnet_cut(32)
    embedder = PatchEmbedder(embedding_dim=8)
    embedder.build((None, 1, 32, 32, 3))
    reference_trainable = sum(int(np.prod(w.shape)) for w in cut.trainable_weights)
    ours_trainable = sum(int(np.prod(w.shape)) for w in embedder.trainable_weights)
    assert ours_trainable - (40 * 8 + 8) == reference_trainable == 65730

    # Copy EfficientNet's weights into ours, layer by layer, by name.
    pairs = [(embedder.stem_conv, "stem_conv"), (embedder.stem_bn, "stem_bn")]
    for block in embedder.blocks:
        for sub in (block.expand_conv, block.expand_bn, block.depthwise_conv, block.depthwise_bn,
                    block.se_reduce, block.se_expand, block.project_conv, block.project_bn):
            if sub is not None:
                pairs.append((sub, f"{block.name}_{sub.name}"))
    for ours, name in pairs:
        reference = base.get_layer(name)
        weights = [rng.normal(0, 0.3, w.shape).astype("float32") for w in reference.get_weights()]
        if "bn" in name:  # keep variances positive
            weights[-1] = np.abs(weights[-1]) + 0.5
        reference.set_weights(weights)
        ours.set_weights(weights)

    patches = rng.uniform(0, 1, (3, 32, 32, 3)).astype("float32")
    expected = to_numpy(cut(patches * 255.0, training=False))  # EfficientNet rescales by 1/255
    x = keras.ops.pad(patches, ((0, 0), (0, 1), (0, 1), (0, 0)))
    x = keras.activations.swish(embedder.stem_bn(embedder.stem_conv(x), training=False))
    for block in embedder.blocks:
        x = block(x, training=False)
    np.testing.assert_allclose(to_numpy(x), expected, rtol=1e-4, atol=1e-4)


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
