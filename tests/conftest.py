import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from patchpu_keras import PatchPUClassifier  # noqa: E402

# A model small enough for a CPU step in well under a second: 32x32 images,
# 16x16 patches, 2 levels (4 + 1 patches), F = 16.
TINY = dict(image_size=32, patch_size=16, num_resolutions=2, embedding_dim=16, mlp_units=16)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


@pytest.fixture
def tiny_model():
    def make(num_labels=4, **overrides):
        return PatchPUClassifier(num_labels, **{**TINY, **overrides})

    return make


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.fixture(autouse=True)
def _image_check_cache(tmp_path_factory, monkeypatch):
    # Image-check caches go to a per-test folder, never to ~/.cache.
    monkeypatch.setenv("PATCHPU_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
