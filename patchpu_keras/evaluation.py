"""Evaluation of a saved model on a recipe's held-out data (`cli.py evaluate`).

`evaluate` reads the held-out split with `patchpu_keras.data.load_data` (the
same loader `train` validates on), predicts it batch by batch with a progress
bar (`patchpu_keras.inference.predict_labelled`), computes the numbers with
`patchpu_keras.metrics.classification_report` and writes `metrics.json`,
`per_class.csv` and `pr_curves.png` (`patchpu_keras.reports.write_reports`).
"""

import json
import math
import os

import keras
import numpy as np

from patchpu_keras.data.recipe_data import TEST, VAL, load_data
from patchpu_keras.diagnostics import DIAGNOSED_OUTPUTS
from patchpu_keras.diagnostics import localization as localization_scores
from patchpu_keras.inference import label_names_of, predict_labelled
from patchpu_keras.metrics import per_class_average_precision
from patchpu_keras.metrics.classification import DEFAULT_THRESHOLD, classification_report
from patchpu_keras.reports import write_reports

# Fewer held-out images than this give a mAP that says little (a few tied scores decide it).
MIN_MEANINGFUL_IMAGES = 20

# The names evaluate accepts for the held-out split ("val": VOC's val, COCO's val2014), and for the
# run's validation split (the seeded `val_fraction` of the training images).
HELD_OUT_NAMES = ("test", "val")
VALIDATION = "validation"
# Recipe keys that decide which images and labels the held-out split holds.
DATA_KEYS = frozenset({
    "dataset", "data_dir", "source", "fashion_mnist_dir", "num_train", "num_test",
    "items_per_image", "item_size", "data_seed", "holdout_fraction", "holdout_seed", "image_size",
})


def evaluation_data(config, split=None, data_dir=None, batch_size=None):
    """The labelled held-out split of a recipe's data, as `evaluate` reads it.

    Only the held-out split is built (`load_data(config, splits=("test",))`),
    or with `split="validation"` the validation split (`splits=("val",)`):
    the training split is a shuffled, flipped pipeline of observed labels and
    is not offered.

    Args:
        config: a recipe dict.
        split: `"test"` (default) or `"val"`, two names of the held-out split
            (VOC's val, COCO's val2014, a `test/` folder; data without one
            holds out a seeded part of the training images); or
            `"validation"`, the run's validation split (the seeded
            `val_fraction` of the training images that `train` chose the epoch
            and the thresholds on), against its full labels where the data has
            them, else its observed positives.
        data_dir: optional str, overrides `config["data_dir"]`.
        batch_size: optional int, rebatches the pipeline.

    Returns:
        A dict with `split` (`"test"`), `dataset` (batches of `(images,
        targets)` with `full_labels`), `num_images`, `class_names` and
        `evaluated_on` (full labels, or observed labels when the test split was
        held out of observed-only data: the mAP is then an estimate) and
        `objects` (`(boxes, classes)` of each image's objects where the data
        has them, else None).
    """
    split = TEST if split is None else split
    if split not in (*HELD_OUT_NAMES, VALIDATION):
        raise ValueError(
            "Only the held-out or the validation split is evaluated; the training split is a shuffled, "
            f"augmented pipeline of observed labels. Expected one of {[*HELD_OUT_NAMES, VALIDATION]}. "
            f"Received: split={split!r}"
        )
    config = dict(config)
    if data_dir is not None:
        config["data_dir"] = data_dir
    if split == VALIDATION:
        return _validation_data(config, batch_size)
    data = load_data(config, splits=(TEST,))
    dataset = data.test
    if batch_size is not None:
        dataset = dataset.unbatch().batch(batch_size)
    return {
        "split": TEST,
        "dataset": dataset,
        "num_images": int(data.num_test),
        "class_names": list(data.class_names),
        "evaluated_on": data.evaluated_on,
        "objects": data.test_objects,
    }


def _validation_data(config, batch_size):
    data = load_data(config, splits=(VAL,))
    if data.val is None:
        raise ValueError(
            "The recipe has no validation split: set `val_fraction` as the run did (e.g. --set val_fraction=0.1). "
            f"Received: val_fraction={config.get('val_fraction')!r}"
        )
    dataset = data.val if batch_size is None else data.val.unbatch().batch(batch_size)
    return {
        "split": VALIDATION,
        "dataset": dataset,
        "num_images": int(data.num_val),
        "class_names": list(data.class_names),
        "evaluated_on": data.validated_on,
        "objects": None,
    }


