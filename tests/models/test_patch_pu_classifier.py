import os

import keras
import numpy as np
import pytest

from patchpu_keras import PatchPUClassifier, losses
from patchpu_keras.metrics import MeanAveragePrecision, mean_average_precision_score
from tests.conftest import (
    assert_outputs_differ, calibrated_patch_model, calibration_images, smallest_pairwise_difference,
    tiny_patch_model, to_numpy,
)

# The tolerance of the comparisons below, and what it is as an absolute bound on a probability.
RTOL, ATOL = 1e-5, 1e-6
TOLERANCE = ATOL + RTOL


def _images(rng, n=4, size=32, channels=3):
    return rng.integers(0, 256, (n, size, size, channels)).astype("uint8")


def _single_positive(rng, n=4, num_labels=4):
    y = np.zeros((n, num_labels), "float32")
    y[np.arange(n), rng.integers(0, num_labels, n)] = 1
    return y


def test_parameter_counts_match_the_paper():
    # Paper 4.3.1: about 250K parameters with L = 80 (COCO); 220K with L = 20 (VOC).
    assert PatchPUClassifier.create(80, image_size=640).count_params() == 251682
    assert PatchPUClassifier.create(20, image_size=640).count_params() == 220962
    assert PatchPUClassifier.create(20, image_size=640).num_patches == 129


def test_calibrated_model_outputs_depend_on_the_image():
    # Why the comparisons in tests/models run on the calibrated model: fresh weights give
    # every image the same probabilities, so any two ways of computing them agree.
    images = calibration_images()
    fresh = to_numpy(tiny_patch_model()(images)["probabilities"])
    assert smallest_pairwise_difference(fresh) < 1e-5
    calibrated = to_numpy(calibrated_patch_model()(images)["probabilities"])
    assert_outputs_differ(calibrated, 1e-4)
    assert 0.0 < calibrated.min() and calibrated.max() < 0.99  # not saturated


def _random_alpha(rng, images):
    # Random, not opaque: a model that blended or kept the alpha would then differ.
    return np.concatenate([images, rng.integers(0, 256, images.shape[:-1] + (1,)).astype(images.dtype)], axis=-1)


def test_outputs_compose_the_layers(calibrated_model, rng):
    model = calibrated_model()
    images = _images(rng)
    outputs = {k: to_numpy(v) for k, v in model(images, training=False).items()}
    assert outputs["probabilities"].shape == (4, 4)
    assert outputs["label_embeddings"].shape == (4, 4, 16)
    assert outputs["attention"].shape == (4, 4, 5)
    assert_outputs_differ(outputs["probabilities"], TOLERANCE)
    patches = model.backbone.patches(images.astype("float32") / 255.0)
    embeddings, attention = model.attention(model.backbone.embedder(patches, training=False))
    np.testing.assert_allclose(outputs["attention"], to_numpy(attention), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs["probabilities"], to_numpy(model.classifier(embeddings)), rtol=1e-5, atol=1e-6)
    assert np.all((outputs["probabilities"] > 0) & (outputs["probabilities"] < 1))


def test_input_dtype_channels_and_size_are_normalized(calibrated_model, rng):
    model = calibrated_model()
    gray = _images(rng, channels=1)
    rgb = np.repeat(gray, 3, axis=-1)
    reference = to_numpy(model(rgb)["probabilities"])
    assert_outputs_differ(reference, TOLERANCE)
    for variant in (gray, _random_alpha(rng, gray), rgb.astype("float32"), rgb.astype("float64")):
        np.testing.assert_allclose(to_numpy(model(variant)["probabilities"]), reference, rtol=RTOL, atol=ATOL)
    color = _images(rng)
    expected = to_numpy(model(color)["probabilities"])
    assert_outputs_differ(expected, TOLERANCE)
    np.testing.assert_allclose(
        to_numpy(model(_random_alpha(rng, color))["probabilities"]), expected, rtol=RTOL, atol=ATOL
    )
    # Smaller than a patch: resized up inside the model, same as resizing first.
    small = rng.integers(0, 256, (4, 8, 8, 3)).astype("float32")
    resized = to_numpy(model(keras.ops.image.resize(small, (32, 32)))["probabilities"])
    assert_outputs_differ(resized, TOLERANCE)
    np.testing.assert_allclose(to_numpy(model(small)["probabilities"]), resized, rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="Received: images.shape"):
        model(np.zeros((1, 32, 32, 5), "float32"))


