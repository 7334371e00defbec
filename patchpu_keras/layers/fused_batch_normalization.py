import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="patchpu_keras")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Batch normalisation whose training step has a closed-form gradient.

    Computes exactly what `keras.layers.BatchNormalization` computes, with the
    same weights, config and moving-statistics update. In training, the
    gradient is the closed form a fused kernel uses (Ioffe & Szegedy, sec. 3),
    written with `keras.ops`:

        dbeta = sum(dy)
        dgamma = sum(dy * x_hat)
        dx = gamma / sqrt(var + eps) * (dy - (dbeta + x_hat * dgamma) / m)

    instead of the gradient autodiff derives from the moments and the
    normalisation, which on TensorFlow without XLA materialises a dozen
    tensors as large as the input (broadcasts of the statistics' gradients,
    products, partial sums) and was two thirds of a patch-embedder training
    step. The forward pass keeps only the input for the backward pass. Masks,
    renorm and synchronized statistics fall back to the Keras layer.

    Args:
        Those of `keras.layers.BatchNormalization`.

    Call arguments:
        inputs: tensor of any rank.
        training: bool, normalise with batch statistics and update the moving
            ones.
        mask: optional, as in `keras.layers.BatchNormalization`.

    Returns:
        Tensor of the input's shape.

    Example:
    >>> bn = FusedBatchNormalization()
    >>> bn(np.ones((2, 4, 4, 3)), training=True).shape
    (2, 4, 4, 3)

    Reference:
        Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network
        Training by Reducing Internal Covariate Shift", ICML 2015, sec. 3
        (the gradient of the batch normalising transform).
    """

    def call(self, inputs, training=None, mask=None):
        if not self.defers_update(training, mask):
            return super().call(inputs, training=training, mask=mask)
        outputs, statistics = self.normalize_with_statistics(inputs)
        self.update_moving_statistics(statistics)
        return outputs

    def defers_update(self, training, mask=None):
        """Whether a call normalises with the closed-form path, whose update can be deferred.

        True in training unless masks, renorm, synchronized statistics or a
        missing `center` / `scale` send the call to the Keras layer.
        """
        return bool(
            training and self.trainable and mask is None and not self.renorm
            and not self.synchronized and self.center and self.scale
        )

    def normalize_with_statistics(self, inputs):
        """Training-mode outputs and the batch statistics, without updating the moving ones.

        The pure half of a training call (`defers_update(True)` must hold):
        `call` is this followed by `update_moving_statistics`. A function that
        runs twice per step, e.g. a rematerialised block whose forward pass is
        recomputed for the backward pass, calls this inside and updates the
        moving statistics once, outside.

        Returns:
            `(outputs, (mean, variance))`, the statistics per channel, float32
            at least, carrying no gradient.
        """
        # Statistics in float32 at least, as the Keras layer does.
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        axes = tuple(self._reduction_axes)
        broadcast = [1] * len(x.shape)
        broadcast[self.axis] = x.shape[self.axis]
        # Entries per channel; a dimension unknown when traced (the batch of a tf.data
        # pipeline) is read at run time.
        static = [x.shape[axis] for axis in axes]
        if None in static:
            dynamic = ops.shape(x)
            count = ops.cast(math.prod(d for d in static if d is not None), x.dtype)
            for axis, dim in zip(axes, static):
                if dim is None:
                    count = count * ops.cast(dynamic[axis], x.dtype)
        else:
            count = math.prod(static)
        # The gradient of the statistics is part of the closed form below.
        statistics_input = ops.stop_gradient(x)
        mean = _sum_over(statistics_input, axes) / count
        variance = _sum_over(ops.square(statistics_input - mean), axes) / count
        gamma = ops.reshape(ops.cast(self.gamma, x.dtype), broadcast)
        beta = ops.reshape(ops.cast(self.beta, x.dtype), broadcast)
        outputs = _normalize(x, mean, variance, gamma, beta, self.epsilon, axes, count)
        statistics = (ops.reshape(mean, (-1,)), ops.reshape(variance, (-1,)))
        return ops.cast(outputs, self.compute_dtype), statistics

    def update_moving_statistics(self, statistics):
        """Moves the moving mean and variance towards `statistics`, `(mean, variance)` of a batch."""
        mean, variance = statistics
        moving_mean = ops.cast(self.moving_mean, mean.dtype)
        moving_variance = ops.cast(self.moving_variance, variance.dtype)
        self.moving_mean.assign(moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            moving_variance * self.momentum + variance * (1.0 - self.momentum)
        )


def _normalize(x, mean, variance, gamma, beta, epsilon, axes, count):
    """`gamma * (x - mean) / sqrt(variance + epsilon) + beta` with batch statistics' gradient."""

    @ops.custom_gradient
    def normalize(x, mean, variance, gamma, beta):
        inverse_std = ops.rsqrt(variance + epsilon)
        scale = gamma * inverse_std
        outputs = x * scale + (beta - mean * scale)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            centered = x - mean
            grad_beta = _sum_over(upstream, axes)
            grad_gamma = _sum_over(upstream * centered, axes) * inverse_std
            # dx = scale * (dy - grad_beta / m - x_hat * grad_gamma / m), x_hat = centered * inverse_std
            centered_factor = -scale * inverse_std * grad_gamma / count
            grad_x = upstream * scale + centered * centered_factor - scale * grad_beta / count
            return (
                grad_x,
                ops.zeros_like(mean),
                ops.zeros_like(variance),
                ops.reshape(grad_gamma, ops.shape(gamma)),
                ops.reshape(grad_beta, ops.shape(beta)),
            )

        return outputs, grad

    return normalize(x, mean, variance, gamma, beta)


def _sum_over(x, axes):
    """`ops.sum(x, axes, keepdims=True)`; over all axes but the last as a product with ones.

    TensorFlow's CPU reduction over leading axes reads about ten times slower
    than its matrix product (oneDNN) reads the same bytes.
    """
    rank = len(x.shape)
    if tuple(axes) != tuple(range(rank - 1)):
        return ops.sum(x, axis=axes, keepdims=True)
    channels = x.shape[-1]
    rows = ops.reshape(x, (-1, channels))
    ones = ops.ones((1, ops.shape(rows)[0]), dtype=x.dtype)
    return ops.reshape(ops.matmul(ones, rows), (1,) * (rank - 1) + (channels,))
