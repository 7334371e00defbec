"""ImageNet-pretrained weights for the backbones, and the input scaling they expect.

`"imagenet"` goes through `keras.applications`, which downloads its file into
the Keras cache (`~/.keras/models`) the first time; a path to a weights file
works offline. The scaling the weights expect is applied by
`patchpu_keras.layers.ImagePreprocessing`, recorded in the backbone's config, so
a saved model scales its inputs like the weights it started from.
"""

import os
import urllib.error
import urllib.request

import h5py
import numpy as np

from patchpu_keras.layers.image_preprocessing import (  # noqa: F401 (the scalings the weights expect)
    CAFFE_MEAN_BGR,
    IMAGENET_MEAN_RGB,
    IMAGENET_STD_RGB,
    SCALINGS as PREPROCESSING,
    check_scaling,
    normalize_images,
)

IMAGENET = "imagenet"

# Where keras.applications downloads from, and the files it caches (include_top=False).
WEIGHTS_HOST = "https://storage.googleapis.com"
CACHED_FILES = {
    "ResNet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "EfficientNetB0": "efficientnetb0_notop.h5",
}


def check_preprocessing(preprocessing):
    check_scaling(preprocessing, "preprocessing")


def check_weights(weights, argument):
    """`None`, `"imagenet"` or the path of an existing `.weights.h5` / `.h5` file."""
    if weights is None or weights == IMAGENET:
        return weights
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            f"`{argument}` must be None, 'imagenet' or the path of a .weights.h5 / .h5 file. "
            f"Received: {argument}={weights!r}"
        )
    path = os.fspath(weights)
    if not path.endswith((".weights.h5", ".h5", ".hdf5")):
        raise ValueError(
            f"`{argument}` must be a Keras weights file ending in .weights.h5 (model.save_weights) "
            f"or .h5 (a keras.applications download). Received: {argument}={path!r}"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No weights file there. Received: {argument}={path!r}")
    return path


def application(builder, weights, argument, input_shape, **kwargs):
    """A `keras.applications` model without top, with `weights` loaded.

    Args:
        builder: e.g. `keras.applications.ResNet50`.
        weights: `None`, `"imagenet"` or a path (see `check_weights`).
        argument: the caller's argument name, for error messages.
        input_shape: `(height, width, 3)`.
        **kwargs: more arguments of `builder` (e.g. `name`).

    Returns:
        The model. A file is loaded whether it was saved with or without the
        top (the classifier is ignored); a file that lacks a layer is an error.
    """
    weights = check_weights(weights, argument)
    if weights is None:
        return builder(weights=None, include_top=False, input_shape=input_shape, **kwargs)
    if weights == IMAGENET:
        return _download(builder, argument, input_shape, **kwargs)
    model = builder(weights=None, include_top=False, input_shape=input_shape, **kwargs)
    try:
        if weights.endswith(".weights.h5"):
            model.load_weights(weights)
        else:
            _load_legacy_h5(model, weights)
    except Exception as error:
        raise ValueError(
            f"Could not load this file into keras.applications.{builder.__name__} "
            f"({type(error).__name__}: {str(error)[:300]}). It must hold the weights of a "
            f"{builder.__name__}, e.g. from keras.applications.{builder.__name__}("
            f'weights="imagenet").save_weights("{builder.__name__.lower()}.weights.h5"). '
            f"Received: {argument}={weights!r}"
        ) from error
    return model


def _load_legacy_h5(model, path):
    # keras.applications' own downloads: legacy HDF5 keyed by layer name. By name,
    # so a file with the top loads too; then every weighted layer must have been there.
    with h5py.File(path, "r") as file:
        group = file["model_weights"] if "layer_names" not in file.attrs and "model_weights" in file else file
        saved = {name.decode() if isinstance(name, bytes) else name for name in group.attrs["layer_names"]}
    missing = [layer.name for layer in model.layers if layer.weights and layer.name not in saved]
    if missing:
        raise ValueError(f"the file has no weights for layers {missing[:5]}")
    model.load_weights(path, by_name=True)


def _download(builder, argument, input_shape, **kwargs):
    name = builder.__name__
    cached = _in_keras_cache(CACHED_FILES.get(name, ""))
    reason = None if cached or weights_host_reachable() else f"{WEIGHTS_HOST} is unreachable"
    if reason is None:
        try:
            return builder(weights=IMAGENET, include_top=False, input_shape=input_shape, **kwargs)
        except Exception as error:
            if not _is_download_failure(error):
                raise
            reason = f"{type(error).__name__}: {str(error)[:200]}"
    raise RuntimeError(
        f"Could not download the ImageNet weights of {name} ({reason}); keras.applications "
        "needs network access the first time. Offline, pass the path of a local weights file "
        f"instead: on a machine that is online, run `keras.applications.{name}(weights="
        f'"imagenet").save_weights("{name.lower()}_imagenet.weights.h5")`, copy that file here '
        f'and pass {argument}="{name.lower()}_imagenet.weights.h5" (the .h5 file Keras downloads '
        f"into ~/.keras/models/, {CACHED_FILES.get(name, 'its notop file')}, works too). "
        f"Received: {argument}='imagenet'"
    )


def weights_host_reachable(timeout=5.0):
    """Whether the host keras.applications downloads from answers (honours proxy settings)."""
    try:
        urllib.request.urlopen(urllib.request.Request(WEIGHTS_HOST, method="HEAD"), timeout=timeout)
    except urllib.error.HTTPError:
        return True  # an answer, even an error status, means the network is there
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return True


def _in_keras_cache(file_name):
    if not file_name:
        return False
    homes = [os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras"),
             os.path.join("/tmp", ".keras")]
    return any(os.path.isfile(os.path.join(home, "models", file_name)) for home in homes)


def _is_download_failure(error):
    # keras.utils.get_file turns URLError / HTTPError into a plain Exception.
    return isinstance(error, (urllib.error.URLError, OSError)) or "URL fetch failure" in str(error)


def efficientnet_b0_preprocessing(efficientnet):
    """The preprocessing that matches an EfficientNet-B0's weights, from its Normalization layer.

    Keras' EfficientNet rescales by 1/255 and normalises inside the model. Its
    ImageNet file stores the ImageNet std as the Normalization layer's variance,
    and Keras divides once more by sqrt(std) for those weights (TensorFlow issue
    49930), so the input of the stem is `(x / 255 - mean) / std`: "torch". A
    model built with `weights=None` keeps mean 0 and variance 1: "unit".

    Returns:
        `"unit"` or `"torch"`.

    Raises:
        ValueError: for a normalisation that is neither.
    """
    from keras import layers

    normalization = next(layer for layer in efficientnet.layers if isinstance(layer, layers.Normalization))
    # Its variables (mean, variance, count) are what a weights file restores.
    mean, variance = (np.ravel(w) for w in normalization.get_weights()[:2])
    if np.allclose(mean, 0.0) and np.allclose(variance, 1.0):
        return "unit"
    std = np.array(IMAGENET_STD_RGB)
    if np.allclose(mean, IMAGENET_MEAN_RGB, atol=1e-3) and (
        np.allclose(variance, std, atol=1e-3) or np.allclose(variance, std**2, atol=1e-4)
    ):
        return "torch"
    raise ValueError(
        "These EfficientNet-B0 weights normalise inputs with neither the ImageNet statistics nor "
        "none at all, so the embedder cannot match them; pass `preprocessing=` explicitly. "
        f"Received: mean={mean.tolist()}, variance={variance.tolist()}"
    )
