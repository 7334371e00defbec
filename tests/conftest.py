import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Under pytest-xdist (`-n 2`), the workers share the cores: one compute thread each
# (subprocesses inherit it), rather than each oversubscribing every core.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from patchpu_keras import PatchPUClassifier  # noqa: E402

from tests.configs import TINY  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER") and keras.backend.backend() == "torch":
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


def tiny_patch_model(num_labels=4, **overrides):
    """The tiny `PatchPUClassifier` (`TINY`, 32x32 images, 5 patches): every test model is built here.

    Fresh from initialisation its outputs are the same for any image (0.25 ±
    1e-7 with 4 labels): use `calibrated_patch_model` wherever a test compares
    outputs.
    """
    return PatchPUClassifier.create(num_labels, **{**TINY, **overrides})


def calibrated_patch_model(num_labels=4, seed=0, **overrides):
    """`tiny_patch_model` whose outputs depend on the image: random batch norm statistics and codebooks.

    Every two of `calibration_images()`'s outputs differ by 0.01 or more in
    some probability, and none is saturated
    (`test_calibrated_model_outputs_depend_on_the_image`), where fresh weights
    give every image the same outputs to 1e-5. Deterministic for a given
    backend and `seed`.
    """
    model = tiny_patch_model(num_labels, **overrides)
    rng = np.random.default_rng(seed)
    images = calibration_images(model.image_size, seed=seed)
    random_batch_norm_statistics(model, images, rng)
    model.attention.set_weights([rng.normal(0, 0.5, w.shape) for w in model.attention.get_weights()])
    # Label embeddings centred over the images, and classifier logits of unit spread across
    # images: the probabilities vary with the image instead of saturating at 0 or 1.
    embeddings = to_numpy(model(images)["label_embeddings"]).astype("float64")
    kernel, bias = model.attention.mlp_output.get_weights()
    model.attention.mlp_output.set_weights([kernel, bias - embeddings.mean(axis=(0, 1))])
    embeddings -= embeddings.mean(axis=(0, 1))
    classifier = rng.normal(0, 1, (num_labels, embeddings.shape[-1]))
    logits = np.einsum("blf,kf->blk", embeddings, classifier)
    model.classifier.set_weights([classifier / logits.std(axis=0).mean()])
    return model


def calibration_images(size=32, count=8, seed=0):
    """Random uint8 RGB images, the ones `calibrated_patch_model` takes its statistics from."""
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3)).astype("uint8")


def smallest_pairwise_difference(rows):
    """The smallest, over every two rows, of their largest absolute difference."""
    rows = np.asarray(rows, "float64").reshape(len(rows), -1)
    return min(float(np.max(np.abs(rows[i] - rows[j]))) for i in range(len(rows)) for j in range(i))


def assert_outputs_differ(rows, tolerance, factor=100):
    """Fails unless every two rows (one per image) differ by `factor` x `tolerance` somewhere.

    A test comparing two ways of computing outputs at `tolerance` calls it on
    its reference: if every image gave the same outputs (an uncalibrated
    model, or a bug that turns every image into the same one), any comparison
    would hold.
    """
    smallest = smallest_pairwise_difference(rows)
    assert smallest >= factor * tolerance, (
        f"The outputs of two images differ by only {smallest:.3g}: comparisons at {tolerance:g} cannot "
        f"tell the images apart (needs {factor} x {tolerance:g})."
    )


@pytest.fixture
def tiny_model():
    return tiny_patch_model


@pytest.fixture
def calibrated_model():
    return calibrated_patch_model


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def batch_norms(layer):
    """Every `BatchNormalization` reachable through the public attributes of `layer` (itself included)."""
    found, stack, seen = [], [layer], set()
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, keras.layers.BatchNormalization):
            found.append(item)
        values = [value for name, value in vars(item).items() if not name.startswith("_")]
        if isinstance(item, keras.Model):  # a functional model keeps its layers outside vars()
            values += list(item.layers)
        if hasattr(item, "named_children"):  # PyTorch keeps sublayers as modules, outside vars()
            values += [module for _, module in item.named_children()]
        for value in values:
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(sub, keras.layers.Layer):
                    stack.append(sub)
    return sorted(found, key=lambda norm: norm.path)


def random_batch_norm_statistics(layer, inputs, rng, **call_kwargs):
    """Gives every batch norm in `layer` random gamma, beta and moving statistics near its inputs'.

    Gamma and beta are drawn, then one training call with momentum 0 sets the
    moving statistics to those of the batch, which are then shifted and
    scaled at random: the statistics are far from the identity but of the
    activations' scale, so the inference outputs still depend on the inputs
    (at initialisation, with unit moving variances, the activations shrink
    about a hundredfold per block).
    """
    norms = batch_norms(layer)
    assert norms, f"{layer.name} has no batch norm to calibrate"
    for batch_norm in norms:
        gamma, beta, mean, variance = batch_norm.get_weights()
        batch_norm.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.5, beta.shape), mean, variance])
        batch_norm.momentum = 0.0
    layer(inputs, training=True, **call_kwargs)
    for batch_norm in norms:
        gamma, beta, mean, variance = batch_norm.get_weights()
        batch_norm.momentum = 0.99
        batch_norm.set_weights([
            gamma, beta, mean + rng.normal(0, 0.3, mean.shape) * np.sqrt(variance),
            variance * rng.uniform(0.5, 2.0, variance.shape),
        ])


