"""Training runs: a recipe dict in, a trained model and a report out.

The CLI (`cli.py train`) only parses arguments and calls `train`; everything a
run does is here, so user code can call it too.
"""

import os
import time

import keras
import numpy as np

from patchpu_keras import losses
from patchpu_keras.data.mosaics import recipe_mosaics
from patchpu_keras.data.pipeline import array_dataset, image_dataset
from patchpu_keras.data.regimes import observe
from patchpu_keras.data.sources import load_recipe_index
from patchpu_keras.labels import FULL_LABELS, INDEX
from patchpu_keras.metrics import MeanAveragePrecision, per_class_average_precision
from patchpu_keras.models import CAMClassifier, PatchPUClassifier
from patchpu_keras.optimizers import Lamb
from patchpu_keras.training.run_checkpoint import RunCheckpoint, write_json_atomically
from patchpu_keras.visualization import attention_figure

__all__ = [
    "RunCheckpoint",
    "build_loss",
    "build_model",
    "build_optimizer",
    "load_data",
    "predict_dataset",
    "train",
]

# What the test mAP is measured against, as the report says it.
EVALUATED_ON = {
    "full": "full_labels",
    "observed": "observed_labels (no test split in the data: a seeded part of the training images "
                "was held out; labels not observed count as negatives, so the mAP is an estimate)",
}


def build_model(config, num_labels, label_names=None, loss_state=None):
    """The recipe's model: `PatchPUClassifier`, or `CAMClassifier` when `model="cam"`."""
    if config.get("model", "patch") == "cam":
        return CAMClassifier(
            num_labels,
            backbone=config["backbone"],
            image_size=config["image_size"],
            boost_lu_alpha=config.get("boost_lu_alpha"),
            label_names=label_names,
            loss_state=loss_state,
        )
    if config.get("model", "patch") != "patch":
        raise ValueError(f"`model` must be 'patch' or 'cam'. Received: model={config['model']!r}")
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
        loss_state=loss_state,
    )


def build_optimizer(config, steps_per_epoch, loss=None):
    """LAMB whose learning rate is multiplied by `lr_decay_rate` every `lr_decay_epochs`.

    The paper (sec. 4.1.2): lr 1e-3 halved every 5 epochs, weight decay 1e-4.
    A stateful loss's trainable tables get its learning-rate multipliers (ROLE:
    10x) and no weight decay.
    """
    schedule = keras.optimizers.schedules.ExponentialDecay(
        config["learning_rate"],
        decay_steps=max(1, int(config["lr_decay_epochs"] * steps_per_epoch)),
        decay_rate=config["lr_decay_rate"],
        staircase=True,
    )
    multipliers = dict(getattr(loss, "learning_rate_multipliers", {}))
    optimizer = Lamb(
        schedule, weight_decay=config["weight_decay"], learning_rate_multipliers=multipliers
    )
    if multipliers:
        optimizer.exclude_from_weight_decay(var_names=list(multipliers))
    return optimizer


# Recipe loss names and how each builds its loss from the recipe's keys.
LOSS_BUILDERS = {
    "full_bce": lambda c: losses.FullBCE(),
    "assume_negative": lambda c: losses.AssumeNegative(),
    "assume_negative_ls": lambda c: losses.AssumeNegativeLS(c.get("label_smoothing", 0.1)),
    "weak_assume_negative": lambda c: losses.WeakAssumeNegative(),
    "weak_negative": lambda c: losses.WeakNegative(theta=c.get("theta", 0.0)),
    "expected_positive_regularization": lambda c: losses.ExpectedPositiveRegularization(
        c["expected_positives"]
    ),
    "role": lambda c: losses.ROLE(c["expected_positives"], seed=c["seed"]),
    "ll_r": lambda c: losses.LargeLoss("reject", delta_rel=c.get("delta_rel")),
    "ll_ct": lambda c: losses.LargeLoss("temporary", delta_rel=c.get("delta_rel")),
    "ll_cp": lambda c: losses.LargeLoss("permanent", delta_rel=c.get("delta_rel")),
    "em": lambda c: losses.EntropyMaximization(c["em_alpha"]),
    "em_apl": lambda c: losses.EntropyMaximization(
        c["em_alpha"],
        beta=c["apl_beta"],
        warmup_epochs=c.get("apl_warmup_epochs", 5),
        num_epochs=c["epochs"],
        negative_proportion=c.get("apl_negative_proportion", 0.9),
    ),
    "en_cl": lambda c: losses.ExpectedNegativeConsistency(
        momentum=c.get("en_momentum", 0.9),
        threshold=c.get("en_threshold", 0.5),
        weight=c.get("en_weight", 1.0),
    ),
}


