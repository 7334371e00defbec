"""Every compared method trains with model.fit; state is updated and saved."""

import os

import keras
import numpy as np
import pytest
from keras import ops

from patchpu_keras import CAMClassifier, PatchPUClassifier, TrainingModel, losses
from patchpu_keras.data.pipeline import array_dataset
from patchpu_keras.layers import ImagePreprocessing
from patchpu_keras.losses import LossStateCallback
from patchpu_keras.models.multi_label_model import MultiLabelModel
from patchpu_keras.optimizers import Lamb
from patchpu_keras.training import build_optimizer
from tests.conftest import TINY, to_numpy

NUM_IMAGES, NUM_LABELS = 8, 4


def _data(rng):
    images = rng.integers(0, 256, (NUM_IMAGES, 32, 32, 3)).astype("uint8")
    observed = np.zeros((NUM_IMAGES, NUM_LABELS), "float32")
    observed[np.arange(NUM_IMAGES), np.arange(NUM_IMAGES) % NUM_LABELS] = 1
    return images, observed


# The twelve methods, as one training step tests them: LL's rate 0.25 at epoch 1, EN + CL's
# momentum not 0.5 (so momentum and 1 - momentum differ), APL pseudo-labelling after epoch 1.
METHODS = {
    "full_bce": lambda: losses.FullBCE(),
    "assume_negative": lambda: losses.AssumeNegative(),
    "assume_negative_ls": lambda: losses.AssumeNegativeLS(),
    "weak_assume_negative": lambda: losses.WeakAssumeNegative(),
    "expected_positive_regularization": lambda: losses.ExpectedPositiveRegularization(1.38),
    "role": lambda: losses.ROLE(1.38),
    "ll_r": lambda: losses.LargeLoss("reject", delta_rel=0.25),
    "ll_ct": lambda: losses.LargeLoss("temporary", delta_rel=0.25),
    "ll_cp": lambda: losses.LargeLoss("permanent", delta_rel=0.25),
    "en_cl": lambda: losses.ExpectedNegativeConsistency(momentum=0.7),
    "em": lambda: losses.EntropyMaximization(0.2),
    "em_apl": lambda: losses.EntropyMaximization(0.2, beta=0.02, warmup_epochs=1, num_epochs=2),
}


def _fit(model, loss, rng, epochs=1):
    images, observed = _data(rng)
    state = getattr(model, "loss_state", None)
    model.compile(
        optimizer=Lamb(1e-3, learning_rate_multipliers=getattr(loss, "learning_rate_multipliers", {})),
        loss=loss,
        jit_compile=False,  # two steps: compiling costs more than it saves
    )
    dataset = array_dataset(images, observed_labels=observed, batch_size=4)
    callbacks = [] if state is None else [LossStateCallback(loss, state)]
    history = model.fit(dataset, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks)
    return history, images, observed


def _model(loss, cls=PatchPUClassifier, observed=None, **kwargs):
    """The task, inside a `TrainingModel` with the loss's state when the loss is stateful."""
    if cls is CAMClassifier:
        model = CAMClassifier.create(NUM_LABELS, backbone="tiny", image_size=32, **kwargs)
    else:
        model = PatchPUClassifier.create(NUM_LABELS, **TINY, **kwargs)
    if isinstance(loss, losses.StatefulLoss):
        return TrainingModel(model, loss.make_state(observed))
    return model


# Training compiles with XLA on JAX only (`training/run.py`); TensorFlow also runs
# every stateful method under XLA here. PyTorch trains eagerly: torch.compile of a
# training step hits its recompilation limit and takes minutes on CPU.
TRAINING_JIT = keras.backend.backend() == "jax"
STATEFUL = ("role", "ll_r", "ll_ct", "ll_cp", "en_cl", "em_apl")
CASES = [(method, TRAINING_JIT) for method in sorted(METHODS)] + [
    (method, True) for method in STATEFUL if keras.backend.backend() == "tensorflow"
]
# The batch of one training step: rows 5 and 2 of the 8 images' state, in that order.
ROWS = np.array([5, 2])
OPTIMIZER = {"learning_rate": 1e-3, "lr_decay_epochs": 1, "lr_decay_rate": 0.5, "weight_decay": 1e-4}
LAMB_EPSILON = 1e-6  # keras.optimizers.Lamb's default


