"""A training run: a recipe dict in, a trained model, its files and a report out.

`train` is a plan (`patchpu_keras.training.plan.plan_run`: checks, resume
point, data, budget, the loss) and its execution (`run_plan`). The CLI
(`cli.py train`) only parses arguments and calls `train`; everything a run
does is here, so user code can call it too.
"""

import os
import time

import keras
import numpy as np

from patchpu_keras.evaluation import score_held_out, small_split_warning, split_validation_predictions
from patchpu_keras.losses import LossStateCallback, StatefulLoss
from patchpu_keras.metrics import MeanAveragePrecision
from patchpu_keras.metrics.classification import DEFAULT_THRESHOLD, classification_report
from patchpu_keras.models import PatchPUClassifier, TrainingModel, load_model
from patchpu_keras.models.training_model import task_of
from patchpu_keras.pretraining import PRETRAINED_EMBEDDER, pretrain_for_run
from patchpu_keras.training.best_epoch import BEST_MODEL, BestEpoch
from patchpu_keras.training.builders import build_model, build_optimizer
from patchpu_keras.training.diagnostics import TrainingDiagnostics
from patchpu_keras.training.distribution import ValidationMeanAveragePrecision
from patchpu_keras.training.non_finite_loss import StopOnNonFiniteLoss
from patchpu_keras.training.plan import REPORT_FILE, describe_plan, plan_run
from patchpu_keras.training.run_checkpoint import NonFiniteLossError, RunCheckpoint, write_json_atomically
from patchpu_keras.training.run_progress import RunProgress
from patchpu_keras.thresholds import choose_thresholds
from patchpu_keras.training.tensorboard_log import LOG_DIR, tensorboard_callback, write_evaluation
from patchpu_keras.visualization import attention_figure

HEATMAP_DIR = "heatmaps"


def train(config, out_dir, verbose="auto", num_heatmaps=4, resume=False, force=False, print_fn=print,
          callbacks=()):
    """Trains, evaluates and reports one recipe.

    Prints the run plan (images per split, labels, steps, devices), then a
    time estimate after the first steps and, after each epoch, the elapsed and
    remaining time of the run, beside Keras' progress bar.

    Writes into `out_dir`: `model.keras` and `history.json` after every epoch
    (atomically, so a crash keeps the last epoch), `best_model.keras` (the
    epoch with the best validation mAP, when the recipe has a validation split:
    `val_fraction`), `checkpoint/` after every epoch and every
    `config["checkpoint_every"]` steps (what `resume` needs),
    `observed_labels.npz` (the drawn annotation with the training images'
    names, for reproducibility), TensorBoard event files under `logs/`,
    `report.json` and `heatmaps/*.png`; with `config["pretrain_steps"]` > 0, first
    `pretrained_embedder.weights.h5`, the embedder pretrained on the run's training
    images that the model starts from (`patchpu_keras.pretraining`). If training stops on an error,
    `report.json` records the error (`status` "failed", `reason`) and the epochs
    completed before it is re-raised; a NaN or infinite loss stops training at
    once with a `NonFiniteLossError` naming the epoch, the step and the last
    good checkpoint, which is kept.

    The test split is scored once, at the end, with the kept model: the best
    validation epoch when there is a validation split, else the last epoch
    (the paper's protocol). `early_stopping_patience` stops a run whose
    validation mAP has not improved for that many epochs.

    Args:
        config: a recipe dict (see `recipes/demo.py`).
        out_dir: str, run directory (created). A finished or interrupted run
            there is refused unless `resume` or `force`.
        verbose: Keras `fit` verbosity; 0 also silences the plan and times.
        num_heatmaps: int, test images rendered as attention heat maps.
        resume: bool, continue the interrupted run in `out_dir` from its last
            checkpoint (docs/scaling.md#resume-after-a-crash). The recipe must be the one it
            was started with, except for `RESUMABLE_CHANGES` (`epochs` extends it).
        force: bool, replace the run in `out_dir` (its files and `eval-*/`
            folders are removed first).
        print_fn: callable taking a str, where the plan and times go.
        callbacks: more Keras callbacks, run after the run's own (their
            epoch logs hold `val_map`).

    Returns:
        The report dict: `map`, `per_class_ap` (of the kept epoch, on the test
        split), `kept_epoch`, `kept_model`, `best_val_map`, `validated_on`,
        `stopped_early`, `history`, `config`, `seconds`, `budget` (epochs and
        steps trained), `devices`, `distribute`, `jit_compile`, counts,
        `pretraining` (when `pretrain_steps` > 0), `source`, `evaluated_on` ("full_labels", or "observed_labels ..."
        when the test split was held out of observed-only data), `warnings`
        and, for data on disk, `files_skipped` and `data_notes`.
    """
    plan = plan_run(config, out_dir, resume=resume, force=force)
    print_fn = print_fn if verbose != 0 else (lambda line: None)
    for line in describe_plan(plan):
        print_fn(line)
    return run_plan(plan, verbose=verbose, num_heatmaps=num_heatmaps, print_fn=print_fn, callbacks=callbacks)