def trained_config(model_path):
    """The recipe dict a model was trained with, from the run's `report.json` beside it, or None."""
    report_path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "report.json")
    try:
        with open(report_path) as file:
            return json.load(file).get("config") or None
    except (OSError, ValueError):
        return None


def data_differences(model_path, config):
    """Data settings (`DATA_KEYS`) of `config` that differ from the training run's, when its report is there.

    `cli.py train` writes `report.json` (with the config it trained with) beside
    `model.keras`. Evaluating with other data settings (another `image_size`, a
    different `data_seed`) would measure the model on other data, silently.

    Returns:
        `{key: (value in training, value in config)}` over the `DATA_KEYS` both
        give; empty when they agree or there is no report beside the model.
    """
    from patchpu_keras.training.run_checkpoint import config_differences  # training imports this module

    trained = trained_config(model_path) or {}
    keys = DATA_KEYS & set(trained) & set(config)
    return config_differences({key: trained[key] for key in keys}, {key: config[key] for key in keys}, ignore=())


def small_split_warning(num_images, split="test"):
    """A warning when a held-out split is too small for its mAP to mean much, else None."""
    if num_images >= MIN_MEANINGFUL_IMAGES:
        return None
    return (
        f"the {split} split has {num_images} image(s): its mAP is decided by a few (often tied) scores "
        f"and is not a meaningful measure; hold out at least {MIN_MEANINGFUL_IMAGES} images"
    )


def score_held_out(model, dataset, batch_size, class_names, keep=0, split=TEST):
    """mAP and per-class AP of a model on a labelled split: the scoring `train` reports.

    Args:
        model: a model returning `probabilities`.
        dataset: batches of `(images, targets)` with `full_labels`.
        batch_size: int.
        class_names: list of label names, in column order.
        keep: int, first images (and attention maps) returned for heat maps.
        split: str, the split's name for errors.

    Returns:
        A dict with `map` (NaN-free mean over the labels with a positive),
        `per_class_ap` (`{name: AP or None}`) and `outputs` (what
        `patchpu_keras.inference.predict_labelled` returns).
    """
    outputs = predict_labelled(model, dataset, batch_size, keep=keep, split=split)
    per_class = per_class_average_precision(outputs["full_labels"], outputs["probabilities"])
    return {
        "map": float(np.nanmean(per_class)),
        "per_class_ap": {name: (None if np.isnan(ap) else float(ap)) for name, ap in zip(class_names, per_class)},
        "outputs": outputs,
    }


def validation_predictions(model, config, batch_size=32, data_dir=None):
    """A model's scores on a recipe's validation split, with its labels (e.g. to choose thresholds).

    The validation split is the seeded `val_fraction` of the training images
    (`patchpu_keras.data.recipe_data.validation_rows`) that `train` monitored;
    the training pipeline is not built.

    Args:
        model: a loaded model (e.g. a run's `best_model.keras`).
        config: the recipe dict the model was trained with (a run's
            `report.json` holds it: `trained_config`).
        batch_size: int.
        data_dir: optional str, overrides `config["data_dir"]`.

    Returns:
        A dict with `probabilities` `(n, L)`, `full_labels` `(n, L)` (None when
        the data only has observed labels), `observed_labels` `(n, L)` in
        {-1, 0, 1} (the annotation drawn as the training split's),
        `class_names` and `validated_on`.

    Raises:
        ValueError: the recipe has no validation split (`val_fraction` unset).
    """
    config = dict(config, batch_size=batch_size)
    if data_dir is not None:
        config["data_dir"] = data_dir
    data = load_data(config, splits=(VAL,))
    if data.val is None:
        raise ValueError(
            "The recipe has no validation split: set `val_fraction` (e.g. --set val_fraction=0.1) and "
            f"train with it. Received: val_fraction={config.get('val_fraction')!r}"
        )
    return split_validation_predictions(model, data, batch_size)


def split_validation_predictions(model, data, batch_size):
    """`validation_predictions` on data already loaded (`load_data`'s result, with a `val` split)."""
    outputs = predict_labelled(model, data.val, batch_size, split=VAL)
    return {
        "probabilities": outputs["probabilities"],
        "full_labels": outputs["full_labels"] if data.val_labels == "full" else None,
        "observed_labels": outputs["observed_labels"],
        "class_names": list(data.class_names),
        "validated_on": data.validated_on,
    }


