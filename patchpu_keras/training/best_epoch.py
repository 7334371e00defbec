"""The epoch a run keeps: the best validation mAP, and early stopping once it stops improving."""

import os

import keras
import numpy as np

from patchpu_keras.models.training_model import task_of

BEST_MODEL = "best_model.keras"
MONITOR = "val_map"


def best_epoch(history, monitor=MONITOR):
    """`(epoch, value)` of the highest `monitor` in a history dict (epochs from 1), or `(None, None)`."""
    values = history.get(monitor) or []
    finite = [(value, -epoch) for epoch, value in enumerate(values, start=1) if np.isfinite(value)]
    if not finite:
        return None, None
    value, negative_epoch = max(finite)  # ties: the earlier epoch
    return -negative_epoch, value


class BestEpoch(keras.callbacks.Callback):
    """Saves the epoch with the best validation mAP as `best_model.keras`, and stops a run that stalled.

    The best epoch is read from the run's history (`RunCheckpoint.history`,
    which holds a resumed run's earlier epochs too), so resuming keeps the
    best model and the patience count of the epochs before the interruption.
    List it after the callbacks that put `val_map` into the logs and before
    `RunCheckpoint`, which records the epoch.

    Args:
        directory: str, the run directory (`best_model.keras` goes there).
        history: dict of lists, the run's history so far (read, not written:
            this callback looks at the logs of the current epoch).
        patience: optional int >= 1, epochs without a better `val_map` after
            which training stops; None never stops early.
        monitor: str, the epoch log maximised.
    """

    def __init__(self, directory, history, patience=None, monitor=MONITOR):
        super().__init__()
        if patience is not None and (isinstance(patience, bool) or int(patience) != patience or patience < 1):
            raise ValueError(
                "`early_stopping_patience` is a number of epochs >= 1, or None to train every epoch. "
                f"Received: early_stopping_patience={patience!r}"
            )
        self.directory = directory
        self.history = history
        self.patience = patience
        self.monitor = monitor
        self.best_epoch, self.best_value = best_epoch(history, monitor)
        self.stopped_early = False

    @property
    def path(self):
        return os.path.join(self.directory, BEST_MODEL)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise ValueError(
                f"Keeping the best epoch needs `{self.monitor}` in the epoch logs (a validation split). "
                f"Received: logs with keys {sorted(logs or {})}"
            )
        value = float(value)
        if np.isfinite(value) and (self.best_value is None or value > self.best_value):
            self.best_epoch, self.best_value = epoch + 1, value
            temporary = os.path.join(self.directory, "best_model.tmp.keras")
            task_of(self.model).save(temporary)  # the task alone: a loss's tables stay in the checkpoint
            os.replace(temporary, self.path)
        if self.patience is not None and epoch + 1 - (self.best_epoch or 0) >= self.patience:
            self.stopped_early = True
            self.model.stop_training = True