def test_compute_loss_uses_the_label_embeddings(tiny_model, rng):
    model = tiny_model()
    model.compile(loss=losses.WeakNegative())
    images, observed = _images(rng), _single_positive(rng)
    outputs = model(images, training=False)
    expected = to_numpy(losses.weak_negative(observed, outputs["probabilities"], outputs["label_embeddings"]))
    got = to_numpy(model.compute_loss(images, observed, outputs, training=False))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_two_step_fit_then_save_and_reload(calibrated_model, rng, tmp_path):
    model = calibrated_model(label_names=["wood", "metal", "glass", "stone"])
    model.compile(
        optimizer=keras.optimizers.Lamb(1e-3, weight_decay=1e-4),
        loss=losses.WeakNegative(),
        metrics=[MeanAveragePrecision(4, capacity=16)],
        jit_compile=keras.backend.backend() == "jax",
    )
    images, observed = _images(rng), _single_positive(rng)
    full = np.maximum(observed, rng.integers(0, 2, (4, 4))).astype("float32")
    before = [to_numpy(w).copy() for w in model.trainable_weights]
    history = model.fit(
        images, observed, batch_size=2, epochs=1, verbose=0,
        validation_data=(images, {"observed_labels": 2 * full - 1, "full_labels": full}),
    )
    assert int(to_numpy(model.optimizer.iterations)) == 2
    assert np.isfinite(history.history["loss"][0])
    outputs = model.predict(images, verbose=0)
    assert_outputs_differ(outputs["probabilities"], 1e-6 + 1e-6)
    assert history.history["val_map"][0] == pytest.approx(
        mean_average_precision_score(full, outputs["probabilities"]), abs=1e-5
    )
    changed = [not np.allclose(b, to_numpy(w)) for b, w in zip(before, model.trainable_weights)]
    assert all(changed)

    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is PatchPUClassifier
    assert loaded.label_names == ["wood", "metal", "glass", "stone"]
    assert isinstance(loaded.loss, losses.WeakNegative)
    for key, value in loaded.predict(images, verbose=0).items():
        np.testing.assert_allclose(value, outputs[key], rtol=1e-6, atol=1e-6)


def test_bad_labels_and_images_raise_clear_errors(tiny_model, rng):
    model = tiny_model()
    model.compile(loss=losses.AssumeNegative())
    images = _images(rng)
    with pytest.raises(ValueError, match=r"must have shape \(num_images, 4\). Received: shape=\(4, 3\)"):
        model.fit(images, np.zeros((4, 3), "float32"), verbose=0)
    bad = _single_positive(rng)
    bad[2, 1] = 2
    with pytest.raises(ValueError, match=r"row 2, column 1. Received: value=2.0"):
        model.fit(images, bad, verbose=0)
    nan_images = images.astype("float32")
    nan_images[3, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="image 3 holds 1 NaN"):
        model.predict(nan_images, verbose=0)
    with pytest.raises(ValueError, match=r"`observed_labels` must have 4 columns"):
        model.compute_loss(images, np.zeros((4, 5), "float32"), model(images))


def test_config_round_trip(tiny_model):
    model = tiny_model(label_names=list("abcd"), max_patches_per_resolution=2, seed=3)
    clone = PatchPUClassifier.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    with pytest.raises(ValueError, match="Received: label_names"):
        PatchPUClassifier.create(3, label_names=["a", "a", "b"])
    model = tiny_model(
        attention_score_scale=0.5, attention_learn_temperature=True, codebook_init_mode="fan_in"
    )
    clone = PatchPUClassifier.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.attention.get_config()["score_scale"] == 0.5
    assert clone.attention.temperature is not None