def _write_observed(plan):
    data, config = plan.data, plan.config
    np.savez(
        os.path.join(plan.out_dir, "observed_labels.npz"),
        observed_labels=data.observed_labels,
        image_names=np.asarray(data.train_names or [], dtype=str),
        class_names=np.asarray(data.class_names),
        regime=config["regime"],
        label_seed=config["label_seed"],
        redraw_each_epoch=bool(config["redraw_each_epoch"]),
    )


def _compiled_model(plan):
    """The recipe's model, compiled with the plan's loss (and restored from the checkpoint when resuming)."""
    config, data, loss, distribution = plan.config, plan.data, plan.loss, plan.distribution
    if plan.pretraining:
        config = {**config, "embedder_weights": plan.pretraining["weights"]}
    classifier = distribution.prepare_model(build_model(config, len(data.class_names), label_names=data.class_names))
    # A stateful loss's tables belong to the run: they train beside the model, in its checkpoint.
    loss_state = loss.make_state(data.observed_labels) if isinstance(loss, StatefulLoss) else None
    model = classifier if loss_state is None else TrainingModel(classifier, loss_state)
    in_graph_map = data.val is not None and distribution.in_graph_map
    model.compile(
        optimizer=build_optimizer(config, plan.budget.steps_per_epoch, loss, plan.budget.lr_decay_steps, model=model),
        loss=loss,
        metrics=[MeanAveragePrecision(len(data.class_names), capacity=data.num_val)] if in_graph_map else [],
        jit_compile=plan.jit_compile,
    )
    if plan.resumed:
        from patchpu_keras.training.run_checkpoint import restore_checkpoint

        restore_checkpoint(model, plan.resumed)
    return model


def _callbacks(plan, model, checkpoint, best, print_fn):
    """The run's callbacks, in the order their logs need."""
    data, config = plan.data, plan.config
    callbacks = []
    if data.val is not None and not plan.distribution.in_graph_map:
        # Puts val_map into the logs before anything reads them.
        callbacks.append(ValidationMeanAveragePrecision(data.val, config["batch_size"]))
    # Before anything saves: a non-finite step is never checkpointed.
    callbacks.append(StopOnNonFiniteLoss(checkpoint))
    if isinstance(model, TrainingModel):
        # The loss state's epoch and end-of-epoch update, before the epoch is saved.
        callbacks.append(LossStateCallback(plan.loss, model.loss_state))
    if data.probe is not None:
        # Adds the diagnostics to the logs that TensorBoard and the checkpoint record.
        callbacks.append(TrainingDiagnostics(data.probe, config["batch_size"], config["theta"], data.probe_objects))
    if best is not None:
        callbacks.append(best)
    # TensorBoard before the checkpoint: a crash between them repeats an epoch's point rather than losing it.
    callbacks += [tensorboard_callback(plan.out_dir), checkpoint]
    epochs_to_train = plan.budget.epochs - plan.first_epoch
    callbacks.append(RunProgress(plan.steps_to_train, epochs_to_train, print_fn=print_fn))
    return callbacks


