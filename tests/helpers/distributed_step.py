"""One training step on two devices against the same step on one device; prints JSON figures.

    XLA_FLAGS=--xla_force_host_platform_device_count=2 KERAS_BACKEND=jax python tests/helpers/distributed_step.py
    KERAS_BACKEND=tensorflow python tests/helpers/distributed_step.py   # two logical CPUs

For each loss, two tiny models (drop-connect off) start from the same weights; one takes an SGD
step on a global batch of 8 images with `distribute="auto"` (2 devices), the
other on one device (plain SGD, see below). Prints the largest absolute and relative weight
differences, the validation mAP each computes on 12 images (the distributed one
as `fit` reports it), the scikit-learn-equal numpy mAP of the single-device
probabilities and how many rows the mAP counted.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import keras  # noqa: E402

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import numpy as np  # noqa: E402

from patchpu_keras import PatchPUClassifier, TrainingModel, losses  # noqa: E402
from patchpu_keras.data.pipeline import array_dataset  # noqa: E402
from patchpu_keras.metrics import MeanAveragePrecision, mean_average_precision_score  # noqa: E402
from patchpu_keras.training.distribution import Distribution, ValidationMeanAveragePrecision  # noqa: E402
from tests.configs import TINY  # noqa: E402

NUM_LABELS, BATCH = 4, 8
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (BATCH, 32, 32, 3)).astype("uint8")
observed = np.zeros((BATCH, NUM_LABELS), "float32")
observed[np.arange(BATCH), np.arange(BATCH) % NUM_LABELS] = 1
test_images = rng.integers(0, 256, (12, 32, 32, 3)).astype("uint8")
test_labels = rng.integers(0, 2, (12, NUM_LABELS)).astype("float32")
test_labels[0] = 1  # every class has a positive
LOSSES = {"weak_negative": losses.WeakNegative, "role": lambda: losses.ROLE(1.38)}


def trained(loss_name, mode, initial_weights=None):
    distribution = Distribution(mode)
    loss = LOSSES[loss_name]()
    try:
        distribution.check_loss(loss)
    except ValueError as error:
        return {"refused": str(error)}
    with distribution.scope():
        # No drop-connect: its random masks are drawn per replica under tf.distribute (the
        # same seed on each half batch), so a step with it differs by design, not by error.
        model = distribution.prepare_model(PatchPUClassifier.create(NUM_LABELS, drop_connect_rate=0.0, **TINY))
        if isinstance(loss, losses.StatefulLoss):
            model = TrainingModel(model, loss.make_state(observed))
        if initial_weights is not None:
            model.set_weights(initial_weights)
        start = [np.array(w) for w in model.get_weights()]
        metric = MeanAveragePrecision(NUM_LABELS, capacity=12)
        model.compile(
            # Plain SGD: the first step of Adam-family optimizers (LAMB) is about
            # lr * sign(gradient), which turns the rounding of a near-zero gradient into
            # a full step; SGD's step is the gradient itself, so equal gradients show.
            optimizer=keras.optimizers.SGD(1.0), loss=loss,
            metrics=[metric] if distribution.in_graph_map else [],
        )
        train = array_dataset(images, observed_labels=observed, batch_size=BATCH)
        # The validation set in batches of 4 and 4 + 4: every batch splits over 2 devices.
        validation = array_dataset(test_images, full_labels=test_labels, batch_size=4)
        callbacks = [] if distribution.in_graph_map else [ValidationMeanAveragePrecision(validation, 4)]
        history = model.fit(train, epochs=1, validation_data=validation, callbacks=callbacks, verbose=0)
        probabilities = model.predict(test_images, batch_size=4, verbose=0)["probabilities"]
        # Rows the compiled metric accumulated during validation (reset at its start).
        counted = int(keras.ops.convert_to_numpy(metric.count)) if distribution.in_graph_map else None
    return {
        "devices": distribution.devices,
        "start": start,
        "weights": [np.array(w) for w in model.get_weights()],
        "val_map": history.history["val_map"][0],
        "numpy_map": mean_average_precision_score(test_labels, probabilities),
        "probabilities": np.asarray(probabilities, "float64"),
        "map_rows_counted": counted,
        "iterations": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
    }


results = {}
for loss_name in LOSSES:
    single = trained(loss_name, "none")
    distributed = trained(loss_name, "auto", initial_weights=single["start"])
    if "refused" in distributed:
        results[loss_name] = {"refused": distributed["refused"]}
        continue
    absolute = max(float(np.max(np.abs(a - b))) for a, b in zip(single["weights"], distributed["weights"]))
    relative = max(
        float(np.max(np.abs(a - b) / (np.abs(a) + 1e-3)))
        for a, b in zip(single["weights"], distributed["weights"])
        if a.dtype.kind == "f"
    )
    results[loss_name] = {
        "devices": distributed["devices"],
        "max_abs_weight_difference": absolute,
        "max_rel_weight_difference": relative,
        "moved": max(float(np.max(np.abs(a - b))) for a, b in zip(single["start"], single["weights"])),
        "val_map_single": single["val_map"],
        "val_map_distributed": distributed["val_map"],
        "numpy_map_single": single["numpy_map"],
        "numpy_map_distributed": distributed["numpy_map"],
        "max_abs_probability_difference": float(
            np.max(np.abs(single["probabilities"] - distributed["probabilities"]))
        ),
        "map_rows_counted": distributed["map_rows_counted"],
        "iterations": [single["iterations"], distributed["iterations"]],
    }
print(json.dumps({"backend": keras.backend.backend(), "results": results}))
