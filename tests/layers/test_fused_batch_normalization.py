import keras
import numpy as np

from patchpu_keras.layers.fused_batch_normalization import FusedBatchNormalization
from tests.conftest import to_numpy


def _loss_and_gradients(layer, x, upstream):
    """Outputs and d(sum(outputs * upstream)) / d(x, gamma, beta) in training, on any backend."""
    upstream = keras.ops.convert_to_tensor(upstream)
    variables = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def loss(x, trainable):
        y, new_non_trainable = layer.stateless_call(trainable, non_trainable, x, training=True)
        return keras.ops.sum(y * upstream), (y, new_non_trainable)

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        (_, (y, stats)), (dx, dvars) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(x, variables)
        return [y, dx, *dvars, *stats]
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch([x, *variables])
            value, (y, stats) = loss(x, variables)
        return [y, *tape.gradient(value, [x, *variables]), *stats]
    import torch

    x = torch.tensor(x, requires_grad=True)
    variables = [v.detach().clone().requires_grad_(True) for v in variables]
    value, (y, stats) = loss(x, variables)
    value.backward()
    return [t.detach() for t in (y, x.grad, *(v.grad for v in variables), *stats)]


def test_same_outputs_gradients_and_moving_statistics_as_keras_batch_normalization(rng):
    x = rng.normal(0.7, 2.0, (4, 6, 5, 8)).astype("float32")
    upstream = rng.normal(0, 1, x.shape).astype("float32")
    weights = [rng.normal(1, 0.3, 8), rng.normal(0, 0.3, 8), rng.normal(0, 0.3, 8), rng.uniform(0.5, 2, 8)]
    weights = [w.astype("float32") for w in weights]
    results = []
    for layer in (keras.layers.BatchNormalization(momentum=0.9), FusedBatchNormalization(momentum=0.9)):
        layer.build(x.shape)
        layer.set_weights(weights)
        results.append([to_numpy(t) for t in _loss_and_gradients(layer, x, upstream)])
    for name, expected, ours in zip(("y", "dx", "dgamma", "dbeta", "mean", "variance"), *results):
        np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4, err_msg=name)


def test_inference_and_config_are_keras_batch_normalization(rng):
    x = rng.normal(0, 1, (2, 3, 3, 4)).astype("float32")
    reference, ours = keras.layers.BatchNormalization(), FusedBatchNormalization(epsilon=1e-3)
    for layer in (reference, ours):
        layer.build(x.shape)
    ours.set_weights([rng.normal(1, 0.3, 4).astype("float32") for _ in range(4)])
    reference.set_weights(ours.get_weights())
    np.testing.assert_allclose(to_numpy(ours(x)), to_numpy(reference(x)), rtol=1e-6, atol=1e-6)
    assert FusedBatchNormalization.from_config(ours.get_config()).get_config() == ours.get_config()
