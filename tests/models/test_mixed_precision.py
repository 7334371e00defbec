"""Mixed precision: 16-bit compute, float32 weights, outputs, losses and metrics."""

import keras
import numpy as np
import pytest

from patchpu_keras import CAMClassifier, TrainingModel, losses
from patchpu_keras.data.pipeline import array_dataset
from patchpu_keras.metrics import MeanAveragePrecision
from patchpu_keras.optimizers import Lamb
from patchpu_keras.training.builders import resolve_jit_compile
from tests.conftest import assert_outputs_differ, calibrated_patch_model, tiny_patch_model, to_numpy

# float16 convolutions on the CPU: TensorFlow and JAX run them; so does PyTorch 2.13.
POLICIES = ["mixed_bfloat16", "mixed_float16"]
# The training step as `train` compiles it: traced with XLA on JAX (op by op is slower even for
# two steps), without on TensorFlow CPU and PyTorch.
JIT = resolve_jit_compile("auto")
# The largest difference allowed between a probability computed in 16 bits and in float32, about
# twice the largest seen on the three backends (the calibrated model, 8 random images).
TOLERANCE = {"mixed_bfloat16": 0.1, "mixed_float16": 0.01}
# An absolute tolerance cannot be 100 times smaller than the differences between images here:
# bfloat16 keeps 8 mantissa bits, so five blocks of rounding move a probability by up to 0.06
# while two images' probabilities differ by 0.14 at least (float16: 0.002). What the test can
# require instead is that the 16-bit outputs identify their image: each image's 16-bit attention
# map and label embeddings are nearer to its own float32 ones than to any other image's, by
# `MARGIN` times (measured on TensorFlow: 12 and 4 for bfloat16, 146 and 93 for float16). Outputs
# that ignore the image, or the wrong image's, fail it.
MARGIN = {"mixed_bfloat16": 2.0, "mixed_float16": 20.0}


def _assert_identifies_its_image(outputs, expected, margin):
    for key in ("attention", "label_embeddings"):
        ours = np.asarray(outputs[key], "float64").reshape(len(expected[key]), -1)
        theirs = np.asarray(expected[key], "float64").reshape(len(expected[key]), -1)
        distances = np.linalg.norm(ours[:, None] - theirs[None], axis=-1)
        own = np.diag(distances).copy()
        np.fill_diagonal(distances, np.inf)
        assert np.all(own * margin < distances.min(axis=1)), (key, own, distances.min(axis=1))


def _data(rng, num_images=8, num_labels=4):
    images = rng.integers(0, 256, (num_images, 32, 32, 3)).astype("uint8")
    observed = np.zeros((num_images, num_labels), "float32")
    observed[np.arange(num_images), np.arange(num_images) % num_labels] = 1
    full = np.maximum(observed, rng.integers(0, 2, observed.shape)).astype("float32")
    return images, observed, full


@pytest.mark.parametrize("policy", POLICIES)
def test_mixed_model_computes_in_16_bits_and_returns_float32(policy, rng, tmp_path):
    model = tiny_patch_model(dtype=policy)
    compute = policy.split("_")[1]
    assert model.dtype_policy.name == policy and model.backbone.embedder.compute_dtype == compute
    assert model.attention.compute_dtype == compute
    assert model.classifier.compute_dtype == "float32"  # the softmax over labels
    assert all(variable.dtype == "float32" for variable in model.weights)
    # The same weights as a float32 model whose outputs depend on the image.
    reference = calibrated_patch_model()
    model.set_weights(reference.get_weights())
    images, _, _ = _data(rng)
    outputs = model.predict(images, verbose=0)
    assert {key: str(value.dtype) for key, value in outputs.items()} == {
        "probabilities": "float32", "label_embeddings": "float32", "attention": "float32"
    }
    # Within 16-bit rounding of the same weights in float32.
    expected = reference.predict(images, verbose=0)
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], atol=TOLERANCE[policy])
    _assert_identifies_its_image(outputs, expected, MARGIN[policy])
    # The policy is saved with the model.
    model.save(tmp_path / "mixed.keras")
    loaded = keras.models.load_model(tmp_path / "mixed.keras")
    assert loaded.dtype_policy.name == policy and loaded.backbone.embedder.compute_dtype == compute
    assert_outputs_differ(outputs["probabilities"], 1e-4)  # compared for equality below
    np.testing.assert_array_equal(loaded.predict(images, verbose=0)["probabilities"], outputs["probabilities"])


