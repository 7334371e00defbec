import json
import os
import signal
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest

import recipes
from patchpu_keras import PatchPUClassifier, training
from patchpu_keras.training.run_checkpoint import config_differences

from tests.conftest import HELPERS, REPO_ROOT, repo_env
from tests.configs import TINY_DEMO, set_options

# 48 training images (53 less the 5 validation ones of val_fraction 0.1) in batches of 16: 3 steps
# per epoch, a checkpoint after every step. No flips: they are drawn in a parallel tf.data map,
# so two runs of the same recipe would differ anyway.
RESUMED_RUN = {**TINY_DEMO, "num_train": 53, "checkpoint_every": 1, "flip": False}
EPOCHS = 3


def _config(**changes):
    config = recipes.apply_overrides(recipes.load("demo"), [f"{k}={v}" for k, v in RESUMED_RUN.items()])
    return {**config, "epochs": EPOCHS, **changes}


def _write_state(out_dir, config, epoch, step, **extra):
    os.makedirs(os.path.join(out_dir, "checkpoint"))
    with open(os.path.join(out_dir, "checkpoint", "state.json"), "w") as handle:
        json.dump({"version": 1, "epoch": epoch, "step": step, "weights": "w.weights.h5", "config": config,
                   **extra}, handle)


def test_config_differences_name_the_keys_and_ignore_what_may_change():
    saved = {"loss": "weak_negative", "epochs": 6, "items_per_image": (1, 4), "checkpoint_every": None}
    given = {"loss": "role", "epochs": 9, "items_per_image": [1, 4], "checkpoint_every": 5, "new": 1}
    assert config_differences(saved, given) == {"loss": ("weak_negative", "role"), "new": (None, 1)}


def test_resuming_with_another_configuration_is_refused_before_reading_data(tmp_path):
    _write_state(str(tmp_path), _config(), epoch=1, step=2)
    with pytest.raises(ValueError, match=r"Keys that differ: learning_rate: 0\.005 in the run, 0\.1 now"):
        training.train(_config(learning_rate=0.1), str(tmp_path), resume=True)
    with pytest.raises(ValueError, match="Nothing to resume"):
        training.train(_config(), str(tmp_path / "empty"), resume=True)
    # Starting over on top of an interrupted run's checkpoint needs a decision.
    with pytest.raises(ValueError, match="add --resume to continue it, --force to start over"):
        training.train(_config(), str(tmp_path))


def test_resuming_a_completed_run_asks_for_more_epochs(tmp_path):
    _write_state(str(tmp_path), _config(), epoch=EPOCHS, step=0)
    with pytest.raises(ValueError, match=f"already completed {EPOCHS} epochs.*--epochs N with N > {EPOCHS}"):
        training.train(_config(), str(tmp_path), resume=True)


def test_a_run_lengthened_by_min_steps_is_complete_only_after_its_own_epochs(tmp_path):
    # 3 steps per epoch and min_steps=12: the run trains 4 epochs, not the recipe's 3.
    config = _config(min_steps=12)
    _write_state(str(tmp_path), config, epoch=EPOCHS, step=0, steps_per_epoch=3)
    with pytest.raises(ValueError, match=r"interrupted run \(epoch 3, step 0, of 4 epochs\)"):
        training.train(config, str(tmp_path))
    assert os.path.exists(tmp_path / "checkpoint" / "state.json")  # kept, not cleared as complete
    _write_state(str(tmp_path / "done"), config, epoch=4, step=0, steps_per_epoch=3)
    with pytest.raises(ValueError, match=r"already completed 4 epochs \(epochs=4\)"):
        training.train(config, str(tmp_path / "done"), resume=True)


def _cli(out_dir, *extra):
    return ["train", "--recipe", "demo", "--epochs", str(EPOCHS), "--out", str(out_dir)] + set_options(RESUMED_RUN) + list(extra)


def _run_cli(args):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "cli.py"), *args],
        env=repo_env(), cwd=REPO_ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.load(open(os.path.join(args[args.index("--out") + 1], "report.json")))


