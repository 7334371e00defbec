"""Every compared method trains with model.fit; state is updated and saved."""

import os

import keras
import numpy as np
import pytest

from patchpu_keras import CAMClassifier, PatchPUClassifier, losses
from patchpu_keras.data.pipeline import array_dataset
from patchpu_keras.optimizers import Lamb
from tests.conftest import TINY, to_numpy

NUM_IMAGES, NUM_LABELS = 8, 4


def _data(rng):
    images = rng.integers(0, 256, (NUM_IMAGES, 32, 32, 3)).astype("uint8")
    observed = np.zeros((NUM_IMAGES, NUM_LABELS), "float32")
    observed[np.arange(NUM_IMAGES), np.arange(NUM_IMAGES) % NUM_LABELS] = 1
    return images, observed


METHODS = {
    "full_bce": lambda: losses.FullBCE(),
    "assume_negative": lambda: losses.AssumeNegative(),
    "assume_negative_ls": lambda: losses.AssumeNegativeLS(),
    "weak_assume_negative": lambda: losses.WeakAssumeNegative(),
    "expected_positive_regularization": lambda: losses.ExpectedPositiveRegularization(1.38),
    "role": lambda: losses.ROLE(1.38),
    "ll_r": lambda: losses.LargeLoss("reject", delta_rel=0.2),
    "ll_ct": lambda: losses.LargeLoss("temporary", delta_rel=0.2),
    "ll_cp": lambda: losses.LargeLoss("permanent", delta_rel=0.2),
    "en_cl": lambda: losses.ExpectedNegativeConsistency(),
    "em": lambda: losses.EntropyMaximization(0.2),
    "em_apl": lambda: losses.EntropyMaximization(0.2, beta=0.02, warmup_epochs=1, num_epochs=2),
}


def _fit(model, loss, rng, epochs=1):
    images, observed = _data(rng)
    model.compile(
        optimizer=Lamb(1e-3, learning_rate_multipliers=getattr(loss, "learning_rate_multipliers", {})),
        loss=loss,
        jit_compile=False,  # two steps: compiling costs more than it saves
    )
    dataset = array_dataset(images, observed_labels=observed, batch_size=4)
    history = model.fit(dataset, epochs=epochs, shuffle=False, verbose=0)
    return history, images, observed


def _model(loss, cls=PatchPUClassifier, observed=None, **kwargs):
    state = loss.make_state(observed) if isinstance(loss, losses.StatefulLoss) else None
    if cls is CAMClassifier:
        return CAMClassifier(NUM_LABELS, backbone="tiny", image_size=32, loss_state=state, **kwargs)
    return PatchPUClassifier(NUM_LABELS, loss_state=state, **TINY, **kwargs)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_two_step_fit_of_every_method(method, rng):
    loss = METHODS[method]()
    _, observed = _data(rng)
    model = _model(loss, observed=observed)
    history, _, _ = _fit(model, loss, rng)
    assert np.isfinite(history.history["loss"][0])
    assert int(to_numpy(model.optimizer.iterations)) == 2


@pytest.mark.parametrize("method", ["assume_negative", "ll_r", "role"])
def test_cam_model_trains_with_the_same_losses(method, rng):
    loss = METHODS[method]()
    _, observed = _data(rng)
    model = _model(loss, CAMClassifier, observed=observed, boost_lu_alpha=5.0)
    history, _, _ = _fit(model, loss, rng)
    assert np.isfinite(history.history["loss"][0])