@pytest.fixture(autouse=True)
def _image_check_cache(tmp_path_factory, monkeypatch):
    # Image-check caches go to a per-test folder, never to ~/.cache.
    monkeypatch.setenv("PATCHPU_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELPERS = os.path.join(REPO_ROOT, "tests", "helpers")
# The backends a test's model may be trained on, in order of preference: never the
# one under test while another is installed (CI installs all three). JAX comes last
# only because its compile time would dominate the suite. With only TensorFlow
# installed (`pip install -e ".[test]"`), the model is trained in the subprocess
# on TensorFlow too, and the cross-backend check is left to CI.
TRAINING_BACKENDS = {"tensorflow": ("torch", "jax"), "jax": ("tensorflow",), "torch": ("tensorflow",)}


def training_backend(current):
    import importlib.util

    installed = [b for b in TRAINING_BACKENDS[current] if importlib.util.find_spec(b) is not None]
    return installed[0] if installed else current


def repo_env(**extra):
    """The environment for a subprocess that imports this worktree's package."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    return env


def run_helper(script, *args, env=None, cwd=None):
    """Runs tests/helpers/SCRIPT in a subprocess; returns its stdout, fails the test on an error."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, os.path.join(HELPERS, script), *map(str, args)],
        env=env if env is not None else repo_env(), cwd=cwd, capture_output=True, text=True,
    )
    assert result.returncode == 0, f"{script} failed:\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.fixture(scope="session")
def trained_elsewhere(tmp_path_factory):
    """A tiny demo model trained on another backend (tests/helpers/train_on_backend.py).

    Returns a dict with `model` (the .keras path), `reference` (npz of test
    mosaics and that backend's probabilities) and `backend`.
    """
    backend = training_backend(keras.backend.backend())
    out = tmp_path_factory.mktemp(f"trained_on_{backend}")
    run_helper("train_on_backend.py", out, env=repo_env(KERAS_BACKEND=backend))
    return {"model": str(out / "model.keras"), "reference": str(out / "reference.npz"), "backend": backend}


@pytest.fixture(scope="session")
def image_files(tmp_path_factory):
    """Real photos (scikit-image's) written as files of several formats, sizes and channel counts."""
    import skimage.data
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    coffee = skimage.data.coffee()[:40, :60]
    rgba = np.concatenate([coffee, np.full(coffee.shape[:2] + (1,), 200, np.uint8)], axis=-1)
    files = {
        "astronaut.jpg": Image.fromarray(skimage.data.astronaut()),  # 512x512 RGB JPEG
        "camera.png": Image.fromarray(skimage.data.camera()),  # 512x512 gray PNG
        "chelsea.png": Image.fromarray(skimage.data.chelsea()),  # 300x451 RGB PNG
        "coffee_rgba.png": Image.fromarray(rgba, "RGBA"),  # 40x60, smaller than the model input
    }
    paths = {}
    for name, image in files.items():
        paths[name] = str(folder / name)
        image.save(paths[name], quality=90) if name.endswith(".jpg") else image.save(paths[name])
    return paths


@pytest.fixture
def not_patchpu(tmp_path):
    """A .keras file of a plain Keras model, a text file, and a zip without config.json."""
    import zipfile

    sequential = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    sequential.save(tmp_path / "sequential.keras")
    (tmp_path / "notes.keras").write_text("not a model")
    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as archive:
        archive.writestr("metadata.json", "{}")
    return tmp_path


@pytest.fixture(scope="session")
def trained_model(trained_elsewhere):
    """`trained_elsewhere`'s model, loaded once on the backend under test."""
    from patchpu_keras.models import load_model

    return load_model(trained_elsewhere["model"])


@pytest.fixture(scope="session")
def model_predict(trained_model):
    """`trained_model.predict(images)["probabilities"]`, memoised by content.

    Tests compare what the commands compute against plain `model.predict` on
    the same pixels; each distinct shape costs a compilation on JAX, so each
    array is predicted once per session.
    """
    import hashlib

    cache = {}

    def predict(images):
        images = np.asarray(images)
        key = (images.shape, images.dtype.str, hashlib.sha1(images.tobytes()).hexdigest())
        if key not in cache:
            cache[key] = trained_model.predict(images, verbose=0)["probabilities"]
        return cache[key]

    return predict