def _base_report(plan, model):
    data = plan.data
    report = {
        "status": "running",
        "backend": keras.backend.backend(),
        "devices": plan.distribution.devices,
        "distribute": plan.distribution.mode,
        "jit_compile": bool(model.jit_compile),
        "num_parameters": model.count_params(),
        "num_patches": getattr(task_of(model), "num_patches", None),
        "num_train_images": data.num_train,
        "num_val_images": data.num_val,
        "num_test_images": data.num_test,
        "class_names": data.class_names,
        "source": data.source,
        "evaluated_on": data.evaluated_on,
        "validated_on": data.validated_on,
        "config": plan.config,
        "budget": {**plan.budget._asdict(), "total_steps": plan.budget.total_steps},
        "warnings": [text for text in (
            small_split_warning(data.num_test, "test"),
            data.val is not None and small_split_warning(data.num_val, "validation"),
        ) if text],
    }
    if plan.pretraining:
        report["pretraining"] = plan.pretraining
    if plan.resumed:
        report["resumed_from"] = {key: plan.resumed[key] for key in ("epoch", "step", "iterations")}
    if data.index is not None:
        report.update(data_dir=data.index.root, files_skipped=data.index.problem_counts(), data_notes=data.index.notes)
    return report


def _fit(plan, model, callbacks, verbose):
    """`model.fit` over the plan's epochs, each epoch one iteration of `data.train`.

    The training pipeline draws a new order (flips, redraws) each time an iterator is made
    from it, and a pipeline built for epoch `e` starts at the `e`-th draw. Keras' `fit` makes
    one iterator per epoch when it is given `steps_per_epoch` (it makes the next one as an
    epoch ends and reuses it), and two without; so `steps_per_epoch` is always given, and a
    resumed epoch's remaining steps are read through a pipeline of unknown length, after which
    `fit` makes no extra iterator. Then a resumed run's epochs get the uninterrupted run's
    batches (`tests/training/test_resume.py`).
    """
    data, steps = plan.data, plan.budget.steps_per_epoch
    first_epoch = plan.first_epoch
    fit = dict(validation_data=data.val, callbacks=callbacks, verbose=verbose,
               shuffle=False)  # the dataset reshuffles itself every epoch
    if plan.resumed and plan.resumed["step"] > 0:
        # The interrupted epoch: the same order, without the steps already trained.
        rest = data.train.skip(plan.resumed["step"]).filter(lambda *_: True)  # length unknown to Keras
        model.fit(rest, initial_epoch=first_epoch, epochs=first_epoch + 1,
                  steps_per_epoch=steps - plan.resumed["step"], **fit)
        first_epoch += 1
    if first_epoch < plan.budget.epochs and not model.stop_training:
        model.fit(data.train, initial_epoch=first_epoch, epochs=plan.budget.epochs, steps_per_epoch=steps, **fit)


def _write_heatmaps(model, scores, out_dir, class_names):
    heatmap_dir = os.path.join(out_dir, HEATMAP_DIR)
    os.makedirs(heatmap_dir, exist_ok=True)
    if not isinstance(model, PatchPUClassifier):
        return
    boxes, levels = model.backbone.patches.patch_boxes(model.image_size, model.image_size)
    outputs = scores["outputs"]
    for position, image in enumerate(outputs["images"]):
        figure = attention_figure(
            image, outputs["probabilities"][position], outputs["attention"][position], boxes, levels, class_names,
        )
        figure.save(os.path.join(heatmap_dir, f"test_{position:04d}.png"))


def _ship_thresholds(kept, plan, path):
    """Chooses the kept model's per-class thresholds on the validation split and saves them in its file.

    `choose_thresholds` reads the split's full labels where it has them, else
    its observed positives (docs/evaluation.md#per-class-thresholds).
    """
    validation = split_validation_predictions(kept, plan.data, plan.config["batch_size"])
    chosen = choose_thresholds(
        validation["probabilities"], full_labels=validation["full_labels"],
        observed_labels=validation["observed_labels"],
    )
    kept.set_thresholds(chosen.thresholds)
    temporary = path + ".tmp.keras"
    kept.save(temporary)
    os.replace(temporary, path)
    names = plan.data.class_names
    return {
        "thresholds": {name: float(value) for name, value in zip(names, chosen.thresholds)},
        "threshold_rules": dict(zip(names, chosen.rules)),
    }