def test_a_config_without_attention_arguments_is_the_paper_exact_model(tiny_model):
    # Models saved before the attention arguments existed keep computing eq. (1) as written.
    config = tiny_model(attention_learn_temperature=True).get_config()
    for key in ("attention_score_scale", "attention_learn_temperature", "codebook_init_mode"):
        config.pop(key)
    old = PatchPUClassifier.from_config(config)
    assert (old.attention.score_scale, old.attention.temperature) == (1.0, None)
    assert old.attention.codebook_init_mode == "fan_out"


def test_predict_takes_any_channel_count_and_size_one_call_after_another(calibrated_model, rng):
    # On TensorFlow, predict's traced function is relaxed to unknown
    # (batch, height, width, channels) once inputs differ; the channel handling
    # must then be decided at run time and give the same numbers.
    model = calibrated_model()
    gray = _images(rng, n=4, size=24, channels=1)
    rgb = _images(rng, n=4, size=40, channels=3)
    expected_gray = to_numpy(model(np.repeat(gray, 3, axis=-1))["probabilities"])
    expected_rgb = to_numpy(model(rgb)["probabilities"])
    for expected in (expected_gray, expected_rgb):
        assert_outputs_differ(expected, TOLERANCE)
    for images, expected in ((gray, expected_gray), (rgb, expected_rgb), (_random_alpha(rng, rgb), expected_rgb),
                             (_random_alpha(rng, gray), expected_gray)):
        got = model.predict(images, verbose=0)["probabilities"]
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_fold_batch_norm_gives_the_same_outputs_saves_and_refuses_training(calibrated_model, rng, tmp_path):
    model = calibrated_model(label_names=["wood", "metal", "glass", "stone"])
    images = _images(rng)
    expected = {key: to_numpy(value) for key, value in model(images, training=False).items()}
    # Every output depends on the image, by a hundred times the tolerance below or more.
    for key in ("probabilities", "attention", "label_embeddings"):
        assert_outputs_differ(expected[key], 1e-4 + 1e-4 * np.abs(expected[key]).max())

    folded = model.fold_batch_norm()
    assert type(folded) is PatchPUClassifier and folded.backbone.folded_batch_norm
    assert not model.backbone.folded_batch_norm  # the trained model is unchanged
    assert model.for_inference().backbone.folded_batch_norm and folded.for_inference() is folded
    assert folded.label_names == model.label_names
    outputs = {key: to_numpy(value) for key, value in folded(images, training=False).items()}
    for key in ("probabilities", "attention", "label_embeddings"):
        np.testing.assert_allclose(outputs[key], expected[key], rtol=1e-4, atol=1e-4)

    path = os.path.join(tmp_path, "folded.keras")
    folded.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is PatchPUClassifier and loaded.backbone.folded_batch_norm
    predicted = folded.predict(images, verbose=0)
    for key, value in loaded.predict(images, verbose=0).items():
        np.testing.assert_allclose(value, predicted[key], rtol=1e-6, atol=1e-6)

    folded.compile(optimizer="sgd", loss=losses.WeakNegative())
    with pytest.raises(ValueError, match="folded into its convolutions.*Received: training=True"):
        folded.train_on_batch(images, _single_positive(rng))
    with pytest.raises(ValueError, match="already folded. Received: folded_batch_norm=True"):
        folded.fold_batch_norm()
    with pytest.raises(ValueError, match="then fold it. Received: folded_batch_norm=True"):
        tiny_patch_model(folded_batch_norm=True, embedder_weights="imagenet")


def test_for_inference_folds_only_in_float32(tiny_model):
    assert tiny_model(dtype="mixed_bfloat16").for_inference().backbone.folded_batch_norm is False
