"""Training runs: a recipe dict in, a trained model and a report out.

The CLI (`cli.py train`) only parses arguments and calls `train`; everything a
run does is here, so user code can call it too.
"""

import os
import time

import keras
import numpy as np

from patchpu_keras import losses
from patchpu_keras.data.mosaics import fashion_mnist_mosaics
from patchpu_keras.data.pipeline import array_dataset
from patchpu_keras.data.regimes import observe
from patchpu_keras.metrics import MeanAveragePrecision, per_class_average_precision
from patchpu_keras.models import PatchPUClassifier
from patchpu_keras.training.run_checkpoint import RunCheckpoint, write_json_atomically
from patchpu_keras.visualization import attention_figure

__all__ = [
    "RunCheckpoint",
    "build_loss",
    "build_model",
    "build_optimizer",
    "load_data",
    "train",
]


def build_model(config, num_labels, label_names=None):
    """A `PatchPUClassifier` with the recipe's architecture."""
    return PatchPUClassifier(
        num_labels,
        image_size=config["image_size"],
        patch_size=config["patch_size"],
        stride=config.get("stride"),
        num_resolutions=config["num_resolutions"],
        downsample_factor=config["downsample_factor"],
        embedding_dim=config["embedding_dim"],
        mlp_units=config["mlp_units"],
        max_patches_per_resolution=config.get("max_patches_per_resolution"),
        label_names=label_names,
        seed=config["seed"],
    )


def build_optimizer(config, steps_per_epoch):
    """LAMB whose learning rate is multiplied by `lr_decay_rate` every `lr_decay_epochs`.

    The paper (sec. 4.1.2): lr 1e-3 halved every 5 epochs, weight decay 1e-4.
    """
    schedule = keras.optimizers.schedules.ExponentialDecay(
        config["learning_rate"],
        decay_steps=max(1, int(config["lr_decay_epochs"] * steps_per_epoch)),
        decay_rate=config["lr_decay_rate"],
        staircase=True,
    )
    return keras.optimizers.Lamb(schedule, weight_decay=config["weight_decay"])


def build_loss(config):
    """The recipe's loss instance (`loss` names a key of `losses.LOSSES`)."""
    if config["loss"] == "weak_negative":
        return losses.WeakNegative(theta=config.get("theta", 0.0))
    return losses.get(config["loss"])


def load_data(config):
    """Images and full labels of the recipe's dataset.

    Returns:
        A dict with `train_images`, `train_full_labels`, `test_images`,
        `test_full_labels` and `class_names`.
    """
    if config["dataset"] != "fashion_mnist_mosaics":
        raise ValueError(
            "Unknown dataset. Expected 'fashion_mnist_mosaics'. "
            f"Received: dataset={config['dataset']!r}"
        )
    mosaics = fashion_mnist_mosaics(
        num_train=config["num_train"],
        num_test=config["num_test"],
        canvas_size=config["image_size"],
        items_per_image=tuple(config["items_per_image"]),
        seed=config["data_seed"],
        fashion_mnist_dir=config.get("fashion_mnist_dir"),
    )
    return {
        "train_images": mosaics["train"]["images"],
        "train_full_labels": mosaics["train"]["full_labels"],
        "test_images": mosaics["test"]["images"],
        "test_full_labels": mosaics["test"]["full_labels"],
        "class_names": mosaics["class_names"],
    }


def _check_config(config):
    if config["loss"] == "full_bce" and config["regime"] != "full":
        raise ValueError(
            "The full_bce loss is the fully-labelled upper bound and trains on full "
            "labels: add `--set regime=full`. "
            f"Received: loss='full_bce', regime={config['regime']!r}"
        )
    if config["loss"] not in losses.LOSSES:
        raise ValueError(
            f"Unknown loss. Expected one of {sorted(losses.LOSSES)}. "
            f"Received: loss={config['loss']!r}"
        )


def train(config, out_dir, verbose="auto", num_heatmaps=4):
    """Trains, evaluates and reports one recipe.

    Writes into `out_dir`: `model.keras` and `history.json` after every epoch
    (atomically, so a crash keeps the last epoch), `observed_labels.npz` (the
    drawn annotation, for reproducibility), `report.json` and
    `heatmaps/*.png`. If training stops on an error, `report.json` records the
    error and the epochs completed before it is re-raised.

    Args:
        config: a recipe dict (see `recipes/demo.py`).
        out_dir: str, run directory (created).
        verbose: Keras `fit` verbosity.
        num_heatmaps: int, test images rendered as attention heat maps.

    Returns:
        The report dict: `map`, `per_class_ap`, `history`, `config`, `seconds`,
        and counts.
    """
    _check_config(config)
    os.makedirs(out_dir, exist_ok=True)
    keras.utils.set_random_seed(config["seed"])
    data = load_data(config)
    class_names = data["class_names"]
    num_labels = len(class_names)
    observed = observe(data["train_full_labels"], config["regime"], seed=config["label_seed"])
    np.savez(
        os.path.join(out_dir, "observed_labels.npz"),
        observed_labels=observed,
        class_names=np.asarray(class_names),
        regime=config["regime"],
        label_seed=config["label_seed"],
    )
    batch_size = config["batch_size"]
    train_data = array_dataset(
        data["train_images"], observed_labels=observed, batch_size=batch_size,
        shuffle=True, flip=config.get("flip", True), seed=config["seed"],
    )
    test_data = array_dataset(
        data["test_images"], full_labels=data["test_full_labels"], batch_size=batch_size
    )
    steps_per_epoch = int(np.ceil(len(observed) / batch_size))
    model = build_model(config, num_labels, label_names=class_names)
    model.compile(
        optimizer=build_optimizer(config, steps_per_epoch),
        loss=build_loss(config),
        metrics=[MeanAveragePrecision(num_labels, capacity=len(data["test_images"]))],
        jit_compile=keras.backend.backend() == "jax",
    )
    report = {
        "status": "running",
        "backend": keras.backend.backend(),
        "num_parameters": model.count_params(),
        "num_patches": model.num_patches,
        "num_train_images": len(observed),
        "num_test_images": len(data["test_images"]),
        "class_names": class_names,
        "config": config,
    }
    checkpoint = RunCheckpoint(out_dir)
    start = time.time()
    try:
        model.fit(
            train_data,
            epochs=config["epochs"],
            validation_data=test_data,
            callbacks=[checkpoint],
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

    outputs = model.predict(test_data, verbose=0)
    per_class = per_class_average_precision(data["test_full_labels"], outputs["probabilities"])
    boxes, levels = model.patches.patch_boxes(model.image_size, model.image_size)
    heatmap_dir = os.path.join(out_dir, "heatmaps")
    os.makedirs(heatmap_dir, exist_ok=True)
    for index in range(min(num_heatmaps, len(data["test_images"]))):
        figure = attention_figure(
            data["test_images"][index], outputs["probabilities"][index],
            outputs["attention"][index], boxes, levels, class_names,
        )
        figure.save(os.path.join(heatmap_dir, f"test_{index:04d}.png"))
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
