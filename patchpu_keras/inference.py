"""Prediction and explanation of image files (`cli.py predict`, `cli.py explain`).

Files are decoded and resized to the model's `image_size` with the ops of the
exported serving signature (`patchpu_keras.data.image_files`, read by `image_reader`), then batched
through the model on whatever backend is active. A file that cannot be read or
decoded yields a record with an `error` naming it, and the others go on.

Models plug in through their output dict: `explanation_figure` draws the
patch attention of a model returning `attention` (`PatchPUClassifier`) and the
class activation maps of one returning `cam` (`CAMClassifier`).
"""

import os

import keras
import numpy as np
from PIL import Image

from patchpu_keras.data.image_files import resize_image
from patchpu_keras.data.image_reader import UnreadableImageError, list_image_files, read_image
from patchpu_keras.labels import FULL_LABELS, INDEX, OBSERVED_LABELS
from patchpu_keras.visualization import PANEL_SIZE, attention_figure, cam_figure

PATH = "path"
LABELS = "labels"
ERROR = "error"
FIGURE = "figure"


def label_names_of(model):
    """The model's label names (saved in its config), or `"0"`, `"1"`, ... without them."""
    names = getattr(model, "label_names", None)
    return list(names) if names else [str(index) for index in range(model.num_labels)]


def _read_batches(paths, batch_size):
    """Yields lists of `(path, image or None, error or None)` with up to `batch_size` images.

    Each list ends when it holds `batch_size` readable images, so errors do not
    shrink batches; order is the order of `paths`.
    """
    pending, readable = [], 0
    for path in list_image_files(paths):
        try:
            pending.append((path, read_image(path), None))
            readable += 1
        except UnreadableImageError as error:
            pending.append((path, None, str(error)))
        if readable == batch_size:
            yield pending
            pending, readable = [], 0
    if pending:
        yield pending


def predict_batch(model, images, batch_size):
    """Model outputs (numpy dict) of one batch of at most `batch_size` images.

    A smaller batch is padded with zeros up to `batch_size` and the padding
    dropped from the outputs: every call then has the same shape, so JAX and
    TensorFlow compile the model once instead of once more for the last batch.
    Images are independent at inference (batch norms use their moving
    statistics), so padding changes no score.
    """
    images = np.asarray(images)
    count = len(images)
    if count < batch_size:
        padding = np.zeros((batch_size - count,) + images.shape[1:], images.dtype)
        images = np.concatenate([images, padding])
    outputs = model.predict_on_batch(images)
    return {key: np.asarray(value)[:count] for key, value in outputs.items()}


