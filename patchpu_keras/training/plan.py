"""The plan of a training run: everything checked and decided before the first step.

`plan_run` checks the recipe, finds the resume point (or refuses to overwrite a
run), reads the data, sets the budget and builds the loss once, for the epochs
the run really trains. `describe_plan` is the run plan `train` prints.
`patchpu_keras.training.run.train` executes a plan.
"""

import dataclasses
import os
import shutil
from typing import Any, Optional

import keras
import numpy as np

from patchpu_keras.data.recipe_data import load_data
from patchpu_keras.losses.registry import LOSSES
from patchpu_keras.pretraining import PRETRAINED_EMBEDDER, chained_pretraining
from patchpu_keras.training.builders import (
    TrainingBudget,
    build_loss,
    method_defaults,
    resolve_jit_compile,
    training_budget,
)
from patchpu_keras.training.distribution import Distribution
from patchpu_keras.training.run_checkpoint import (
    CHECKPOINT_DIR,
    RESUMABLE_CHANGES,
    config_differences,
    read_checkpoint,
)
from patchpu_keras.training.settings import check_settings

# What a finished run directory holds (`train` writes them; `--force` removes them all, and any `eval-*/`).
RUN_FILES = (
    "model.keras", "best_model.keras", "report.json", "history.json", "observed_labels.npz",
    CHECKPOINT_DIR, "heatmaps", "logs", PRETRAINED_EMBEDDER,
)
REPORT_FILE = "report.json"


@dataclasses.dataclass
class RunPlan:
    """What a run trains, on what, for how long, from where.

    Attributes:
        config: the recipe dict.
        out_dir: str, the run directory.
        data: the `RecipeData` (train, validation and test pipelines).
        budget: the `TrainingBudget` (epochs, steps per epoch, decay).
        loss: the loss, built once for `budget.epochs`.
        distribution: the `Distribution` (devices).
        jit_compile: bool, `compile`'s argument.
        resumed: the checkpoint's `state.json` dict when resuming, else None.
        pretraining: what the run pretrains before training (`pretrain_steps` > 0:
            `pretraining.chained_pretraining`'s dict), else None.
    """

    config: dict
    out_dir: str
    data: Any
    budget: TrainingBudget
    loss: Any
    distribution: Distribution
    jit_compile: bool
    resumed: Optional[dict] = None
    pretraining: Optional[dict] = None

    @property
    def first_epoch(self):
        return self.resumed["epoch"] if self.resumed else 0

    @property
    def steps_to_train(self):
        """Steps this session trains (the whole budget less what a resumed run already did)."""
        if not self.resumed:
            return self.budget.total_steps
        done = self.resumed["epoch"] * self.budget.steps_per_epoch + self.resumed["step"]
        return max(0, self.budget.total_steps - done)


def check_loss_settings(config):
    """The loss settings that need no data: a known name, its required keys, full labels for `full_bce`."""
    name = config.get("loss")
    if name == "full_bce" and config["regime"] != "full":
        raise ValueError(
            "The full_bce loss is the fully-labelled upper bound and trains on full "
            "labels: add `--set regime=full`. "
            f"Received: loss='full_bce', regime={config['regime']!r}"
        )
    if name not in LOSSES or any(config.get(key) is None for key in LOSSES[name].required):
        build_loss(config)  # raises the registry's message naming the loss or the key


def _run_epochs(config, state):
    """The epochs `config` trains for with the checkpoint's steps per epoch (`min_steps` may add some)."""
    if not state.get("steps_per_epoch"):
        return config["epochs"]
    return training_budget(config, state["steps_per_epoch"] * config["batch_size"]).epochs


def _is_finished(out_dir):
    """Whether `out_dir` holds a completed run (its report says so)."""
    import json

    try:
        with open(os.path.join(out_dir, REPORT_FILE)) as handle:
            return json.load(handle).get("status") == "completed"
    except (OSError, ValueError):
        return False


def resume_point(config, out_dir):
    """The checkpoint `out_dir` continues from, checked against `config`."""
    state = read_checkpoint(out_dir)
    if state is None:
        raise ValueError(
            f"Nothing to resume in {out_dir}: it has no {CHECKPOINT_DIR}/state.json. "
            "Start the run without --resume."
        )
    differences = config_differences(state["config"], config)
    if differences:
        listed = "; ".join(f"{key}: {saved!r} in the run, {given!r} now" for key, (saved, given) in differences.items())
        raise ValueError(
            f"{out_dir} was trained with another configuration; resuming it would mix two "
            f"experiments. Keys that differ: {listed}. Pass the same --set options as the "
            f"run (its recipe is in {CHECKPOINT_DIR}/state.json), or start a new run in another --out. "
            f"Keys that may change on resume: {', '.join(RESUMABLE_CHANGES)}."
        )
    if state["epoch"] >= _run_epochs(config, state) and state["step"] == 0:
        raise ValueError(
            f"{out_dir} already completed {state['epoch']} epochs (epochs={_run_epochs(config, state)}): "
            f"nothing to resume. Pass --epochs N with N > {state['epoch']} to train it further."
        )
    return state


