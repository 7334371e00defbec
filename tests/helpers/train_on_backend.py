"""Trains a tiny demo model on the backend KERAS_BACKEND names and saves it.

    KERAS_BACKEND=jax python tests/helpers/train_on_backend.py OUT_DIR

Writes OUT_DIR/model.keras and OUT_DIR/reference.npz (the test mosaics and the
probabilities this backend gives them), so a test on another backend can load
the model and check it computes the same thing. The config is the demo recipe
with TINY_DEMO_OVERRIDES, so `cli.py evaluate --recipe demo` with the same
overrides evaluates the model on its own held-out mosaics.

Freshly initialised batch norms leave this tiny model's outputs nearly the same
for every image, which would make equality checks vacuous; one forward pass in
training mode with momentum 0 sets their statistics from real mosaics first
(a standard recalibration), then two LAMB steps with the weak negative loss
train it.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import recipes  # noqa: E402
from patchpu_keras import losses  # noqa: E402
from patchpu_keras.data import load_data  # noqa: E402
from patchpu_keras.training import build_model  # noqa: E402

from tests.configs import TINY_DEMO_OVERRIDES  # noqa: E402
from tests.conftest import batch_norms  # noqa: E402


def calibrate_batch_norms(model, images):
    """Sets every batch norm's moving statistics to those of `images`."""
    norms = batch_norms(model)
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(images, training=True)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum


def held_out_arrays(config):
    """Images and full labels of `load_data(config).test`: what `evaluate` sees."""
    images, full_labels = [], []
    for batch, targets in load_data(config, splits=("test",)).test:
        images.append(batch.numpy())
        full_labels.append(targets["full_labels"].numpy())
    return np.concatenate(images), np.concatenate(full_labels)


def main(out_dir):
    keras.utils.set_random_seed(0)
    config = recipes.apply_overrides(recipes.load("demo"), TINY_DEMO_OVERRIDES)
    data = load_data(config)
    train_images = np.concatenate([images.numpy() for images, _ in data.train]).astype("float32")
    model = build_model(config, len(data.class_names), label_names=data.class_names)
    calibrate_batch_norms(model, train_images)
    model.compile(optimizer=keras.optimizers.Lamb(1e-3, weight_decay=1e-4), loss=losses.WeakNegative())
    model.fit(data.train, epochs=1, verbose=0)  # single positives drawn by the recipe
    os.makedirs(out_dir, exist_ok=True)
    model.save(os.path.join(out_dir, "model.keras"))
    test_images, _ = held_out_arrays(config)
    probabilities = keras.ops.convert_to_numpy(model(test_images.astype("float32"))["probabilities"])
    np.savez(
        os.path.join(out_dir, "reference.npz"),
        images=test_images, probabilities=probabilities, backend=keras.backend.backend(),
    )


if __name__ == "__main__":
    main(sys.argv[1])
