import keras
import numpy as np
from keras import layers, ops

from patchpu_keras.layers.fused_batch_normalization import FusedBatchNormalization
from patchpu_keras.layers.initializers import unit_variance_scaling
from patchpu_keras.layers.rematerialization import apply_batch_norm, rematerialized_call


def same_padding_for_stride_2(size, kernel_size):
    """EfficientNet's `correct_pad`: padding that centres a stride-2 kernel.

    It is the padding of `padding="same"` at stride 2 on every backend (total
    `kernel_size - 2 + size % 2`, the extra pixel at the end), so the layers
    use `"same"`, which pads inside the convolution instead of copying the
    input into a padded tensor.
    """
    adjust = 1 - size % 2
    return (kernel_size // 2 - adjust, kernel_size // 2)


def internal_data_format():
    """The layout MBConv blocks compute in on the current backend (see `MBConvBlock`)."""
    return "channels_first" if keras.backend.backend() == "torch" else "channels_last"


def convolutions_as_products():
    """Whether MBConv blocks write their convolutions as matrix products and sums (JAX).

    XLA's CPU convolutions are slow for these shapes: a 1x1 convolution as a
    matrix product and a depthwise convolution as k * k shifted, scaled copies
    (which XLA fuses into one loop) trained an MBConv block 8 and 13 times
    faster than `lax.conv_general_dilated` (docs/performance.md).
    """
    return keras.backend.backend() == "jax"


def depthwise_as_shifted_sums(x, kernel, strides, kernel_size):
    """A channels-last depthwise convolution with "same" padding as a sum of shifted copies."""
    height, width = x.shape[1], x.shape[2]
    if strides == 2:
        pad_h = same_padding_for_stride_2(height, kernel_size)
        pad_w = same_padding_for_stride_2(width, kernel_size)
    else:
        pad_h = pad_w = (kernel_size // 2, kernel_size // 2)
    out_h, out_w = (height + strides - 1) // strides, (width + strides - 1) // strides
    x = ops.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
    total = None
    for i in range(kernel_size):
        for j in range(kernel_size):
            window = x[:, i : i + strides * (out_h - 1) + 1 : strides,
                       j : j + strides * (out_w - 1) + 1 : strides, :]
            term = window * kernel[i, j, :, 0]
            total = term if total is None else total + term
    return total


def folded_convolution_weights(conv, batch_norm):
    """The kernel and bias of `conv` followed by `batch_norm` in inference, as one convolution.

    In inference a batch norm is an affine map per channel, `x * scale + shift`
    with `scale = gamma / sqrt(moving_variance + epsilon)` and `shift = beta -
    moving_mean * scale`, so it folds into the bias-free convolution before it:
    the kernel's output channels are multiplied by `scale` and the bias is
    `shift`. The output channel of a `DepthwiseConv2D` kernel `(kh, kw, in, 1)`
    is its `in` axis. Computed in float64, returned as float32 numpy arrays.

    Args:
        conv: a built bias-free `Conv2D` or `DepthwiseConv2D`.
        batch_norm: the built `BatchNormalization` applied to its output.

    Returns:
        `[kernel, bias]`, the weights of the same convolution with `use_bias=True`.
    """
    if conv.use_bias:
        raise ValueError(
            f"Only a bias-free convolution folds its batch norm. Received: {conv.name}.use_bias=True"
        )
    kernel = np.asarray(ops.convert_to_numpy(conv.kernel), "float64")
    channels = kernel.shape[2] if isinstance(conv, layers.DepthwiseConv2D) else kernel.shape[3]
    gamma, beta = np.ones(channels), np.zeros(channels)
    if batch_norm.scale:
        gamma = ops.convert_to_numpy(batch_norm.gamma).astype("float64")
    if batch_norm.center:
        beta = ops.convert_to_numpy(batch_norm.beta).astype("float64")
    mean = ops.convert_to_numpy(batch_norm.moving_mean).astype("float64")
    variance = ops.convert_to_numpy(batch_norm.moving_variance).astype("float64")
    scale = gamma / np.sqrt(variance + batch_norm.epsilon)
    if isinstance(conv, layers.DepthwiseConv2D):
        kernel = kernel * scale[None, None, :, None]
    else:
        kernel = kernel * scale
    bias = beta - mean * scale
    return [kernel.astype("float32"), bias.astype("float32")]


def check_inference_only(layer, training):
    """Refuses a training call of a layer whose batch norms are folded."""
    if training:
        raise ValueError(
            f"{layer.name} has its batch norms folded into its convolutions, which is exact in "
            "inference only (moving statistics, no batch statistics to learn from): train the "
            "model it was folded from, and fold it again after training. "
            f"Received: training={training}"
        )


def check_fold_direction(kind, target, source):
    """Refuses folding weights other than from an unfolded layer (`source`) into a folded one."""
    if not target.folded_batch_norm or source.folded_batch_norm:
        raise ValueError(
            f"Folded weights go from an unfolded {kind} into a folded one. Received: "
            f"folded_batch_norm={target.folded_batch_norm} (target), "
            f"{source.folded_batch_norm} (source)"
        )


@keras.saving.register_keras_serializable(package="patchpu_keras")
class MBConvBlock(keras.layers.Layer):
    """Mobile inverted bottleneck block with squeeze-and-excitation.

    The EfficientNet block: 1x1 expansion (skipped when `expand_ratio == 1`),
    depthwise convolution, squeeze-and-excitation, 1x1 projection, each
    convolution followed by batch normalisation, swish activations, and an
    identity shortcut with drop-connect when the shapes allow it. Stride-2 blocks
    pad like Keras' EfficientNet (`correct_pad`), so a block with the same
    hyperparameters has the same weights and output shape as the block in
    `keras.applications.EfficientNetB0`.

    Args:
        filters_in: int, input channels.
        filters_out: int, output channels.
        kernel_size: int, depthwise kernel size.
        strides: 1 or 2.
        expand_ratio: int, channel expansion of the inner representation.
        se_ratio: float in (0, 1], squeeze ratio relative to `filters_in`; 0
            disables squeeze-and-excitation.
        drop_rate: float, drop-connect rate on the residual branch.
        activation: activation of the convolutions.
        folded_batch_norm: bool; if True, the block is inference-only: it has
            no batch norms, and its expansion, depthwise and projection
            convolutions have a bias instead, which `copy_folded_weights` sets
            from a trained block with each batch norm folded in. Same outputs
            up to float rounding, with one pass less over each activation.
        rematerialize: bool; if True, a training call keeps only the block's
            input for the backward pass and recomputes the block's
            activations there (`keras.remat`), which lowers the peak memory
            of a training step for one more forward pass of the block. Same
            outputs, gradients and batch norm updates (`rematerialized_call`);
            no effect in inference.

    Call arguments:
        inputs: tensor `(batch, height, width, filters_in)`.
        training: bool, for batch norm and drop-connect; a folded block
            refuses `training=True`.

    Returns:
        Tensor `(batch, height / strides, width / strides, filters_out)`.

    Example:
    >>> block = MBConvBlock(24, 40, kernel_size=5, strides=2, expand_ratio=6)
    >>> block(np.zeros((2, 16, 16, 24))).shape
    (2, 8, 8, 40)

    Reference:
        Tan & Le, "EfficientNet: Rethinking Model Scaling for CNNs", ICML 2019;
        used as the patch embedder in Jouanneau et al., VISAPP 2023, sec. 3.1.2.
    """

    def __init__(
        self,
        filters_in,
        filters_out,
        kernel_size=3,
        strides=1,
        expand_ratio=1,
        se_ratio=0.25,
        drop_rate=0.0,
        activation="swish",
        folded_batch_norm=False,
        rematerialize=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if strides not in (1, 2):
            raise ValueError(f"`strides` must be 1 or 2. Received: strides={strides}")
        if not 0 <= se_ratio <= 1:
            raise ValueError(f"`se_ratio` must be in [0, 1]. Received: se_ratio={se_ratio}")
        self.filters_in = filters_in
        self.filters_out = filters_out
        self.kernel_size = kernel_size
        self.strides = strides
        self.expand_ratio = expand_ratio
        self.se_ratio = se_ratio
        self.drop_rate = drop_rate
        self.activation = activation
        self.folded_batch_norm = bool(folded_batch_norm)
        self.rematerialize = bool(rematerialize)

        filters = filters_in * expand_ratio
        init = unit_variance_scaling()
        # Inputs and outputs are channels-last on every backend. Inside, the
        # block runs in the layout its backend's convolutions take without a
        # copy: on PyTorch, Keras copies a channels-last tensor into
        # channels-first and back into channels-last memory before every
        # convolution, while a channels-first view of channels-last memory
        # (a transpose, no copy) goes to the convolution as it is. The weights
        # are the same in both layouts.
        self._data_format = internal_data_format()
        self._as_products = convolutions_as_products()
        channel_axis = 1 if self._data_format == "channels_first" else -1
        conv_args = dict(data_format=self._data_format, kernel_initializer=init)
        # Folded, each batch norm is the bias of the convolution before it.
        use_bias = self.folded_batch_norm

        def batch_norm(name):
            if self.folded_batch_norm:
                return None
            return FusedBatchNormalization(axis=channel_axis, name=name)

        # === Layers ===
        self.expand_conv = None
        self.expand_bn = None
        if expand_ratio != 1:
            self.expand_conv = layers.Conv2D(
                filters, 1, padding="same", use_bias=use_bias, name="expand_conv", **conv_args
            )
            self.expand_bn = batch_norm("expand_bn")
        self.depthwise_conv = layers.DepthwiseConv2D(
            kernel_size,
            strides=strides,
            padding="same",
            use_bias=use_bias,
            depthwise_initializer=init,
            data_format=self._data_format,
            name="dwconv",
        )
        self.depthwise_bn = batch_norm("bn")
        self.se_reduce = None
        self.se_expand = None
        if 0 < se_ratio <= 1:
            filters_se = max(1, int(filters_in * se_ratio))
            self.se_reduce = layers.Conv2D(
                filters_se, 1, padding="same", activation=activation, name="se_reduce",
                **conv_args,
            )
            self.se_expand = layers.Conv2D(
                filters, 1, padding="same", activation="sigmoid", name="se_expand", **conv_args
            )
        self.project_conv = layers.Conv2D(
            filters_out, 1, padding="same", use_bias=use_bias, name="project_conv", **conv_args
        )
        self.project_bn = batch_norm("project_bn")
        self.use_shortcut = strides == 1 and filters_in == filters_out
        self.dropout = None
        if self.use_shortcut and drop_rate > 0:
            self.dropout = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name="drop")

    def _inner(self, shape):
        """A channels-last shape in the internal layout."""
        if self._data_format == "channels_first":
            return (shape[0], shape[3], shape[1], shape[2])
        return tuple(shape)

    def build(self, input_shape):
        shape = tuple(input_shape)
        filters = self.filters_in * self.expand_ratio
        if self.expand_conv is not None:
            self.expand_conv.build(self._inner(shape))
            shape = shape[:-1] + (filters,)
            if self.expand_bn is not None:
                self.expand_bn.build(self._inner(shape))
        self.depthwise_conv.build(self._inner(shape))
        inner = self.compute_output_shape(shape)[:-1] + (filters,)
        if self.depthwise_bn is not None:
            self.depthwise_bn.build(self._inner(inner))
        if self.se_reduce is not None:
            self.se_reduce.build(self._inner((inner[0], 1, 1, filters)))
            self.se_expand.build(self._inner((inner[0], 1, 1, self.se_reduce.filters)))
        self.project_conv.build(self._inner(inner))
        if self.project_bn is not None:
            self.project_bn.build(self._inner(inner[:-1] + (self.filters_out,)))

    def call(self, inputs, training=None):
        if self.folded_batch_norm:
            check_inference_only(self, training)
        if self.rematerialize and training:
            x = rematerialized_call(lambda x, statistics: self._branch(x, training, statistics), inputs)
        else:
            x = self._branch(inputs, training)
        if self.use_shortcut:
            if self.dropout is not None:
                x = self.dropout(x, training=training)
            x = x + inputs
        return x

    def _branch(self, inputs, training, statistics=None):
        """The block without its shortcut: expansion, depthwise, squeeze-excitation, projection."""
        channels_first = self._data_format == "channels_first"
        x = ops.transpose(inputs, (0, 3, 1, 2)) if channels_first else inputs
        if self.expand_conv is not None:
            x = self._pointwise(self.expand_conv, x)
            x = apply_batch_norm(self.expand_bn, x, training, statistics)
            x = keras.activations.get(self.activation)(x)
        if self._as_products:
            kernel = ops.cast(self.depthwise_conv.kernel, x.dtype)
            x = depthwise_as_shifted_sums(x, kernel, self.strides, self.kernel_size)
            if self.depthwise_conv.use_bias:
                x = x + ops.cast(self.depthwise_conv.bias, x.dtype)
        else:
            x = self.depthwise_conv(x)
        x = apply_batch_norm(self.depthwise_bn, x, training, statistics)
        x = keras.activations.get(self.activation)(x)
        if self.se_reduce is not None:
            spatial = (2, 3) if channels_first else (1, 2)
            squeeze = ops.mean(x, axis=spatial, keepdims=True)
            squeeze = self._pointwise(self.se_reduce, squeeze)
            x = x * self._pointwise(self.se_expand, squeeze)
        x = self._pointwise(self.project_conv, x)
        x = apply_batch_norm(self.project_bn, x, training, statistics)
        if channels_first:
            x = ops.transpose(x, (0, 2, 3, 1))
        return x

    def _pointwise(self, conv, x):
        """`conv(x)` for a 1x1 `Conv2D`; a matrix product on channels when `_as_products`."""
        if not self._as_products:
            return conv(x)
        x = ops.matmul(x, ops.cast(conv.kernel, x.dtype)[0, 0])
        if conv.use_bias:
            x = x + ops.cast(conv.bias, x.dtype)
        return keras.activations.get(conv.activation)(x)

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        if self.strides == 2:
            height = None if height is None else (height + 1) // 2
            width = None if width is None else (width + 1) // 2
        return (batch, height, width, self.filters_out)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters_in": self.filters_in,
                "filters_out": self.filters_out,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "expand_ratio": self.expand_ratio,
                "se_ratio": self.se_ratio,
                "drop_rate": self.drop_rate,
                "activation": self.activation,
                "folded_batch_norm": self.folded_batch_norm,
                "rematerialize": self.rematerialize,
            }
        )
        return config

    def convolutions_and_batch_norms(self):
        """`(convolution, batch norm)` pairs of the block; the batch norm is None when folded."""
        pairs = [(self.depthwise_conv, self.depthwise_bn), (self.project_conv, self.project_bn)]
        if self.expand_conv is not None:
            pairs.insert(0, (self.expand_conv, self.expand_bn))
        return pairs

    def copy_folded_weights(self, source):
        """Sets this folded block's weights from `source`, each batch norm folded into its convolution.

        Args:
            source: a built `MBConvBlock` with the same hyperparameters and
                `folded_batch_norm=False` (a trained block).
        """
        check_fold_direction("block", self, source)
        ours, theirs = self.get_config(), source.get_config()
        for key in ("filters_in", "filters_out", "kernel_size", "strides", "expand_ratio", "se_ratio"):
            if ours[key] != theirs[key]:
                raise ValueError(
                    f"The source block's {key} differs from this block's ({ours[key]}). "
                    f"Received: {key}={theirs[key]}"
                )
        for (conv, _), (source_conv, source_bn) in zip(
            self.convolutions_and_batch_norms(), source.convolutions_and_batch_norms()
        ):
            conv.set_weights(folded_convolution_weights(source_conv, source_bn))
        if self.se_reduce is not None:
            self.se_reduce.set_weights(source.se_reduce.get_weights())
            self.se_expand.set_weights(source.se_expand.get_weights())