def predict_labelled(model, batches, batch_size, keep=0, num_batches=None, verbose=0, split="test",
                     collect=("probabilities",)):
    """Outputs and labels of a labelled split, in order: the one loop over labelled data.

    `train` (the final test mAP, heat maps and per-epoch diagnostics),
    `evaluate` and the benchmarks call it. Labels come from each batch's
    targets, so they match the predictions whatever order the data comes in.
    Batches are padded to `batch_size` (see `predict_batch`).

    Args:
        model: a model returning a dict with `probabilities`.
        batches: a `tf.data.Dataset` or an iterable of `(images, targets)`
            batches; `targets` is a full-label array or a dict with
            `full_labels` (and optionally `observed_labels`, `index`).
        batch_size: int, the padded size of every model call (a larger batch
            is run at its own size).
        keep: int, images (and attention maps, when the model returns them)
            of the first `keep` images to return.
        num_batches: optional int for the progress bar (read from a dataset's
            cardinality when known).
        verbose: 0 silent, 1 a progress bar over batches.
        split: str, the split's name for the error without any batch.
        collect: names of model outputs returned for every image (those the
            model has).

    Returns:
        A dict with every output of `collect` `(n, ...)`, `full_labels`
        `(n, L)`, `observed_labels` and `index` (None when the targets carry
        none), and `images` and `attention` of the first `keep` images
        (`attention` of every image when `collect` names it).

    Raises:
        ValueError: there is no batch.
    """
    if hasattr(batches, "as_numpy_iterator"):
        cardinality = int(batches.cardinality())
        num_batches = cardinality if cardinality >= 0 else num_batches
        batches = batches.as_numpy_iterator()
    progress = keras.utils.Progbar(num_batches, unit_name="batch", verbose=verbose)
    gathered = {key: [] for key in (*collect, FULL_LABELS, OBSERVED_LABELS, INDEX)}
    images, attention = [], []
    num_batches_seen = 0
    for step, (batch_images, targets) in enumerate(batches, start=1):
        batch_images = np.asarray(batch_images)
        outputs = predict_batch(model, batch_images, max(batch_size, len(batch_images)))
        targets = targets if isinstance(targets, dict) else {FULL_LABELS: targets}
        for key, values in gathered.items():
            if key in outputs or key in targets:
                values.append(np.asarray(outputs[key] if key in outputs else targets[key]))
        missing = keep - sum(len(kept) for kept in images)
        if missing > 0:
            images.append(batch_images[:missing])
            if "attention" in outputs:
                attention.append(outputs["attention"][:missing])
        progress.update(step)
        num_batches_seen = step
    if not num_batches_seen:
        raise ValueError(f"The {split} split has no image. Received: 0 batches")
    result = {
        "images": np.concatenate(images) if images else np.zeros((0,)),
        "attention": np.concatenate(attention) if attention else np.zeros((0,)),
    }
    # A collected output is returned whole (an "attention" in `collect` replaces the kept rows).
    result.update({key: np.concatenate(values) if values else None for key, values in gathered.items()})
    return result


def _run_model(model, images, batch_size):
    """Model outputs (numpy, batch first) for decoded images of any sizes."""
    batch = np.stack([resize_image(image, model.image_size).numpy() for image in images])
    return predict_batch(model, batch, batch_size)


def _check_batch_size(batch_size):
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"`batch_size` must be an integer >= 1. Received: batch_size={batch_size}")


def predict_files(model, paths, threshold=None, batch_size=16):
    """The labels each image file has, with their scores, one record per file.

    Args:
        model: a loaded model (`patchpu_keras.models.load_model`).
        paths: image files and/or folders (walked recursively, see
            `list_image_files`).
        threshold: optional float in [0, 1]; labels scoring at least this
            much are kept (0 keeps every label). `None` keeps the labels the
            model's own per-class `thresholds` select (0.5 where unset).
        batch_size: int, images per model call.

    Yields:
        In the order of `paths`: `{"path": str, "labels": {name: score}}`
        (labels by decreasing score, scores rounded to 6 decimals), or
        `{"path": str, "error": message}` for a file that could not be read.

    Example:
    ```python
    for record in predict_files(model, ["photos/"]):
        print(record)  # {'path': 'photos/a.jpg', 'labels': {'cat': 0.91}}
    ```
    """
    _check_batch_size(batch_size)
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"`threshold` must be in [0, 1]. Received: threshold={threshold}")
    thresholds = model.thresholds if threshold is None else np.full(model.num_labels, threshold, "float32")
    names = label_names_of(model)
    for items in _read_batches(paths, batch_size):
        images = [image for _, image, _ in items if image is not None]
        probabilities = _run_model(model, images, batch_size)["probabilities"] if images else None
        row = 0
        for path, image, error in items:
            if image is None:
                yield {PATH: path, ERROR: error}
                continue
            scores = probabilities[row]
            row += 1
            order = np.argsort(-scores, kind="stable")
            yield {
                PATH: path,
                LABELS: {
                    names[label]: round(float(scores[label]), 6)
                    for label in order
                    if scores[label] >= thresholds[label]
                },
            }


def _display_image(image, panel_size):
    """Images larger than a panel are downsized (with antialiasing) before tinting."""
    if max(image.shape[:2]) <= panel_size:
        return image
    return np.asarray(Image.fromarray(np.asarray(image, np.uint8)).resize(
        (panel_size, panel_size), Image.BILINEAR
    ))