class LinearProbe(MultiLabelModel):
    """The smallest `MultiLabelModel`: mean colour -> Dense -> sigmoid.

    Losses, targets and the loss state go through `multi_label_loss` (the
    task's `compute_loss`, or `TrainingModel`'s with a stateful loss), the code
    both product models share; a one-layer model compiles in a second where
    the CAM model takes several, for the twelve methods.
    """

    def __init__(self, num_labels, **kwargs):
        super().__init__(num_labels, **kwargs)
        self.backbone = ImagePreprocessing(8)
        self.dense = keras.layers.Dense(num_labels, kernel_initializer="random_normal")
        self.dense.build((None, 3))

    def call(self, images, training=None):
        colours = ops.mean(self.backbone(images), axis=(1, 2))
        return {"probabilities": ops.sigmoid(4.0 * self.dense(colours))}


def _trained(model, state):
    """What `fit` trains: the model, or the model and the loss's state."""
    return model if state is None else TrainingModel(model, state)


def _problem(rng):
    images = rng.integers(0, 256, (NUM_IMAGES, 8, 8, 3)).astype("uint8")
    full = (rng.uniform(size=(NUM_IMAGES, NUM_LABELS)) < 0.4).astype("float32")
    full[np.arange(NUM_IMAGES), np.arange(NUM_IMAGES) % NUM_LABELS] = 1
    observed = np.where(rng.uniform(size=full.shape) < 0.25, np.where(full > 0, 1.0, -1.0), 0.0)
    observed[np.arange(NUM_IMAGES), np.arange(NUM_IMAGES) % NUM_LABELS] = 1
    return images, observed.astype("float32"), full


def _start_state(method, state, rng):
    """A non-trivial state before the step, so that reading the wrong rows shows."""
    if method == "en_cl":
        state.table("prediction_averages").assign(rng.uniform(0.05, 0.95, (NUM_IMAGES, NUM_LABELS)).astype("float32"))
    if method == "em_apl":
        state.table("last_probabilities").assign(rng.uniform(0, 1, (NUM_IMAGES, NUM_LABELS)).astype("float32"))
        targets = np.where(rng.uniform(size=(NUM_IMAGES, NUM_LABELS)) < 0.5, rng.uniform(0, 0.3, (NUM_IMAGES, NUM_LABELS)), -1)
        state.table("pseudo_negative_targets").assign(targets.astype("float32"))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _role_table_after_one_step(table, observed, probabilities, rows, expected_positives, learning_rate):
    """ROLE's table after the first optimizer step, from the gradient of `role` worked out by hand.

    d/dz of the estimate terms (e = sigmoid(z)) is `[y = 1](e - 1) + e - p`, halved
    and averaged over the batch's entries; the EPR term adds `0.5 * 2 (S - k) / (L^2 B)
    * e (1 - e)`, S the batch mean of the row sums of e. The table is left out of
    LAMB's trust ratio, so the first step is Adam's: every entry moves by
    `learning_rate * u`, `u = g / (|g| + epsilon)`, whatever the table's norm.
    """
    batch, num_labels = probabilities.shape
    estimates = _sigmoid(table[rows])
    excess = estimates.sum(1).mean() - expected_positives
    gradient = (0.5 * ((observed == 1) * (estimates - 1) + estimates - probabilities) / (batch * num_labels)
                + excess / (num_labels**2 * batch) * estimates * (1 - estimates))
    direction = np.zeros_like(table)
    direction[rows] = gradient / (np.abs(gradient) + LAMB_EPSILON)
    steep = np.zeros(table.shape, bool)
    steep[rows] = np.abs(gradient) > 100 * LAMB_EPSILON
    return table - learning_rate * direction, steep, learning_rate


def _apl_targets(observed, targets, scores, proportion, rounds):
    targets = targets.copy()
    for label in range(observed.shape[1]):
        quota = int(proportion * np.sum(observed[:, label] == 0) / rounds)
        candidates = np.flatnonzero((observed[:, label] == 0) & (targets[:, label] < 0))
        chosen = candidates[np.argsort(scores[candidates, label], kind="stable")[:quota]]
        targets[chosen, label] = scores[chosen, label]
    return targets