def predict_split(model, data, batch_size=32, verbose=1, collect=("probabilities",)):
    """Scores and full labels of a split (see `patchpu_keras.inference.predict_labelled`).

    Args:
        model: a loaded model.
        data: a dict from `evaluation_data` (`dataset`, batches of `(images,
            targets)` with `full_labels`), or with `images` and `full_labels`
            arrays.
        batch_size: int; arrays are cut into batches of this size, datasets
            come batched (padded up to it when smaller).
        verbose: 0 silent, 1 a progress bar over batches.
        collect: model outputs to return besides the scores.

    Returns:
        `(scores, full_labels)`, both `(num_images, num_labels)` numpy arrays,
        and with `collect` beyond the scores, a third item: the dict of
        collected outputs.
    """
    if "dataset" in data:
        batches, num_batches = data["dataset"], None
        if data.get("num_images"):  # the cardinality is unknown after a rebatch
            num_batches = math.ceil(data["num_images"] / batch_size)
    else:
        images, labels = data["images"], data["full_labels"]
        if len(images) != len(labels):
            raise ValueError(
                "Every image needs a row of full labels. "
                f"Received: {len(images)} images, {len(labels)} label rows"
            )
        num_batches = math.ceil(len(images) / batch_size)
        batches = (
            (_with_channels(images[start:start + batch_size]), labels[start:start + batch_size])
            for start in range(0, len(images), batch_size)
        )
    outputs = predict_labelled(
        model, batches, batch_size, num_batches=num_batches, verbose=verbose, split=data["split"],
        collect=collect,
    )
    if tuple(collect) == ("probabilities",):
        return outputs["probabilities"], outputs["full_labels"]
    return outputs["probabilities"], outputs["full_labels"], outputs


def _with_channels(images):
    images = np.asarray(images)
    return images[..., None] if images.ndim == 3 else images  # (n, h, w) gray


def evaluate(model, config, out_dir, split=None, data_dir=None, batch_size=32,
             threshold=DEFAULT_THRESHOLD, verbose=1, model_path=None, recipe=None, localization=False):
    """Evaluates a model on a split of a recipe's data and writes the reports.

    Args:
        model: a loaded model (`patchpu_keras.models.load_model`).
        config: the recipe dict the data comes from (with the overrides the
            model was trained with, e.g. `image_size`).
        out_dir: str, where `metrics.json`, `per_class.csv` and
            `pr_curves.png` go (created); `None` for `eval-test` beside
            `model_path`.
        split: optional split name (see `evaluation_data`).
        data_dir: optional data folder (see `evaluation_data`).
        batch_size: int.
        threshold: float, the fixed decision threshold; P/R/F1 are also
            reported at the model's own per-class `thresholds`.
        verbose: 0 silent, 1 a progress bar over batches.
        model_path, recipe: optional, recorded in `metrics.json`.
        localization: bool, also score where the model looks
            (`patchpu_keras.diagnostics.localization`): attention entropy, and
            the pointing score where the data knows its objects.

    Returns:
        The report dict written to `metrics.json` (see
        `classification_report`), plus `split`, `evaluated_on`, `model`,
        `recipe`, `backend`, `files` and, with `localization`, a
        `localization` dict.

    Example:
    ```python
    model = load_model("runs/demo/model.keras")
    report = evaluate(model, recipes.load("demo"), "runs/demo/eval")
    report["map"]
    ```
    """
    data = evaluation_data(config, split=split, data_dir=data_dir, batch_size=batch_size)
    if out_dir is None:
        if model_path is None:
            raise ValueError("Give out_dir, or model_path to write beside it. Received: neither")
        out_dir = os.path.join(os.path.dirname(os.fspath(model_path)), f"eval-{data['split']}")
    names = label_names_of(model)
    if len(data["class_names"]) != len(names) or (
        getattr(model, "label_names", None) and list(data["class_names"]) != names
    ):
        raise ValueError(
            "The model's labels differ from the dataset's (names and order must match). "
            f"Expected: {names}. Received: dataset class_names={data['class_names']}"
        )
    collect = DIAGNOSED_OUTPUTS if localization else ("probabilities",)
    scores, full_labels, *outputs = predict_split(
        model, data, batch_size=batch_size, verbose=verbose, collect=collect
    )
    report = {
        "model": model_path,
        "recipe": recipe,
        "split": data["split"],
        "evaluated_on": data["evaluated_on"],
        "backend": keras.backend.backend(),
        **classification_report(
            full_labels, scores, names, threshold=threshold, thresholds=getattr(model, "thresholds", None)
        ),
    }
    if localization:
        report["localization"] = {
            **localization_scores(model, outputs[0], full_labels, data["objects"]),
            "objects_known": data["objects"] is not None,
        }
    report["files"] = write_reports(report, full_labels, scores, out_dir)
    return report