def _decision_scores(kept, scores, names):
    """Micro and macro precision / recall / F1 on the test split at the shipped thresholds and at 0.5."""
    outputs = scores["outputs"]
    report = classification_report(outputs["full_labels"], outputs["probabilities"], names,
                                   thresholds=kept.thresholds)
    return {"at_thresholds": report["at_model_thresholds"], f"at_{DEFAULT_THRESHOLD}": report["at_threshold"]}


def written_files(report):
    """What a run wrote into its directory, as names relative to it."""
    files = ["model.keras", "history.json", REPORT_FILE, "observed_labels.npz", "checkpoint/", f"{LOG_DIR}/",
             f"{HEATMAP_DIR}/"]
    if report.get("kept_model") == BEST_MODEL:
        files.insert(1, BEST_MODEL)
    if report.get("pretraining"):
        files.append(PRETRAINED_EMBEDDER)
    return files


def _pretrain(plan, verbose, print_fn):
    """Pretrains the run's embedder into its folder (`pretrain_steps` > 0), unless a resumed run has it."""
    pretraining = plan.pretraining
    if pretraining["reuse"]:
        print_fn(f"Reusing the pretrained patch embedder {pretraining['weights']}")
        return
    found = pretrain_for_run(plan.config, pretraining["weights"], pretrain_steps=pretraining["steps"],
                             objective=pretraining["objective"], verbose=verbose)
    pretraining.update(num_patches=found["num_patches"], final_loss=found["final_loss"], seconds=found["seconds"])
    print_fn(f"Pretrained the patch embedder ({found['objective']}) on {found['num_patches']} patches, "
             f"{found['steps']} steps in {found['seconds']:.0f} s (final loss {found['final_loss']:.3f})")
    keras.utils.set_random_seed(plan.config["seed"])  # the model's initial weights follow the run's seed


def run_plan(plan, verbose="auto", num_heatmaps=4, print_fn=print, callbacks=()):
    """Trains a `RunPlan`, scores the kept epoch on the test split once, and writes the report (see `train`)."""
    out_dir, data, config = plan.out_dir, plan.data, plan.config
    os.makedirs(out_dir, exist_ok=True)
    if not plan.resumed:
        _write_observed(plan)
    if plan.pretraining:
        _pretrain(plan, verbose, print_fn)
    with plan.distribution.scope():
        model = _compiled_model(plan)
        report = _base_report(plan, model)
        checkpoint = RunCheckpoint(
            out_dir, config=config, steps_per_epoch=plan.budget.steps_per_epoch,
            checkpoint_every=config.get("checkpoint_every"), resumed_from=plan.resumed,
        )
        best = None if data.val is None else BestEpoch(
            out_dir, checkpoint.history, patience=config.get("early_stopping_patience"))
        callbacks = _callbacks(plan, model, checkpoint, best, print_fn) + list(callbacks)
        start = time.time()
        try:
            _fit(plan, model, callbacks, verbose)
        except BaseException as error:
            guard = next(callback for callback in callbacks if isinstance(callback, StopOnNonFiniteLoss))
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
            write_json_atomically(os.path.join(out_dir, REPORT_FILE), report)
            raise
        train_seconds = checkpoint.train_seconds()
        epochs_completed = len(checkpoint.history.get("loss", []))
        kept = task_of(model) if best is None else load_model(best.path)
        if best is not None:
            report.update(_ship_thresholds(kept, plan, best.path))
        scores = score_held_out(kept, data.test, config["batch_size"], data.class_names, keep=num_heatmaps)
        report["test_decisions"] = _decision_scores(kept, scores, data.class_names)
        _write_heatmaps(kept, scores, out_dir, data.class_names)
        report.update(
            status="completed",
            map=scores["map"],
            per_class_ap=scores["per_class_ap"],
            kept_epoch=epochs_completed if best is None else best.best_epoch,
            kept_model="model.keras" if best is None else BEST_MODEL,
            best_val_map=None if best is None else best.best_value,
            stopped_early=bool(best is not None and best.stopped_early),
            history=checkpoint.history,
            epochs_completed=epochs_completed,
            train_seconds=train_seconds,
            seconds=time.time() - start,
        )
        report["files"] = written_files(report)
        write_evaluation(out_dir, report["map"], report["per_class_ap"], step=report["kept_epoch"])
        write_json_atomically(os.path.join(out_dir, REPORT_FILE), report)
        return report
