"""A training run: a recipe dict in, a trained model, its files and a report out.

The CLI (`cli.py train`) only parses arguments and calls `train`; everything a
run does is here, so user code can call it too.
"""

import os
import time

import keras
import numpy as np

from patchpu_keras.data.recipe_data import load_data
from patchpu_keras.inference import predict_labelled
from patchpu_keras.losses import StatefulLoss
from patchpu_keras.metrics import MeanAveragePrecision, per_class_average_precision
from patchpu_keras.models import PatchPUClassifier
from patchpu_keras.training.builders import build_loss, build_model, build_optimizer, training_budget
from patchpu_keras.training.diagnostics import TrainingDiagnostics
from patchpu_keras.training.run_checkpoint import RunCheckpoint, write_json_atomically
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


def train(config, out_dir, verbose="auto", num_heatmaps=4):
    """Trains, evaluates and reports one recipe.

    Writes into `out_dir`: `model.keras` and `history.json` after every epoch
    (atomically, so a crash keeps the last epoch), `observed_labels.npz` (the
    drawn annotation with the training images' names, for reproducibility),
    `report.json` and `heatmaps/*.png`. If training stops on an error, `report.json` records the
    error and the epochs completed before it is re-raised.

    Args:
        config: a recipe dict (see `recipes/demo.py`).
        out_dir: str, run directory (created).
        verbose: Keras `fit` verbosity.
        num_heatmaps: int, test images rendered as attention heat maps.

    Returns:
        The report dict: `map`, `per_class_ap`, `history`, `config`, `seconds`,
        counts, `source`, `evaluated_on` ("full_labels", or "observed_labels
        ..." when the test split was held out of observed-only data) and, for
        data on disk, `files_skipped` and `data_notes`.
    """
    loss = _checked_loss(config)
    keras.utils.set_random_seed(config["seed"])
    data = load_data(config)
    os.makedirs(out_dir, exist_ok=True)
    class_names = data.class_names
    num_labels = len(class_names)
    observed = data.observed_labels
    np.savez(
        os.path.join(out_dir, "observed_labels.npz"),
        observed_labels=observed,
        image_names=np.asarray(data.train_names or [], dtype=str),
        class_names=np.asarray(class_names),
        regime=config["regime"],
        label_seed=config["label_seed"],
        redraw_each_epoch=bool(config.get("redraw_each_epoch", False)),
    )
    budget = training_budget(config, data.num_train)
    if budget.epochs != config["epochs"]:  # losses with epoch schedules follow the run's epochs
        loss = build_loss({**config, "epochs": budget.epochs})
    loss_state = loss.make_state(observed) if isinstance(loss, StatefulLoss) else None
    model = build_model(config, num_labels, label_names=class_names, loss_state=loss_state)
    model.compile(
        optimizer=build_optimizer(config, budget.steps_per_epoch, loss, budget.lr_decay_steps, model=model),
        loss=loss,
        metrics=[MeanAveragePrecision(num_labels, capacity=data.num_test)],
        jit_compile=keras.backend.backend() == "jax",
    )
    index = data.index
    report = {
        "status": "running",
        "backend": keras.backend.backend(),
        "num_parameters": model.count_params(),
        "num_patches": getattr(model, "num_patches", None),
        "num_train_images": data.num_train,
        "num_test_images": data.num_test,
        "class_names": class_names,
        "source": data.source,
        "evaluated_on": data.evaluated_on,
        "config": config,
        "budget": {**budget._asdict(), "total_steps": budget.total_steps},
    }
    if index is not None:
        report.update(data_dir=index.root, files_skipped=index.problem_counts(), data_notes=index.notes)
    checkpoint = RunCheckpoint(out_dir)
    # Diagnostics first: the checkpoint records the logs they add.
    callbacks = [checkpoint] if data.probe is None else [
        TrainingDiagnostics(data.probe, config["batch_size"], data.probe_objects, config.get("theta", 0.0)),
        checkpoint,
    ]
    start = time.time()
    try:
        model.fit(
            data.train,
            epochs=budget.epochs,
            validation_data=data.test,
            callbacks=callbacks,
            shuffle=False,  # the dataset reshuffles itself every epoch
            verbose=verbose,
        )
    except BaseException as error:
        report.update(
            status="failed",
            error=f"{type(error).__name__}: {error}",
            history=checkpoint.history,
            epochs_completed=len(checkpoint.history.get("loss", [])),
            seconds=time.time() - start,
        )
        write_json_atomically(os.path.join(out_dir, "report.json"), report)
        raise
    train_seconds = time.time() - start

    outputs = predict_labelled(model, data.test, config["batch_size"], keep=num_heatmaps)
    per_class = per_class_average_precision(outputs["full_labels"], outputs["probabilities"])
    heatmap_dir = os.path.join(out_dir, "heatmaps")
    os.makedirs(heatmap_dir, exist_ok=True)
    boxes, levels = (
        model.patches.patch_boxes(model.image_size, model.image_size)
        if isinstance(model, PatchPUClassifier)
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
    write_json_atomically(os.path.join(out_dir, "report.json"), report)
    return report