@pytest.mark.parametrize("method, jit_compile", CASES, ids=[f"{m}-{'xla' if j else 'graph'}" for m, j in CASES])
def test_fit_logs_the_pure_loss_of_the_batch_and_moves_only_its_rows_of_state(method, jit_compile, rng):
    """One step of `fit` in epoch 1 (LL's rate is then delta_rel) on the images of rows 5 and 2."""
    loss = METHODS[method]()
    images, observed, full = _problem(rng)
    state = loss.make_state(observed) if isinstance(loss, losses.StatefulLoss) else None
    if state is not None:
        _start_state(method, state, rng)
    model = _trained(LinearProbe(NUM_LABELS), state)
    model.compile(optimizer=build_optimizer(OPTIMIZER, 1, loss), loss=loss, jit_compile=jit_compile)
    tables = {} if state is None else {name: to_numpy(state.table(name)).copy() for name in state.tables}
    x, y, p = images[ROWS], observed[ROWS], to_numpy(model(images[ROWS])["probabilities"])
    rows = {name: table[ROWS] for name, table in tables.items()}

    history = model.fit(x, {"observed_labels": y, "full_labels": full[ROWS], "index": ROWS},
                        batch_size=len(ROWS), epochs=2, initial_epoch=1, shuffle=False, verbose=0,
                        callbacks=[] if state is None else [LossStateCallback(loss, state)])

    rate = 0.25  # LL: delta_rel x epoch 1
    expected = {
        "full_bce": lambda: losses.full_bce(full[ROWS], p),
        "assume_negative": lambda: losses.assume_negative(y, p),
        "assume_negative_ls": lambda: losses.assume_negative_ls(y, p, 0.1),
        "weak_assume_negative": lambda: losses.weak_assume_negative(y, p),
        "expected_positive_regularization": lambda: losses.expected_positive_regularization(y, p, 1.38),
        "role": lambda: losses.role(y, p, _sigmoid(rows["label_estimate_logits"]), 1.38),
        "ll_r": lambda: losses.large_loss(y, p, rate, "reject"),
        "ll_ct": lambda: losses.large_loss(y, p, rate, "temporary"),
        "ll_cp": lambda: losses.large_loss(rows["observed"], p, rate, "permanent"),
        "en_cl": lambda: losses.expected_negative_consistency(y, p, rows["prediction_averages"], 0.5, 1.0),
        "em": lambda: losses.entropy_maximization(y, p, 0.2),
        "em_apl": lambda: losses.entropy_maximization(y, p, 0.2, rows["pseudo_negative_targets"], 0.02),
    }[method]
    assert history.history["loss"][0] == pytest.approx(float(to_numpy(expected())), rel=1e-5)
    assert int(to_numpy(model.optimizer.iterations)) == 1

    after = {} if state is None else {name: to_numpy(state.table(name)) for name in state.tables}
    others = np.setdiff1d(np.arange(NUM_IMAGES), ROWS)
    if method.startswith("ll_"):
        # 2 x 4 entries at rate 0.25: the two unknowns with the largest -log(1 - p).
        unknown_loss = np.where(y == 0, -np.log(1 - p), -np.inf)
        selected = unknown_loss >= np.sort(unknown_loss.ravel())[-2]
        assert selected.sum() == 2 and (y[selected] == 0).all()
        np.testing.assert_array_equal(to_numpy(losses.large_loss_selection(y, p, rate)), selected)
        if method == "ll_cp":
            np.testing.assert_array_equal(after["observed"][ROWS], np.where(selected, 1.0, y))
            np.testing.assert_array_equal(after["observed"][others], observed[others])
    if method == "role":
        expected_table, steep, step = _role_table_after_one_step(
            tables["label_estimate_logits"], y, p, ROWS, 1.38, 10 * OPTIMIZER["learning_rate"])
        # Where a gradient nearly cancels (|g| ~ epsilon), u depends on its rounding: steps
        # are compared to 1 %. They are 10x the learning rate (ROLE's multiplier), not
        # scaled by the table's norm (no trust ratio); the others move by at most one step.
        assert steep.sum() >= 6
        before = tables["label_estimate_logits"]
        np.testing.assert_allclose((after["label_estimate_logits"] - before)[steep],
                                   (expected_table - before)[steep], rtol=1e-2)
        moved = np.abs(after["label_estimate_logits"] - tables["label_estimate_logits"])
        assert moved.max() <= step * 1.01
        np.testing.assert_array_equal(after["label_estimate_logits"][others], tables["label_estimate_logits"][others])
        assert np.all(after["label_estimate_logits"][ROWS] != tables["label_estimate_logits"][ROWS])
    if method == "en_cl":
        momentum = loss.momentum
        np.testing.assert_allclose(after["prediction_averages"][ROWS],
                                   momentum * rows["prediction_averages"] + (1 - momentum) * p, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(after["prediction_averages"][others], tables["prediction_averages"][others])
    if method == "em_apl":
        scores = tables["last_probabilities"].copy()
        scores[ROWS] = p
        np.testing.assert_allclose(after["last_probabilities"], scores, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(after["last_probabilities"][others], tables["last_probabilities"][others])
        # End of epoch 1 >= warm-up 1: the one round of pseudo-labels, from the stored scores.
        targets = _apl_targets(observed, tables["pseudo_negative_targets"], after["last_probabilities"], 0.9, 1)
        np.testing.assert_allclose(after["pseudo_negative_targets"], targets, rtol=1e-6)
        assert (targets >= 0).sum() > (tables["pseudo_negative_targets"] >= 0).sum()
    if state is not None:
        assert int(to_numpy(state.epoch)) == 1


@pytest.mark.parametrize("targets", ["full_labels", "observed_only"])
def test_a_plain_keras_loss_sees_the_full_labels_or_else_the_observed_positives(targets, rng):
    images, observed, full = _problem(rng)
    model = LinearProbe(NUM_LABELS)
    model.compile(optimizer=build_optimizer(OPTIMIZER, 1), loss="binary_crossentropy", jit_compile=TRAINING_JIT)
    p = np.clip(to_numpy(model(images)["probabilities"]), 1e-7, 1 - 1e-7)  # Keras' epsilon
    y = {"observed_labels": observed, "full_labels": full} if targets == "full_labels" else observed
    history = model.fit(images, y, batch_size=NUM_IMAGES, epochs=1, shuffle=False, verbose=0)
    truth = full if targets == "full_labels" else (observed > 0).astype("float32")
    assert (full != (observed > 0)).any()  # the two targets give different losses
    expected = np.mean(-(truth * np.log(p) + (1 - truth) * np.log(1 - p)))
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("method", ["assume_negative", "ll_r", "role"])
def test_cam_model_trains_with_the_same_losses(method, rng):
    loss = METHODS[method]()
    _, observed = _data(rng)
    model = _model(loss, CAMClassifier, observed=observed, boost_lu_alpha=5.0)
    history, _, _ = _fit(model, loss, rng)
    assert np.isfinite(history.history["loss"][0])


def _saved_variable_names(path):
    """The names of every variable stored in a `.keras` file."""
    import io
    import zipfile

    import h5py

    names = []
    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
        weights.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
    return names


def test_role_table_is_trained_by_fit_and_kept_with_the_run_not_the_model(rng, tmp_path):
    loss = losses.ROLE(1.38, seed=3)
    _, observed = _data(rng)
    trainer = _model(loss, observed=observed)
    table = trainer.loss_state.table("label_estimate_logits")
    before = to_numpy(table).copy()
    probabilities = 1 / (1 + np.exp(-before))
    np.testing.assert_allclose(probabilities[observed == 1], 0.995, rtol=1e-5)
    assert probabilities[observed == 0].min() >= 0.4 and probabilities[observed == 0].max() <= 0.6
    assert any(v.name == "label_estimate_logits" for v in trainer.trainable_variables)
    _fit(trainer, loss, rng)
    after = to_numpy(table)
    assert not np.allclose(before, after)
    # The model a user deploys holds its weights only: the same variables as a model never trained with ROLE.
    path = os.path.join(tmp_path, "role.keras")
    trainer.task.save(path)
    plain = os.path.join(tmp_path, "plain.keras")
    PatchPUClassifier.create(NUM_LABELS, **TINY).save(plain)
    assert len(_saved_variable_names(path)) == len(_saved_variable_names(plain))
    loaded = keras.models.load_model(path)
    assert not any("label_estimate" in v.path for v in loaded.variables)
    # The run's checkpoint (the training model's weights) holds the table.
    checkpoint = os.path.join(tmp_path, "run.weights.h5")
    trainer.save_weights(checkpoint)
    fresh = _model(loss, observed=observed)
    fresh.load_weights(checkpoint)
    np.testing.assert_array_equal(to_numpy(fresh.loss_state.table("label_estimate_logits")), after)


def test_large_loss_permanent_flips_persist_and_follow_the_schedule(rng, tmp_path):
    loss = losses.LargeLoss("permanent", delta_rel=0.125)
    _, observed = _data(rng)
    model = _model(loss, observed=observed)
    callbacks = [LossStateCallback(loss, model.loss_state)]
    _fit(model, loss, rng, epochs=1)
    stored = to_numpy(model.loss_state.table("observed"))
    np.testing.assert_array_equal(stored, observed)  # epoch 0: rate 0, no flip
    assert int(to_numpy(model.loss_state.epoch)) == 0
    model.fit(array_dataset(_data(rng)[0], observed_labels=observed, batch_size=4), epochs=2, initial_epoch=1,
              verbose=0, callbacks=callbacks)
    assert int(to_numpy(model.loss_state.epoch)) == 1
    stored = to_numpy(model.loss_state.table("observed"))
    flipped = (stored == 1) & (observed == 0)
    # Epoch 1: rate 0.125 of the 4 x 4 entries of each batch -> 2 flips per batch.
    assert flipped.sum() == 4
    assert np.all(stored[observed == 1] == 1)
    # Epoch 2: the published LL-Cp flips the same k = 2 per batch again (a rate
    # growing to 0.25 would flip 4 per batch, 12 in all).
    model.fit(array_dataset(_data(rng)[0], observed_labels=observed, batch_size=4), epochs=3, initial_epoch=2,
              verbose=0, callbacks=callbacks)
    stored = to_numpy(model.loss_state.table("observed"))
    assert ((stored == 1) & (observed == 0)).sum() == 8
    model.save_weights(os.path.join(tmp_path, "llcp.weights.h5"))
    fresh = _model(loss, observed=observed)
    fresh.load_weights(os.path.join(tmp_path, "llcp.weights.h5"))
    np.testing.assert_array_equal(to_numpy(fresh.loss_state.table("observed")), stored)


def test_stateful_loss_without_state_is_a_clear_error(rng):
    model = PatchPUClassifier.create(NUM_LABELS, **TINY)
    with pytest.raises(ValueError, match=r"TrainingModel\(model, loss.make_state\(observed_labels\)\)"):
        _fit(model, losses.ROLE(1.38), rng)


def test_boost_lu_maps_and_outputs(rng):
    images = rng.integers(0, 256, (2, 32, 32, 3)).astype("uint8")
    plain = CAMClassifier.create(NUM_LABELS, backbone="tiny", image_size=32)
    boosted = CAMClassifier.create(NUM_LABELS, backbone="tiny", image_size=32, boost_lu_alpha=5.0)
    boosted.set_weights(plain.get_weights())
    cam = to_numpy(plain(images)["cam"])
    out = {k: to_numpy(v) for k, v in boosted(images).items()}
    np.testing.assert_allclose(out["cam"], np.maximum(cam, 5 * cam), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["logits"], out["cam"].mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["probabilities"], 1 / (1 + np.exp(-out["logits"])), rtol=1e-5)
    assert (cam > 0).any() and (cam < 0).any()


def test_resnet50_backbone_from_scratch():
    """The one ResNet-50 the suite builds (recipe tests record the backbone instead)."""
    model = CAMClassifier.create(20, backbone="resnet50", image_size=64)
    # keras.applications.ResNet50(weights=None, include_top=False): 23,587,712; the 1x1 head: 2048 x 20 + 20.
    assert model.count_params() == 23_587_712 + 2048 * 20 + 20
    assert model.backbone.features.name == "resnet50" and model.backbone.output_channels == 2048
    config = model.get_config()
    assert config["backbone"]["config"]["architecture"] == "resnet50" and model.image_size == 64
    tiny = {**config["backbone"], "config": {**config["backbone"]["config"], "architecture": "tiny"}}
    clone = CAMClassifier.from_config({**config, "backbone": tiny})
    assert (clone.num_labels, clone.image_size, clone.boost_lu_alpha) == (20, 64, None)
    assert PatchPUClassifier.from_config(_model(losses.AssumeNegative()).get_config()).num_labels == NUM_LABELS
