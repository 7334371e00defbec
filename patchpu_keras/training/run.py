"""A training run: a recipe dict in, a trained model, its files and a report out.

The CLI (`cli.py train`) only parses arguments and calls `train`; everything a
run does is here, so user code can call it too.
"""

import os
import shutil
import time

import keras
import numpy as np

from patchpu_keras.data.recipe_data import load_data
from patchpu_keras.inference import predict_labelled
from patchpu_keras.losses import LossStateCallback, StatefulLoss
from patchpu_keras.metrics import MeanAveragePrecision, per_class_average_precision
from patchpu_keras.models import PatchPUClassifier, TrainingModel
from patchpu_keras.training.builders import (
    build_loss,
    build_model,
    build_optimizer,
    resolve_jit_compile,
    training_budget,
)
from patchpu_keras.training.diagnostics import TrainingDiagnostics
from patchpu_keras.training.distribution import Distribution, ValidationMeanAveragePrecision
from patchpu_keras.training.non_finite_loss import StopOnNonFiniteLoss
from patchpu_keras.training.run_checkpoint import (
    CHECKPOINT_DIR,
    RESUMABLE_CHANGES,
    NonFiniteLossError,
    RunCheckpoint,
    config_differences,
    read_checkpoint,
    restore_checkpoint,
    write_json_atomically,
)
from patchpu_keras.training.tensorboard_log import tensorboard_callback, write_evaluation
from patchpu_keras.visualization import attention_figure


def _checked_loss(config):
    """The recipe's loss, built before any data is read so a wrong setting fails at once."""
    if config["loss"] == "full_bce" and config["regime"] != "full":
        raise ValueError(
            "The full_bce loss is the fully-labelled upper bound and trains on full "
            "labels: add `--set regime=full`. "
            f"Received: loss='full_bce', regime={config['regime']!r}"
        )
    return build_loss(config)


def _resume_point(config, out_dir):
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


def _run_epochs(config, state):
    """The epochs `config` trains for with the checkpoint's steps per epoch (`min_steps` may add some)."""
    if not state.get("steps_per_epoch"):
        return config["epochs"]
    return training_budget(config, state["steps_per_epoch"] * config["batch_size"]).epochs


def _check_fresh_start(out_dir):
    """A new run must not overwrite an interrupted one's checkpoint by accident."""
    state = read_checkpoint(out_dir)
    if state is None:
        return
    epochs = _run_epochs(state["config"], state)
    if state["epoch"] < epochs or state["step"] > 0:
        raise ValueError(
            f"{out_dir} holds the checkpoint of an interrupted run (epoch {state['epoch']}, step "
            f"{state['step']}, of {epochs} epochs): add --resume to continue it, "
            f"or delete {os.path.join(out_dir, CHECKPOINT_DIR)} (or pass another --out) to start over."
        )
    shutil.rmtree(os.path.join(out_dir, CHECKPOINT_DIR))


def _write_observed(out_dir, data, class_names, config):
    np.savez(
        os.path.join(out_dir, "observed_labels.npz"),
        observed_labels=data.observed_labels,
        image_names=np.asarray(data.train_names or [], dtype=str),
        class_names=np.asarray(class_names),
        regime=config["regime"],
        label_seed=config["label_seed"],
        redraw_each_epoch=bool(config.get("redraw_each_epoch", False)),
    )


def _saved_observed(out_dir):
    path = os.path.join(out_dir, "observed_labels.npz")
    if not os.path.exists(path):
        raise ValueError(f"Cannot resume {out_dir}: {path} (the drawn training labels) is missing.")
    return np.load(path)["observed_labels"]


