import json
import math
import os

import h5py
import keras
import numpy as np
import pytest

import recipes
from patchpu_keras import losses, training
from patchpu_keras.models import TrainingModel
from patchpu_keras.training import NonFiniteLossError, read_checkpoint
from patchpu_keras.training.run_checkpoint import RunCheckpoint

from tests.configs import TINY_DEMO_OVERRIDES
from tests.conftest import batch_norms, tiny_patch_model, to_numpy


def _file_finite(path):
    """Whether every array of a `.weights.h5` file is finite (and it has some)."""
    arrays = []
    with h5py.File(path) as file:
        file.visititems(lambda name, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None)
    return bool(arrays) and all(np.isfinite(a).all() for a in arrays if np.asarray(a).dtype.kind == "f")


def _all_finite(model):
    return all(np.isfinite(to_numpy(w)).all() for w in model.weights)


@pytest.mark.large
def test_a_non_finite_gradient_stops_at_its_step_before_any_checkpoint(tmp_path, monkeypatch):
    # 32 images, batch 16: 2 steps per epoch, a checkpoint after every step. From the
    # second epoch on the loss is multiplied by inf: the backward pass gives infinite and
    # NaN gradients, and the optimizer step makes the weights NaN. The epoch is read from the
    # stateful loss's `LossState` (a variable of the run's `TrainingModel`), which every backend hands to
    # `compute_loss`, JAX's stateless step too.
    config = recipes.apply_overrides(
        recipes.load("demo"), TINY_DEMO_OVERRIDES + ["epochs=3", "loss=ll_r", "checkpoint_every=1"]
    )
    original = TrainingModel.compute_loss

    def infinite_from_epoch_2(self, *args, **kwargs):
        loss = original(self, *args, **kwargs)
        return loss * keras.ops.where(self.loss_state.epoch >= 1, np.inf, 1.0)

    monkeypatch.setattr(TrainingModel, "compute_loss", infinite_from_epoch_2)
    # The guard names the step and the loss; had it not come first, saving would have refused
    # the NaN weights with another message ("The weights became NaN ...").
    with pytest.raises(NonFiniteLossError, match=r"became inf at epoch 2, step 1 \(step 3 of the run\)") as caught:
        training.train(config, str(tmp_path), verbose=0)
    assert "the last good checkpoint (after epoch 1) is kept in" in str(caught.value)

    report = json.load(open(tmp_path / "report.json"))
    assert report["status"] == "failed" and report["reason"] == "non-finite loss"
    assert report["non_finite"]["epoch"] == 2 and report["non_finite"]["step"] == 1
    assert math.isinf(report["non_finite"]["loss"])
    assert report["epochs_completed"] == 1 and report["last_checkpoint"] == {"epoch": 1, "step": 0}
    state = read_checkpoint(str(tmp_path))
    assert (state["epoch"], state["step"], state["iterations"]) == (1, 0, 2)
    assert sorted(os.listdir(tmp_path / "checkpoint")) == ["state.json", "weights-000000002.weights.h5"]
    # The kept checkpoint is the good one: finite, and what the run saved after epoch 1.
    assert json.load(open(tmp_path / "history.json"))["epochs_completed"] == 1
    model = keras.models.load_model(tmp_path / "model.keras")
    assert _all_finite(model)
    assert _file_finite(state["weights_path"])


def _checkpointed_model(tmp_path):
    model = tiny_patch_model()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=losses.WeakNegative())
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype("uint8")
    observed = np.eye(4, dtype="float32")
    model.fit(images, observed, batch_size=4, epochs=1, verbose=0)
    checkpoint = RunCheckpoint(str(tmp_path), steps_per_epoch=1)
    checkpoint.set_model(model)
    checkpoint.save(1, 0)
    return model, checkpoint


@pytest.mark.parametrize("where", ["batch_norm_statistics", "trainable_weight"])
def test_saving_refuses_non_finite_weights_and_keeps_the_previous_checkpoint(where, tmp_path):
    model, checkpoint = _checkpointed_model(tmp_path)
    saved = read_checkpoint(str(tmp_path))
    norm = batch_norms(model)[0]
    variable = norm.moving_variance if where == "batch_norm_statistics" else model.classifier.kernel
    assert variable.trainable == (where == "trainable_weight")
    value = to_numpy(variable).copy()
    value.flat[0] = np.nan
    variable.assign(value)
    with pytest.raises(NonFiniteLossError, match=f"NaN or infinite during epoch 2 \\(variable {variable.path}\\)"):
        checkpoint.save(2, 0)
    assert read_checkpoint(str(tmp_path)) == saved
    assert sorted(os.listdir(tmp_path / "checkpoint")) == ["state.json", saved["weights"]]
    # The previous checkpoint is finite, and loads into a fresh model.
    assert _file_finite(saved["weights_path"])
    fresh = tiny_patch_model()
    fresh.compile(optimizer=keras.optimizers.SGD(0.1), loss=losses.WeakNegative())
    fresh.optimizer.build(fresh.trainable_variables)
    fresh.load_weights(saved["weights_path"])
    assert _all_finite(fresh)
