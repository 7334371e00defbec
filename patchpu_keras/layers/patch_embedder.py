import keras
from keras import layers, ops

from patchpu_keras.layers.fused_batch_normalization import FusedBatchNormalization
from patchpu_keras.layers.initializers import unit_variance_scaling
from patchpu_keras.layers.rematerialization import apply_batch_norm, rematerialized_call
from patchpu_keras.layers.mb_conv_block import (
    MBConvBlock,
    check_fold_direction,
    check_inference_only,
    folded_convolution_weights,
    same_padding_for_stride_2,
)

# EfficientNet-B0's first five blocks (block1a, block2a, block2b, block3a, block3b):
# (filters_in, filters_out, kernel_size, strides, expand_ratio).
EFFICIENTNET_B0_BLOCKS = (
    (32, 16, 3, 1, 1),
    (16, 24, 3, 2, 6),
    (24, 24, 3, 1, 6),
    (24, 40, 5, 2, 6),
    (40, 40, 5, 1, 6),
)
# EfficientNet-B0 has 16 blocks; block b drops its residual branch with rate
# drop_connect_rate * b / 16.
EFFICIENTNET_B0_NUM_BLOCKS = 16


@keras.saving.register_keras_serializable(package="patchpu_keras")
class PatchEmbedder(keras.layers.Layer):
    """Embeds every patch with the first stages of EfficientNet-B0.

    The stem (3x3 convolution, 32 filters, stride 2) and the first five MBConv
    blocks of EfficientNet-B0 with its hyperparameters (squeeze-excitation 0.25,
    batch norm, swish), global average pooling and a dense projection to
    `embedding_dim`. Patches are folded into the batch axis, so one set of
    weights embeds all of them.

    Args:
        embedding_dim: int, size F of a patch embedding.
        drop_connect_rate: float, EfficientNet's drop-connect rate (0.2 in B0).
        activation: activation of the convolutions.
        folded_batch_norm: bool; if True, the embedder is inference-only: the
            stem and the blocks have no batch norms, their convolutions have a
            bias instead, which `copy_folded_weights` sets from a trained
            embedder with each batch norm folded in (see `MBConvBlock`).
        rematerialize: bool; if True, a training call keeps only the inputs of
            the stem and of each block for the backward pass and recomputes
            their activations there (`MBConvBlock(rematerialize=True)`): a
            lower peak memory for one more forward pass of the embedder, with
            the same outputs, gradients and batch norm updates.

    Call arguments:
        patches: float tensor `(batch, num_patches, p, p, channels)`, values
            scaled as the weights expect (the model's `preprocessing`: [0, 1]
            from scratch, ImageNet-normalised for EfficientNet-B0's weights).
        training: bool, for batch norm and drop-connect; a folded embedder
            refuses `training=True`.

    Returns:
        Tensor `(batch, num_patches, embedding_dim)`.

    Example:
    >>> embedder = PatchEmbedder(embedding_dim=256)
    >>> embedder(np.zeros((2, 5, 64, 64, 3))).shape
    (2, 5, 256)

    Reference:
        Jouanneau et al., VISAPP 2023, sec. 3.1.2 (patch embedding); Tan & Le,
        ICML 2019 (EfficientNet-B0).
    """

    def __init__(
        self,
        embedding_dim=256,
        drop_connect_rate=0.2,
        activation="swish",
        folded_batch_norm=False,
        rematerialize=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if embedding_dim < 1:
            raise ValueError(
                f"`embedding_dim` must be >= 1. Received: embedding_dim={embedding_dim}"
            )
        self.embedding_dim = embedding_dim
        self.drop_connect_rate = drop_connect_rate
        self.activation = activation
        self.folded_batch_norm = bool(folded_batch_norm)
        self.rematerialize = bool(rematerialize)
        init = unit_variance_scaling()
        # === Layers ===
        self.stem_conv = layers.Conv2D(
            32, 3, strides=2, padding="valid", use_bias=self.folded_batch_norm,
            kernel_initializer=init, name="stem_conv",
        )
        self.stem_bn = None if self.folded_batch_norm else FusedBatchNormalization(name="stem_bn")
        self.blocks = [
            MBConvBlock(
                filters_in,
                filters_out,
                kernel_size=kernel_size,
                strides=strides,
                expand_ratio=expand_ratio,
                se_ratio=0.25,
                drop_rate=drop_connect_rate * index / EFFICIENTNET_B0_NUM_BLOCKS,
                activation=activation,
                folded_batch_norm=self.folded_batch_norm,
                rematerialize=self.rematerialize,
                name=name,
            )
            for index, (name, (filters_in, filters_out, kernel_size, strides, expand_ratio))
            in enumerate(
                zip(
                    ("block1a", "block2a", "block2b", "block3a", "block3b"),
                    EFFICIENTNET_B0_BLOCKS,
                )
            )
        ]
        self.projection = layers.Dense(embedding_dim, kernel_initializer=init, name="projection")

    def build(self, input_shape):
        patch_size, channels = input_shape[-2], input_shape[-1]
        padded = patch_size + sum(same_padding_for_stride_2(patch_size, 3))
        self.stem_conv.build((None, padded, padded, channels))
        shape = self.stem_conv.compute_output_shape((None, padded, padded, channels))
        if self.stem_bn is not None:
            self.stem_bn.build(shape)
        for block in self.blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)
        self.projection.build((None, shape[-1]))

    def call(self, patches, training=None):
        if self.folded_batch_norm:
            check_inference_only(self, training)
        shape = ops.shape(patches)
        patch_size, channels = patches.shape[-2], patches.shape[-1]
        x = ops.reshape(patches, (-1, patch_size, patch_size, channels))
        if self.rematerialize and training:
            x = rematerialized_call(lambda x, statistics: self._stem(x, training, statistics), x)
        else:
            x = self._stem(x, training)
        for block in self.blocks:
            x = block(x, training=training)
        x = ops.mean(x, axis=(1, 2))
        x = self.projection(x)
        return ops.reshape(x, (shape[0], shape[1], self.embedding_dim))

    def _stem(self, x, training, statistics=None):
        """The stem: 3x3 stride-2 convolution, batch norm and activation of `(patches, p, p, c)`."""
        pad = same_padding_for_stride_2(x.shape[1], 3)
        x = ops.pad(x, ((0, 0), pad, pad, (0, 0)))
        x = self.stem_conv(x)
        x = apply_batch_norm(self.stem_bn, x, training, statistics)
        return keras.activations.get(self.activation)(x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.embedding_dim)

    def efficientnet_b0_layer_names(self):
        """`(sublayer, name)` pairs: each convolution and batch norm of the embedder
        with the name of its counterpart in `keras.applications.EfficientNetB0`."""
        pairs = [(self.stem_conv, "stem_conv")]
        if self.stem_bn is not None:
            pairs.append((self.stem_bn, "stem_bn"))
        for block in self.blocks:
            for sub in (
                block.expand_conv, block.expand_bn, block.depthwise_conv, block.depthwise_bn,
                block.se_reduce, block.se_expand, block.project_conv, block.project_bn,
            ):
                if sub is not None:
                    pairs.append((sub, f"{block.name}_{sub.name}"))
        return pairs

    def copy_efficientnet_b0_weights(self, efficientnet):
        """Copies the weights of an `EfficientNetB0` up to `block3b_add` (not the projection).

        Args:
            efficientnet: a built `keras.applications.EfficientNetB0` (any input
                size, with or without top).
        """
        if not self.built:
            raise ValueError(
                "Build the embedder before copying weights into it. Received: built=False"
            )
        if self.folded_batch_norm:
            raise ValueError(
                "A folded embedder has no batch norms to copy EfficientNet-B0's into: copy them "
                "into an unfolded embedder, then fold it. Received: folded_batch_norm=True"
            )
        for sublayer, name in self.efficientnet_b0_layer_names():
            weights = efficientnet.get_layer(name).get_weights()
            expected = [tuple(w.shape) for w in sublayer.get_weights()]
            if [tuple(w.shape) for w in weights] != expected:
                raise ValueError(
                    f"EfficientNet-B0 layer {name!r} does not match the embedder's "
                    f"(shapes {expected}). Received: shapes {[tuple(w.shape) for w in weights]}"
                )
            sublayer.set_weights(weights)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "embedding_dim": self.embedding_dim,
                "drop_connect_rate": self.drop_connect_rate,
                "activation": self.activation,
                "folded_batch_norm": self.folded_batch_norm,
                "rematerialize": self.rematerialize,
            }
        )
        return config

    def copy_folded_weights(self, source):
        """Sets this folded embedder's weights from `source`, each batch norm folded into its convolution.

        Args:
            source: a built `PatchEmbedder` with the same `embedding_dim` and
                `folded_batch_norm=False` (a trained embedder).
        """
        check_fold_direction("embedder", self, source)
        if not (self.built and source.built):
            raise ValueError(
                "Build both embedders before folding weights. "
                f"Received: built={self.built} (target), {source.built} (source)"
            )
        self.stem_conv.set_weights(folded_convolution_weights(source.stem_conv, source.stem_bn))
        for block, source_block in zip(self.blocks, source.blocks):
            block.copy_folded_weights(source_block)
        self.projection.set_weights(source.projection.get_weights())
