"""Two devices on the CPU: JAX with two host devices, TensorFlow with two logical CPUs (subprocesses)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import recipes
from patchpu_keras import training
from patchpu_keras.training.distribution import Distribution

from tests.conftest import REPO_ROOT, repo_env, run_helper
from tests.configs import TINY_DEMO, set_options

BACKEND = keras.backend.backend()
TWO_DEVICES = {"jax": {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}, "tensorflow": {}}


def test_distribute_takes_none_or_auto():
    assert Distribution("none").devices == 1
    with pytest.raises(ValueError, match=r"`distribute` must be one of \['none', 'auto'\]"):
        Distribution("all")


@pytest.mark.skipif(BACKEND != "torch", reason="the PyTorch refusal")
def test_pytorch_refuses_several_devices_before_reading_data(tmp_path):
    config = {**recipes.load("demo"), "distribute": "auto"}
    with pytest.raises(ValueError, match="not supported on the PyTorch backend.*KERAS_BACKEND=jax"):
        training.train(config, str(tmp_path))


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute's synchronized batch norm")
def test_tf_distribute_refuses_a_rematerialized_embedder_before_reading_data(tmp_path):
    config = {**recipes.load("demo"), "distribute": "auto", "rematerialize_embedder": True}
    with pytest.raises(ValueError, match="rematerialize_embedder.*KERAS_BACKEND=jax"):
        training.train(config, str(tmp_path))
    assert not os.listdir(tmp_path)  # stopped before reading data or writing anything
    Distribution("auto").check_model_config({"rematerialize_embedder": False})
    Distribution("none").check_model_config({"rematerialize_embedder": True})


@pytest.mark.skipif(BACKEND == "torch", reason="PyTorch trains on one device")
def test_one_step_on_two_devices_equals_one_device(capsys):
    env = repo_env(KERAS_BACKEND=BACKEND, **TWO_DEVICES[BACKEND])
    figures = json.loads(run_helper("distributed_step.py", env=env).strip().splitlines()[-1])["results"]
    with capsys.disabled():
        print(f"\n{BACKEND} two devices vs one: {json.dumps(figures)}")
    weak_negative = figures["weak_negative"]
    assert weak_negative["devices"] == 2 and weak_negative["iterations"] == [1, 1]
    # Batch statistics are global on both engines (JAX: one program over the global
    # batch; TensorFlow: synchronized batch normalization), so only float rounding
    # (reduction order) separates the two; the step moved the weights far more.
    # (An SGD step: see tests/helpers/distributed_step.py.)
    assert weak_negative["max_abs_weight_difference"] < 1e-5 and weak_negative["moved"] > 0.1
    # The validation mAP counts each of the 12 images once: equal to the numpy mAP.
    assert weak_negative["val_map_distributed"] == pytest.approx(weak_negative["numpy_map_distributed"], abs=1e-6)
    # Against one device: the held-out probabilities agree to float rounding. (Not the mAP:
    # two of 12 scores within rounding of each other swap ranks, and one swap moves an AP by
    # as much as 0.05.)
    assert weak_negative["max_abs_probability_difference"] < 1e-4
    if BACKEND == "jax":
        # The compiled metric: replicated buffers updated by one program over the global batch.
        assert weak_negative["map_rows_counted"] == 12
        # ROLE's per-image table is written by that same program: the same step as one device.
        role = figures["role"]
        assert role["max_abs_weight_difference"] < 1e-5 and role["moved"] > 0.1
    else:
        assert "ROLE loss keeps per-image tables" in figures["role"]["refused"]
        assert "KERAS_BACKEND=jax" in figures["role"]["refused"]


@pytest.mark.large
@pytest.mark.skipif(BACKEND == "torch", reason="PyTorch trains on one device")
def test_a_two_device_cli_run_finishes_with_a_report(tmp_path):
    out = tmp_path / "run"
    settings = {**TINY_DEMO, "distribute": "auto"}
    if BACKEND == "tensorflow":
        # Two logical CPUs exist only when asked for before TensorFlow starts: a
        # wrapper sets them, then runs the command line unchanged.
        command = [sys.executable, "-c", (
            "import sys, tensorflow as tf; cpu = tf.config.list_physical_devices('CPU')[0]; "
            "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2); "
            "from cli import cli; cli(sys.argv[1:])"
        )]
    else:
        command = [sys.executable, os.path.join(REPO_ROOT, "cli.py")]
    args = ["train", "--recipe", "demo", "--epochs", "2", "--out", str(out)] + set_options(settings)
    result = subprocess.run(
        command + args, env=repo_env(KERAS_BACKEND=BACKEND, **TWO_DEVICES[BACKEND]), cwd=REPO_ROOT,
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.load(open(out / "report.json"))
    assert report["status"] == "completed" and report["devices"] == 2 and report["epochs_completed"] == 2
    assert len(report["history"]["val_map"]) == 2 and 0.0 <= report["map"] <= 1.0
    # The validation mAP (ValidationMeanAveragePrecision under tf.distribute) chooses the kept epoch.
    assert report["best_val_map"] == max(report["history"]["val_map"])
    assert report["kept_epoch"] == 1 + int(np.argmax(report["history"]["val_map"]))