@pytest.mark.parametrize("policy", POLICIES)
def test_mixed_training_keeps_losses_and_metrics_float32(policy, rng):
    images, observed, full = _data(rng)
    loss = losses.ROLE(1.38)  # a stateful loss: its tables stay float32
    model = TrainingModel(tiny_patch_model(dtype=policy), loss.make_state(observed))
    model.compile(
        optimizer=Lamb(1e-3, learning_rate_multipliers=loss.learning_rate_multipliers),
        loss=loss, metrics=[MeanAveragePrecision(4, capacity=8)], jit_compile=JIT,
    )
    if policy == "mixed_float16":
        # Keras wraps the optimizer for loss scaling; the project's LAMB is inside, multipliers kept.
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert isinstance(model.optimizer.inner_optimizer, Lamb)
        assert model.optimizer.inner_optimizer.learning_rate_multipliers == loss.learning_rate_multipliers
    else:
        assert isinstance(model.optimizer, Lamb)
    train = array_dataset(images, observed_labels=observed, batch_size=4)
    history = model.fit(
        train, epochs=1, validation_data=array_dataset(images, full_labels=full, batch_size=4), verbose=0
    )
    assert np.isfinite(history.history["loss"]).all() and 0 <= history.history["val_map"][0] <= 1
    assert all(variable.dtype == "float32" for variable in model.loss_state.weights if variable.path.endswith("logits"))
    assert int(to_numpy(model.optimizer.iterations)) == 2
    step_loss = model.compute_loss(images[:4], observed[:4], model(images[:4]), training=False)
    assert keras.backend.standardize_dtype(step_loss.dtype) == "float32"


def test_mixed_cam_model_returns_float32(rng):
    model = CAMClassifier.create(4, backbone="tiny", image_size=32, dtype="mixed_bfloat16")
    outputs = model.predict(_data(rng)[0], verbose=0)
    assert all(value.dtype == np.float32 for value in outputs.values())


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="exports run on TensorFlow (other backends hand the .keras file to a TensorFlow subprocess)")
@pytest.mark.parametrize("policy", POLICIES)
def test_mixed_model_exports_both_signatures(policy, rng, tmp_path):
    import tensorflow as tf

    from patchpu_keras.export import IMAGE_BYTES_INPUT, IMAGES_INPUT, IMAGES_SIGNATURE, SERVING_SIGNATURE, export_model
    from data.trees import encode

    model = tiny_patch_model(dtype=policy)
    model.save(tmp_path / "mixed.keras")
    # verify=True: the SavedModel is reloaded and checked against the model's probabilities.
    path = export_model(str(tmp_path / "mixed.keras"), str(tmp_path / "exported"))
    loaded = tf.saved_model.load(path)
    image = _data(rng)[0][0]
    floats = loaded.signatures[IMAGES_SIGNATURE](**{IMAGES_INPUT: tf.constant(image[None], tf.float32)})
    encoded = loaded.signatures[SERVING_SIGNATURE](**{IMAGE_BYTES_INPUT: tf.constant([encode(image, "PNG")])})
    for outputs in (floats, encoded):
        assert outputs["probabilities"].dtype == tf.float32 and outputs["probabilities"].shape == (1, 4)
    np.testing.assert_allclose(floats["probabilities"], encoded["probabilities"], atol=1e-6)
