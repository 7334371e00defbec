"""Loading a saved patchpu-keras model, with a clear error for anything else."""

import json
import os
import tempfile
import zipfile

import keras

from patchpu_keras.models.cam_classifier import CAMClassifier
from patchpu_keras.models.patch_pu_classifier import PatchPUClassifier

# Every model class the evaluate / explain / predict / export tools accept.
SUPPORTED_MODELS = (PatchPUClassifier, CAMClassifier)


def _registered_names():
    return sorted(keras.saving.get_registered_name(cls) for cls in SUPPORTED_MODELS)


def load_model(path):
    """Loads a `.keras` file saved by patchpu-keras, on whatever backend is active.

    The file's config is read first, so a `.keras` file holding another model
    (a `Sequential`, some other package's class) is refused with a message that
    names what it holds, before any of its code is deserialized. The model is
    loaded without its optimizer (`compile=False`): evaluation, explanation,
    prediction and export only need the weights and the config, which includes
    the label names.

    Files saved before the backbone and the task were split (a flat config,
    with the training run's `loss_state`) load too: the config is mapped onto
    a backbone and a task (`from_flat_config`), the weights onto their new
    places, and the loss state is dropped.

    Args:
        path: str or path-like, a `.keras` file written by `model.save` (or by
            `cli.py train`, which writes `model.keras`).

    Returns:
        The model, an instance of one of `SUPPORTED_MODELS`.

    Raises:
        FileNotFoundError: if there is no file at `path`.
        ValueError: if the file is not a `.keras` archive or does not hold a
            patchpu-keras model.

    Example:
    ```python
    model = load_model("runs/demo/model.keras")
    model.label_names  # ['T-shirt/top', 'Trouser', ...]
    ```
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No model file there. Received: path={path!r}")
    expected = ", ".join(_registered_names())
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(
            "Not a .keras model archive (a zip holding config.json), so not a patchpu-keras "
            f"model. Expected a file saved by model.save() from one of: {expected}. "
            f"Received: path={path!r}"
        ) from None
    registered_name = config.get("registered_name") or config.get("class_name")
    if registered_name not in _registered_names():
        raise ValueError(
            f"This .keras file holds a {config.get('class_name', 'model of unknown class')} "
            f"(from {config.get('module', 'an unknown module')}), not a patchpu-keras model. "
            f"Expected one of: {expected}. "
            f"Received: path={path!r}"
        )
    try:
        if _is_flat(config):
            model = _load_flat(path, config, registered_name)
        else:
            model = keras.models.load_model(path, compile=False)
    except Exception as error:
        raise ValueError(
            f"Keras could not load this {registered_name} ({type(error).__name__}: {error}). "
            f"Received: path={path!r}"
        ) from error
    if not isinstance(model, SUPPORTED_MODELS):  # the config said otherwise; be sure
        raise ValueError(
            f"This .keras file loaded as a {type(model).__name__}, not a patchpu-keras model. "
            f"Expected one of: {expected}. Received: path={path!r}"
        )
    return model


def _is_flat(config):
    """A config saved before the backbone and the task were split: no nested backbone config."""
    return not isinstance(config.get("config", {}).get("backbone"), dict)


class _FlatLayout(keras.Model):
    """The attributes a model had before the split, pointing at the new model's layers.

    Keras saves weights under the attribute names of the saved object, so the
    old file's weights load into an object with the old names.
    """

    def __init__(self, **layers):
        super().__init__()
        for attribute, layer in layers.items():
            setattr(self, attribute, layer)
        self.built = True


def _load_flat(path, config, registered_name):
    cls = next(cls for cls in SUPPORTED_MODELS if keras.saving.get_registered_name(cls) == registered_name)
    model = cls.from_flat_config(config["config"])
    if isinstance(model, PatchPUClassifier):
        layout = _FlatLayout(
            embedder=model.backbone.embedder, attention=model.attention, classifier=model.classifier
        )
    else:
        layout = _FlatLayout(backbone=model.backbone.features, cam_head=model.cam_head)
    with tempfile.TemporaryDirectory() as directory, zipfile.ZipFile(path) as archive:
        weights = archive.extract("model.weights.h5", directory)
        layout.load_weights(weights)
    return model
