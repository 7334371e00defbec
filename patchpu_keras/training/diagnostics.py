"""Per-epoch diagnostics of a training run (a Keras callback)."""

import keras
import numpy as np

from patchpu_keras.diagnostics import DIAGNOSED_OUTPUTS, localization, weak_negative_diagnostics
from patchpu_keras.inference import predict_labelled
from patchpu_keras.models.training_model import task_of


class TrainingDiagnostics(keras.callbacks.Callback):
    """Logs, every epoch, how the model localizes and how its weak negatives separate.

    On a fixed probe of training images whose full labels are known (the
    built-in mosaics, VOC, COCO), after each epoch: the mean WN weight (eq.
    7-8) on hidden positives and on true negatives and their AUC, the AUC of
    the model's probability on the same entries, the attention entropy for
    present and absent labels and, when the images' objects are known, the
    pointing score. The values join the epoch's logs (so `history.json`, the
    report and TensorBoard get them) under `diagnostics_*` names.

    Args:
        probe: batched dataset of `(images, targets)` with `observed_labels`
            and `full_labels` (`RecipeData.probe`).
        batch_size: int, images per model call.
        objects: optional `(boxes, classes)` of the probe images' objects.
        theta: the weak negative threshold of eq. (7).
    """

    def __init__(self, probe, batch_size, theta, objects=None):
        super().__init__()
        self.probe = probe
        self.batch_size = batch_size
        self.objects = objects
        self.theta = theta

    def on_epoch_end(self, epoch, logs=None):
        outputs = predict_labelled(
            self.model, self.probe, self.batch_size, split="probe", collect=DIAGNOSED_OUTPUTS
        )
        values = {
            **weak_negative_diagnostics(outputs, outputs["observed_labels"], outputs["full_labels"], self.theta),
            **localization(task_of(self.model), outputs, outputs["full_labels"], self.objects),
        }
        if logs is not None:
            logs.update({f"diagnostics_{key}": float(value) for key, value in values.items()
                         if not np.isnan(value)})