def explanation_figure(model, image, outputs, top_k=3, level=0, panel_size=PANEL_SIZE):
    """The explanation of one image as a picture, chosen by what the model outputs.

    Args:
        model: the model that produced `outputs`.
        image: `(h, w, 3)` array, the image as decoded (any size).
        outputs: dict of this image's outputs, without the batch axis.
        top_k: int, labels shown (one panel each), highest score first.
        level: resolution level drawn for a patch model (0, the finest).
        panel_size: side of one panel in pixels.

    Returns:
        A `PIL.Image` with one panel per top-k label and `name: score` under
        each: for outputs with `attention` (`PatchPUClassifier`), each patch
        of `level` tinted by its attention (the paper's Fig. 3); for outputs
        with `cam` (`CAMClassifier`), the label's class activation map
        upsampled over the image.

    Raises:
        ValueError: for outputs with neither, or a level the model lacks.
    """
    if "attention" in outputs:
        image = _display_image(image, panel_size)
        height, width = image.shape[:2]
        size = model.image_size
        boxes, levels = model.backbone.patches.patch_boxes(size, size)
        # Patches are cut from the image resized to image_size x image_size.
        boxes = np.asarray(boxes) * np.array([height, width, height, width]) / size
        available = sorted(set(np.asarray(levels).tolist()))  # Python ints, not np.int32(...) in the message
        if level not in available:
            raise ValueError(
                f"`level` must be one of the model's levels {available}. "
                f"Received: level={level}"
            )
        return attention_figure(
            image, outputs["probabilities"], outputs["attention"], boxes, levels,
            label_names_of(model), top_k=top_k, level=level, panel_size=panel_size,
        )
    if "cam" in outputs:
        return cam_figure(
            _display_image(image, panel_size), outputs["probabilities"], outputs["cam"],
            label_names_of(model), top_k=top_k, panel_size=panel_size,
        )
    raise ValueError(
        "Cannot explain outputs with neither 'attention' (patch model) nor 'cam' (CAM model). "
        f"Received: output keys={sorted(outputs)}"
    )


def _figure_path(out_dir, path, used):
    stem = os.path.splitext(os.path.basename(path))[0] or "image"
    name, suffix = stem, 2
    while name in used:
        name, suffix = f"{stem}-{suffix}", suffix + 1
    used.add(name)
    return os.path.join(out_dir, f"{name}.png")


def explain_files(model, paths, out_dir, top_k=3, level=0, batch_size=16):
    """Writes one explanation PNG per image file (`explanation_figure`).

    Args:
        model: a loaded model.
        paths: image files and/or folders.
        out_dir: str, folder the PNGs go to (created); `NAME.png` for
            `NAME.jpg`, `NAME-2.png` when two inputs share a name.
        top_k: int >= 1, labels shown per image.
        level: resolution level drawn (0, the finest).
        batch_size: int, images per model call.

    Yields:
        In the order of `paths`: `{"path", "figure": png path, "labels":
        {name: score} of the top-k labels}`, or `{"path", "error"}` for a file
        that could not be read.
    """
    _check_batch_size(batch_size)
    if int(top_k) != top_k or top_k < 1:
        raise ValueError(f"`top_k` must be an integer >= 1. Received: top_k={top_k}")
    os.makedirs(out_dir, exist_ok=True)
    names = label_names_of(model)
    used = set()
    for items in _read_batches(paths, batch_size):
        images = [image for _, image, _ in items if image is not None]
        outputs = _run_model(model, images, batch_size) if images else None
        row = 0
        for path, image, error in items:
            if image is None:
                yield {PATH: path, ERROR: error}
                continue
            image_outputs = {key: value[row] for key, value in outputs.items()}
            row += 1
            figure = explanation_figure(model, image, image_outputs, top_k=top_k, level=level)
            figure_path = _figure_path(out_dir, path, used)
            figure.save(figure_path)
            scores = image_outputs["probabilities"]
            shown = np.argsort(-scores, kind="stable")[:top_k]
            yield {
                PATH: path,
                FIGURE: figure_path,
                LABELS: {names[label]: round(float(scores[label]), 6) for label in shown},
            }
