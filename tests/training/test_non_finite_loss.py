import json
import math
import os

import keras
import numpy as np
import pytest

import recipes
from patchpu_keras import training
from patchpu_keras.models import TrainingModel
from patchpu_keras.training import NonFiniteLossError, read_checkpoint

from tests.configs import TINY_DEMO_OVERRIDES


@pytest.mark.large
def test_a_nan_loss_stops_at_its_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    # 32 images, batch 16: 2 steps per epoch. From the second epoch on, the loss is
    # NaN. The epoch is read from the stateful loss's `LossState` (a model
    # variable), which every backend hands to `compute_loss`, JAX's stateless step too.
    config = recipes.apply_overrides(recipes.load("demo"), TINY_DEMO_OVERRIDES + ["epochs=3", "loss=ll_r"])
    original = TrainingModel.compute_loss

    def nan_from_epoch_2(self, *args, **kwargs):
        loss = original(self, *args, **kwargs)
        return keras.ops.where(self.loss_state.epoch >= 1, np.nan, loss)

    monkeypatch.setattr(TrainingModel, "compute_loss", nan_from_epoch_2)
    with pytest.raises(NonFiniteLossError, match=r"nan at epoch 2, step 1 \(step 3 of the run\)") as caught:
        training.train(config, str(tmp_path), verbose=0)
    assert "the last good checkpoint (after epoch 1) is kept in" in str(caught.value)

    report = json.load(open(tmp_path / "report.json"))
    assert report["status"] == "failed" and report["reason"] == "non-finite loss"
    assert report["non_finite"]["epoch"] == 2 and report["non_finite"]["step"] == 1
    assert math.isnan(report["non_finite"]["loss"])
    assert report["epochs_completed"] == 1 and report["last_checkpoint"] == {"epoch": 1, "step": 0}
    state = read_checkpoint(str(tmp_path))
    assert (state["epoch"], state["step"], state["iterations"]) == (1, 0, 2)
    assert os.path.exists(state["weights_path"])
    # The kept checkpoint is the good one: finite, and what the run saved after epoch 1.
    assert json.load(open(tmp_path / "history.json"))["epochs_completed"] == 1
    model = keras.models.load_model(tmp_path / "model.keras")
    assert all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in model.weights)