def _final_weights(out_dir):
    state = training.read_checkpoint(str(out_dir))
    weights = {}
    with h5py.File(state["weights_path"]) as file:
        file.visititems(lambda name, item: weights.setdefault(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return state, weights


@pytest.mark.large
def test_a_run_killed_mid_epoch_resumes_from_its_checkpoint(tmp_path):
    # The real command line, stopped with SIGKILL right after the checkpoint taken one
    # step into epoch 2 (tests/helpers/train_until_checkpoint.py waits there).
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, os.path.join(HELPERS, "train_until_checkpoint.py"), "1", "1", *_cli(killed)],
        env=repo_env(), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        for line in process.stdout:
            if line.startswith("CHECKPOINT 1 1"):
                break
        else:
            pytest.fail(f"the run ended before its checkpoint:\n{process.stderr.read()[-3000:]}")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    state = training.read_checkpoint(str(killed))
    assert (state["epoch"], state["step"], state["iterations"]) == (1, 1, 4)
    assert len(state["history"]["loss"]) == 1 and not os.path.exists(killed / "report.json")
    assert sorted(os.listdir(killed / "checkpoint")) == ["state.json", "weights-000000004.weights.h5"]
    history_before = state["history"]

    resumed = _run_cli(_cli(killed, "--resume"))
    assert resumed["status"] == "completed" and resumed["epochs_completed"] == EPOCHS
    assert resumed["resumed_from"] == {"epoch": 1, "step": 1, "iterations": 4}
    assert all(len(values) == EPOCHS for values in resumed["history"].values())
    for key, values in history_before.items():  # the epoch before the crash is kept as it was
        assert resumed["history"][key][:1] == values
    assert 0.0 <= resumed["map"] <= 1.0 and set(resumed["per_class_ap"]) == set(resumed["class_names"])
    # The kept epoch is the best validation mAP over the whole run, the epoch before the crash included.
    assert resumed["best_val_map"] == max(resumed["history"]["val_map"])
    assert resumed["kept_epoch"] == 1 + int(np.argmax(resumed["history"]["val_map"]))
    assert isinstance(keras.models.load_model(killed / "model.keras"), PatchPUClassifier)

    # The same run without the crash.
    uninterrupted = _run_cli(_cli(tmp_path / "uninterrupted"))
    state_resumed, weights_resumed = _final_weights(killed)
    state_uninterrupted, weights_uninterrupted = _final_weights(tmp_path / "uninterrupted")
    # Bit-identical: the step count (so the learning-rate schedule) and the drawn labels.
    assert state_resumed["iterations"] == state_uninterrupted["iterations"] == EPOCHS * 3
    np.testing.assert_array_equal(
        np.load(killed / "observed_labels.npz")["observed_labels"],
        np.load(tmp_path / "uninterrupted" / "observed_labels.npz")["observed_labels"],
    )
    # Bit-identical: the epoch before the crash (the killed run was the same program until then).
    for key, values in uninterrupted["history"].items():
        assert values[:1] == history_before[key]
    # Within noise: the weights, the losses and the mAP (docs/scaling.md#resume-after-a-crash).
    # The resumed process traces its own graphs; their float rounding differs from the
    # uninterrupted one's in the last bits, and a few LAMB steps of this tiny model amplify
    # that to a few percent.
    largest = max(
        float(np.max(np.abs(weights_resumed[name] - value))) / (float(np.max(np.abs(value))) + 1e-6)
        for name, value in weights_uninterrupted.items() if value.dtype.kind == "f"
    )
    print(
        f"resume: map {resumed['map']:.6f} vs uninterrupted {uninterrupted['map']:.6f}; "
        f"loss {resumed['history']['loss']} vs {uninterrupted['history']['loss']}; "
        f"largest relative weight difference {largest:.3g}"
    )
    np.testing.assert_allclose(resumed["history"]["loss"], uninterrupted["history"]["loss"], rtol=0.15)
    assert largest < 0.1
    assert resumed["map"] == pytest.approx(uninterrupted["map"], abs=0.1)