def train(config, out_dir, verbose="auto", num_heatmaps=4, resume=False):
    """Trains, evaluates and reports one recipe.

    Writes into `out_dir`: `model.keras` and `history.json` after every epoch
    (atomically, so a crash keeps the last epoch), `checkpoint/` after every
    epoch and every `config["checkpoint_every"]` steps (what `resume` needs),
    `observed_labels.npz` (the drawn annotation with the training images'
    names, for reproducibility), TensorBoard event files under `logs/`,
    `report.json` and `heatmaps/*.png`. If training stops on an error,
    `report.json` records the error (`status` "failed", `reason`) and the epochs
    completed before it is re-raised; a NaN or infinite loss stops training at
    once with a `NonFiniteLossError` naming the epoch, the step and the last
    good checkpoint, which is kept.

    Args:
        config: a recipe dict (see `recipes/demo.py`).
        out_dir: str, run directory (created).
        verbose: Keras `fit` verbosity.
        num_heatmaps: int, test images rendered as attention heat maps.
        resume: bool, continue the interrupted run in `out_dir` from its last
            checkpoint (docs/scaling.md#resume-after-a-crash). The recipe must be the one it
            was started with, except for `RESUMABLE_CHANGES` (`epochs` extends it).

    Returns:
        The report dict: `map`, `per_class_ap`, `history`, `config`, `seconds`,
        `budget` (epochs and steps trained), `devices`, `distribute`,
        `jit_compile`, counts, `source`, `evaluated_on` ("full_labels", or "observed_labels
        ..." when the test split was held out of observed-only data) and, for
        data on disk, `files_skipped` and `data_notes`.
    """
    loss = _checked_loss(config)
    jit_compile = resolve_jit_compile(config.get("jit_compile", "auto"))  # before reading data
    distribution = Distribution.from_config(config)
    distribution.check_loss(loss)
    distribution.check_model_config(config)
    resumed = _resume_point(config, out_dir) if resume else None
    if not resume:
        _check_fresh_start(out_dir)
    keras.utils.set_random_seed(config["seed"])
    first_epoch = resumed["epoch"] if resumed else 0
    data = load_data(
        config, observed_labels=_saved_observed(out_dir) if resumed else None, first_epoch=first_epoch
    )
    os.makedirs(out_dir, exist_ok=True)
    class_names = data.class_names
    num_labels = len(class_names)
    observed = data.observed_labels
    if not resumed:
        _write_observed(out_dir, data, class_names, config)
    budget = training_budget(config, data.num_train)
    steps_per_epoch = budget.steps_per_epoch
    if resumed and resumed["steps_per_epoch"] != steps_per_epoch:
        raise ValueError(
            f"Cannot resume {out_dir}: its epochs had {resumed['steps_per_epoch']} steps, the data now "
            f"gives {steps_per_epoch}: the training data changed since the run started."
        )
    distribution.check_batches(config["batch_size"], data.num_train, "training")
    distribution.check_batches(config["batch_size"], data.num_test, "test")
    if budget.epochs != config["epochs"]:  # losses with epoch schedules follow the run's epochs
        loss = build_loss({**config, "epochs": budget.epochs})
    with distribution.scope():
        classifier = distribution.prepare_model(build_model(config, num_labels, label_names=class_names))
        # A stateful loss's tables belong to the run: they train beside the model, in its checkpoint.
        loss_state = loss.make_state(observed) if isinstance(loss, StatefulLoss) else None
        model = classifier if loss_state is None else TrainingModel(classifier, loss_state)
        model.compile(
            optimizer=build_optimizer(config, steps_per_epoch, loss, budget.lr_decay_steps, model=model),
            loss=loss,
            metrics=[MeanAveragePrecision(num_labels, capacity=data.num_test)] if distribution.in_graph_map else [],
            jit_compile=jit_compile,
        )
        if resumed:
            restore_checkpoint(model, resumed)
        index = data.index
        report = {
            "status": "running",
            "backend": keras.backend.backend(),
            "devices": distribution.devices,
            "distribute": distribution.mode,
            "jit_compile": bool(model.jit_compile),
            "num_parameters": model.count_params(),
            "num_patches": getattr(classifier, "num_patches", None),
            "num_train_images": data.num_train,
            "num_test_images": data.num_test,
            "class_names": class_names,
            "source": data.source,
            "evaluated_on": data.evaluated_on,
            "config": config,
            "budget": {**budget._asdict(), "total_steps": budget.total_steps},
        }
        if resumed:
            report["resumed_from"] = {key: resumed[key] for key in ("epoch", "step", "iterations")}
        if index is not None:
            report.update(data_dir=index.root, files_skipped=index.problem_counts(), data_notes=index.notes)
        checkpoint = RunCheckpoint(
            out_dir, config=config, steps_per_epoch=steps_per_epoch,
            checkpoint_every=config.get("checkpoint_every"), resumed_from=resumed,
        )
        # The guard comes first, so a non-finite step is never checkpointed; the diagnostics
        # next, so TensorBoard and the checkpoint record the logs they add; TensorBoard before
        # the checkpoint, so a crash between them repeats an epoch's point rather than losing it.
        guard = StopOnNonFiniteLoss(checkpoint)
        diagnostics = [] if data.probe is None else [
            TrainingDiagnostics(data.probe, config["batch_size"], data.probe_objects, config.get("theta", 0.0))
        ]
        loss_state_callbacks = [] if loss_state is None else [LossStateCallback(loss, loss_state)]
        callbacks = [guard, *loss_state_callbacks, *diagnostics, tensorboard_callback(out_dir), checkpoint]
        if not distribution.in_graph_map:
            callbacks.insert(0, ValidationMeanAveragePrecision(data.test, config["batch_size"]))
        start = time.time()
        try:
            if resumed and resumed["step"] > 0:
                # The interrupted epoch: the same order, without the steps already trained.
                model.fit(
                    data.train.skip(resumed["step"]), initial_epoch=first_epoch, epochs=first_epoch + 1,
                    validation_data=data.test, callbacks=callbacks, shuffle=False, verbose=verbose,
                )
                first_epoch += 1
            if first_epoch < budget.epochs:
                model.fit(
                    data.train,
                    initial_epoch=first_epoch,
                    epochs=budget.epochs,
                    validation_data=data.test,
                    callbacks=callbacks,
                    shuffle=False,  # the dataset reshuffles itself every epoch
                    verbose=verbose,
                )
        except BaseException as error:
            reason = (
                "non-finite loss" if isinstance(error, NonFiniteLossError)
                else "interrupted" if isinstance(error, KeyboardInterrupt) else "error"
            )
            report.update(
                status="failed",
                reason=reason,
                error=f"{type(error).__name__}: {error}",
                history=checkpoint.history,
                epochs_completed=len(checkpoint.history.get("loss", [])),
                last_checkpoint=checkpoint.last_saved and dict(zip(("epoch", "step"), checkpoint.last_saved)),
                seconds=time.time() - start,
            )
            if guard.failure is not None:
                report["non_finite"] = guard.failure
            write_json_atomically(os.path.join(out_dir, "report.json"), report)
            raise
        train_seconds = checkpoint.train_seconds()

        outputs = predict_labelled(classifier, data.test, config["batch_size"], keep=num_heatmaps)
        per_class = per_class_average_precision(outputs["full_labels"], outputs["probabilities"])
        heatmap_dir = os.path.join(out_dir, "heatmaps")
        os.makedirs(heatmap_dir, exist_ok=True)
        boxes, levels = (
            classifier.backbone.patches.patch_boxes(classifier.image_size, classifier.image_size)
            if isinstance(classifier, PatchPUClassifier)
            else (None, None)
        )
        for position, image in enumerate(outputs["images"] if boxes is not None else []):
            figure = attention_figure(
                image, outputs["probabilities"][position], outputs["attention"][position], boxes, levels, class_names,
            )
            figure.save(os.path.join(heatmap_dir, f"test_{position:04d}.png"))
        report.update(
            status="completed",
            map=float(np.nanmean(per_class)),
            per_class_ap={
                name: (None if np.isnan(ap) else float(ap)) for name, ap in zip(class_names, per_class)
            },
            history=checkpoint.history,
            epochs_completed=len(checkpoint.history.get("loss", [])),
            train_seconds=train_seconds,
            seconds=time.time() - start,
        )
        write_evaluation(out_dir, report["map"], report["per_class_ap"], step=report["epochs_completed"])
        write_json_atomically(os.path.join(out_dir, "report.json"), report)
        return report