def build_loss(config):
    """The recipe's loss instance (`loss` names a key of `LOSS_BUILDERS`)."""
    if config["loss"] not in LOSS_BUILDERS:
        raise ValueError(
            f"Unknown loss. Expected one of {sorted(LOSS_BUILDERS)}. "
            f"Received: loss={config['loss']!r}"
        )
    try:
        return LOSS_BUILDERS[config["loss"]](config)
    except KeyError as error:
        raise ValueError(
            f"The {config['loss']!r} loss needs the recipe key {error.args[0]!r} "
            f"(e.g. `--set {error.args[0]}=...`). Received: keys={sorted(config)}"
        ) from None


def load_data(config):
    """The recipe's data as `tf.data` pipelines, with the training annotation drawn.

    Images come from `config["data_dir"]` when it is set (VOC, COCO, TFDS,
    folders or a manifest, detected or named by `config["source"]`), else from
    the built-in Fashion-MNIST mosaics (`dataset="fashion_mnist_mosaics"`).
    The observed training labels follow `config["regime"]` (see
    `patchpu_keras.data.observe`), drawn with `config["label_seed"]`; with
    `redraw_each_epoch`, single positives are drawn anew every epoch.

    Returns:
        A dict with `train` and `test` (batched datasets of `(images,
        targets)`; test targets carry full labels), `class_names`,
        `num_train`, `num_test`, `observed_labels` (the training annotation;
        with redraws, the first epoch's is not known in advance, so this is
        the draw of `single_positive` with `label_seed`), `train_names`,
        `test_labels` ("full", or "observed" when the test split was held out
        of observed-only data) and `index` (the `DatasetIndex`, or None for
        the demo).
    """
    regime = config["regime"]
    label_seed = config["label_seed"]
    partial_fraction = config.get("partial_fraction")
    redraw = bool(config.get("redraw_each_epoch", False))
    if redraw and regime != "single_positive":
        raise ValueError(
            "`redraw_each_epoch` redraws single positives: it needs regime=single_positive. "
            f"Received: regime={regime!r}"
        )
    image_size, batch_size, seed = config["image_size"], config["batch_size"], config["seed"]
    flip = config.get("flip", True)
    if config.get("data_dir") is None and config["dataset"] == "fashion_mnist_mosaics":
        mosaics = recipe_mosaics(config)
        train_full = mosaics["train"]["full_labels"]
        observed = observe(train_full, regime, seed=label_seed, partial_fraction=partial_fraction)
        train = array_dataset(
            mosaics["train"]["images"], observed_labels=observed, batch_size=batch_size,
            shuffle=True, flip=flip, seed=seed,
            redraw_positives_from=train_full if redraw else None, label_seed=label_seed,
        )
        test_full = mosaics["test"]["full_labels"]
        test = array_dataset(mosaics["test"]["images"], full_labels=test_full, batch_size=batch_size)
        return {
            "train": train, "test": test, "class_names": list(mosaics["class_names"]),
            "num_train": len(observed), "num_test": len(test_full), "observed_labels": observed,
            "train_names": None, "test_labels": "full", "index": None,
        }
    index = load_recipe_index(config)
    train_split, test_split = index.splits["train"], index.splits["test"]
    observed = observe(
        train_split.full_labels, regime, seed=label_seed, partial_fraction=partial_fraction,
        observed_labels=train_split.observed_labels,
    )
    pool = None
    if redraw:
        pool = train_split.full_labels if train_split.full_labels is not None else (
            (train_split.observed_labels > 0).astype("float32"))
    cache = config.get("cache", False)
    train = image_dataset(
        train_split, observed_labels=observed, image_size=image_size, batch_size=batch_size,
        shuffle=True, flip=flip, seed=seed, cache=cache,
        redraw_positives_from=pool, label_seed=label_seed,
    )
    test = image_dataset(
        test_split, full_labels=test_split.full_labels, image_size=image_size, batch_size=batch_size,
        cache=cache if cache in (False, None, True) else f"{cache}-test",
    )
    return {
        "train": train, "test": test, "class_names": index.class_names,
        "num_train": len(train_split), "num_test": len(test_split), "observed_labels": observed,
        "train_names": train_split.names, "test_labels": index.test_labels, "index": index,
    }