def test_role_table_is_trained_by_fit_and_saved(rng, tmp_path):
    loss = losses.ROLE(1.38, seed=3)
    _, observed = _data(rng)
    model = _model(loss, observed=observed)
    table = model.loss_state.table("label_estimate_logits")
    before = to_numpy(table).copy()
    probabilities = 1 / (1 + np.exp(-before))
    np.testing.assert_allclose(probabilities[observed == 1], 0.995, rtol=1e-5)
    assert probabilities[observed == 0].min() >= 0.4 and probabilities[observed == 0].max() <= 0.6
    assert any(v.name == "label_estimate_logits" for v in model.trainable_variables)
    _fit(model, loss, rng)
    after = to_numpy(table)
    assert not np.allclose(before, after)
    path = os.path.join(tmp_path, "role.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(to_numpy(loaded.loss_state.table("label_estimate_logits")), after)
    assert isinstance(loaded.loss, losses.ROLE)


def test_large_loss_permanent_flips_persist_and_follow_the_schedule(rng, tmp_path):
    loss = losses.LargeLoss("permanent", delta_rel=0.125)
    _, observed = _data(rng)
    model = _model(loss, observed=observed)
    _fit(model, loss, rng, epochs=1)
    stored = to_numpy(model.loss_state.table("observed"))
    np.testing.assert_array_equal(stored, observed)  # epoch 0: rate 0, no flip
    assert int(to_numpy(model.loss_state.epoch)) == 0
    model.fit(array_dataset(_data(rng)[0], observed_labels=observed, batch_size=4), epochs=2, initial_epoch=1, verbose=0)
    assert int(to_numpy(model.loss_state.epoch)) == 1
    stored = to_numpy(model.loss_state.table("observed"))
    flipped = (stored == 1) & (observed == 0)
    # Epoch 1: rate 0.125 of the 4 x 4 entries of each batch -> 2 flips per batch.
    assert flipped.sum() == 4
    assert np.all(stored[observed == 1] == 1)
    # Epoch 2: the published LL-Cp flips the same k = 2 per batch again (a rate
    # growing to 0.25 would flip 4 per batch, 12 in all).
    model.fit(array_dataset(_data(rng)[0], observed_labels=observed, batch_size=4), epochs=3, initial_epoch=2, verbose=0)
    stored = to_numpy(model.loss_state.table("observed"))
    assert ((stored == 1) & (observed == 0)).sum() == 8
    model.save(os.path.join(tmp_path, "llcp.keras"))
    loaded = keras.models.load_model(os.path.join(tmp_path, "llcp.keras"))
    np.testing.assert_array_equal(to_numpy(loaded.loss_state.table("observed")), stored)


def test_expected_negative_averages_are_updated(rng):
    loss = losses.ExpectedNegativeConsistency(momentum=0.5)
    _, observed = _data(rng)
    model = _model(loss, observed=observed)
    _fit(model, loss, rng)
    averages = to_numpy(model.loss_state.table("prediction_averages"))
    assert np.all(averages[observed == 0] > 0) and np.all(averages[observed == 0] < 0.5)


def test_stateful_loss_without_state_is_a_clear_error(rng):
    model = PatchPUClassifier(NUM_LABELS, **TINY)
    with pytest.raises(ValueError, match="loss_state=loss.make_state"):
        _fit(model, losses.ROLE(1.38), rng)


def test_boost_lu_maps_and_outputs(rng):
    images = rng.integers(0, 256, (2, 32, 32, 3)).astype("uint8")
    plain = CAMClassifier(NUM_LABELS, backbone="tiny", image_size=32)
    boosted = CAMClassifier(NUM_LABELS, backbone="tiny", image_size=32, boost_lu_alpha=5.0)
    boosted.set_weights(plain.get_weights())
    cam = to_numpy(plain(images)["cam"])
    out = {k: to_numpy(v) for k, v in boosted(images).items()}
    np.testing.assert_allclose(out["cam"], np.maximum(cam, 5 * cam), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["logits"], out["cam"].mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["probabilities"], 1 / (1 + np.exp(-out["logits"])), rtol=1e-5)
    assert (cam > 0).any() and (cam < 0).any()


def test_resnet50_backbone_from_scratch():
    model = CAMClassifier(20, backbone="resnet50", image_size=64)
    resnet = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    assert model.count_params() == resnet.count_params() + 2048 * 20 + 20
    assert PatchPUClassifier.from_config(_model(losses.AssumeNegative()).get_config()).num_labels == NUM_LABELS
    config = model.get_config()
    assert config["backbone"] == "resnet50" and CAMClassifier.from_config(config).count_params() == model.count_params()