def clear_run(out_dir):
    """Removes what a run wrote into `out_dir` (`RUN_FILES` and `eval-*/`), nothing else."""
    if not os.path.isdir(out_dir):
        return
    for name in os.listdir(out_dir):
        path = os.path.join(out_dir, name)
        if name in RUN_FILES or (name.startswith("eval-") and os.path.isdir(path)):
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def check_fresh_start(out_dir, force=False):
    """A new run must not overwrite a finished or interrupted run by accident; `force` clears it."""
    if force:
        clear_run(out_dir)
        return
    if _is_finished(out_dir):
        raise ValueError(
            f"{out_dir} holds a finished run ({REPORT_FILE} status 'completed'): pass another --out, "
            "--force to replace it (its model, reports, checkpoint and eval-*/ are removed), or "
            "--resume --epochs N to train it further."
        )
    state = read_checkpoint(out_dir)
    if state is None:
        return
    epochs = _run_epochs(state["config"], state)
    if state["epoch"] < epochs or state["step"] > 0:
        raise ValueError(
            f"{out_dir} holds the checkpoint of an interrupted run (epoch {state['epoch']}, step "
            f"{state['step']}, of {epochs} epochs): add --resume to continue it, "
            f"--force to start over in it, or pass another --out."
        )
    shutil.rmtree(os.path.join(out_dir, CHECKPOINT_DIR))


def _saved_observed(out_dir):
    path = os.path.join(out_dir, "observed_labels.npz")
    if not os.path.exists(path):
        raise ValueError(f"Cannot resume {out_dir}: {path} (the drawn training labels) is missing.")
    return np.load(path)["observed_labels"]


def plan_run(config, out_dir, resume=False, force=False):
    """Checks a run and decides everything it needs before training (see `RunPlan`).

    Settings are checked before any data is read; the loss is built once the
    budget is known, so a loss with an epoch schedule follows the epochs the
    run trains (`min_steps` may add some).

    Args:
        config: a recipe dict.
        out_dir: str, the run directory.
        resume: bool, continue the interrupted run in `out_dir`.
        force: bool, replace a finished or interrupted run in `out_dir`.

    Returns:
        A `RunPlan`.
    """
    if resume and force:
        raise ValueError("--resume continues a run and --force replaces it: pass one. Received: both")
    # Keys the config leaves out take their defaults; callers of `train` other than the CLI get the same checks.
    config = check_settings({**method_defaults(), **config})
    check_loss_settings(config)
    pretraining = chained_pretraining(config, out_dir, resume=resume)
    jit_compile = resolve_jit_compile(config["jit_compile"])
    distribution = Distribution.from_config(config)
    distribution.check_model_config(config)
    resumed = resume_point(config, out_dir) if resume else None
    if not resume:
        check_fresh_start(out_dir, force=force)
    keras.utils.set_random_seed(config["seed"])
    first_epoch = resumed["epoch"] if resumed else 0
    data = load_data(config, observed_labels=_saved_observed(out_dir) if resumed else None, first_epoch=first_epoch)
    budget = training_budget(config, data.num_train)
    if resumed and resumed["steps_per_epoch"] != budget.steps_per_epoch:
        raise ValueError(
            f"Cannot resume {out_dir}: its epochs had {resumed['steps_per_epoch']} steps, the data now "
            f"gives {budget.steps_per_epoch}: the training data changed since the run started."
        )
    distribution.check_batches(config["batch_size"], data.num_train, "training")
    distribution.check_batches(config["batch_size"], data.num_test, "test")
    if data.val is not None:
        distribution.check_batches(config["batch_size"], data.num_val, "validation")
    loss = build_loss({**config, "epochs": budget.epochs})  # epoch schedules follow the run's epochs
    distribution.check_loss(loss)
    return RunPlan(
        config=config, out_dir=out_dir, data=data, budget=budget, loss=loss,
        distribution=distribution, jit_compile=jit_compile, resumed=resumed, pretraining=pretraining,
    )


def _visible_devices():
    """The backend's devices, e.g. `cpu:0`, or `"cpu"` where Keras cannot list them (PyTorch)."""
    try:
        return ", ".join(keras.distribution.list_devices())
    except (AttributeError, RuntimeError, ValueError):
        import torch  # the only backend without a Keras device list

        return "cuda" if torch.cuda.is_available() else "cpu"


def describe_plan(plan):
    """The run plan as lines: images per split, labels, steps, devices."""
    data, budget, config = plan.data, plan.budget, plan.config
    validation = (
        f"{data.num_val} validation (val_map against {data.val_labels} labels)" if data.val is not None
        else "no validation split (val_fraction unset: the last epoch is kept)"
    )
    lines = [
        f"Run plan for {plan.out_dir}:",
        f"  images: {data.num_train} training, {validation}, {data.num_test} test",
        f"  labels: {len(data.class_names)} ({', '.join(data.class_names[:8])}"
        + (", ..." if len(data.class_names) > 8 else "") + f"), training regime {config['regime']}",
        f"  steps: {budget.steps_per_epoch} per epoch of {config['batch_size']} images x {budget.epochs} epochs "
        f"= {budget.total_steps} steps",
        f"  devices: {plan.distribution.devices} used of {_visible_devices()} ({keras.backend.backend()}, "
        f"distribute={plan.distribution.mode}, jit_compile={plan.jit_compile})",
    ]
    if plan.pretraining:
        pretraining = plan.pretraining
        lines.append(
            f"  pretraining: the patch embedder, {pretraining['objective']}, on the training images: "
            + ("reusing " if pretraining["reuse"] else f"{pretraining['steps']} steps into ")
            + f"{pretraining['weights']}, then training from it"
        )
    if plan.resumed:
        lines.append(
            f"  resuming after epoch {plan.resumed['epoch']}, step {plan.resumed['step']}: "
            f"{plan.steps_to_train} steps to train"
        )
    return lines