def _check_config(config):
    if config["loss"] == "full_bce" and config["regime"] != "full":
        raise ValueError(
            "The full_bce loss is the fully-labelled upper bound and trains on full "
            "labels: add `--set regime=full`. "
            f"Received: loss='full_bce', regime={config['regime']!r}"
        )
    if config["loss"] not in LOSS_BUILDERS:
        raise ValueError(
            f"Unknown loss. Expected one of {sorted(LOSS_BUILDERS)}. "
            f"Received: loss={config['loss']!r}"
        )


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
    _check_config(config)
    keras.utils.set_random_seed(config["seed"])
    data = load_data(config)
    os.makedirs(out_dir, exist_ok=True)
    class_names = data["class_names"]
    num_labels = len(class_names)
    observed = data["observed_labels"]
    np.savez(
        os.path.join(out_dir, "observed_labels.npz"),
        observed_labels=observed,
        image_names=np.asarray(data["train_names"] or [], dtype=str),
        class_names=np.asarray(class_names),
        regime=config["regime"],
        label_seed=config["label_seed"],
        redraw_each_epoch=bool(config.get("redraw_each_epoch", False)),
    )
    steps_per_epoch = int(np.ceil(data["num_train"] / config["batch_size"]))
    loss = build_loss(config)
    loss_state = loss.make_state(observed) if isinstance(loss, losses.StatefulLoss) else None
    model = build_model(config, num_labels, label_names=class_names, loss_state=loss_state)
    model.compile(
        optimizer=build_optimizer(config, steps_per_epoch, loss),
        loss=loss,
        metrics=[MeanAveragePrecision(num_labels, capacity=data["num_test"])],
        jit_compile=keras.backend.backend() == "jax",
    )
    index = data["index"]
    report = {
        "status": "running",
        "backend": keras.backend.backend(),
        "num_parameters": model.count_params(),
        "num_patches": getattr(model, "num_patches", None),
        "num_train_images": data["num_train"],
        "num_test_images": data["num_test"],
        "class_names": class_names,
        "source": index.source if index is not None else config["dataset"],
        "evaluated_on": EVALUATED_ON[data["test_labels"]],
        "config": config,
    }
    if index is not None:
        report.update(data_dir=index.root, files_skipped=index.problem_counts(), data_notes=index.notes)
    checkpoint = RunCheckpoint(out_dir)
    start = time.time()
    try:
        model.fit(
            data["train"],
            epochs=config["epochs"],
            validation_data=data["test"],
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

    outputs = predict_dataset(model, data["test"], keep=num_heatmaps)
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


def predict_dataset(model, dataset, keep=0):
    """Probabilities and full labels of every element of a labelled dataset, in order.

    Labels come from each batch's targets, so they match the predictions
    whatever order the dataset yields images in.

    Returns:
        A dict with `probabilities` `(n, L)`, `full_labels` `(n, L)`, `index`
        `(n,)`, and `images` and `attention` of the first `keep` images.
    """
    probabilities, full_labels, indices, images, attention = [], [], [], [], []
    for batch_images, targets in dataset:
        outputs = model.predict_on_batch(batch_images.numpy())
        probabilities.append(np.asarray(outputs["probabilities"]))
        full_labels.append(targets[FULL_LABELS].numpy())
        indices.append(targets[INDEX].numpy())
        missing = keep - sum(len(batch) for batch in images)
        if missing > 0:
            images.append(batch_images.numpy()[:missing])
            if "attention" in outputs:
                attention.append(np.asarray(outputs["attention"])[:missing])
    return {
        "probabilities": np.concatenate(probabilities),
        "full_labels": np.concatenate(full_labels),
        "index": np.concatenate(indices),
        "images": np.concatenate(images) if images else np.zeros((0,)),
        "attention": np.concatenate(attention) if attention else np.zeros((0,)),
    }
