import json
import os

import keras


def write_json_atomically(path, payload):
    """Writes JSON through a temporary file, so a crash never leaves half a file."""
    temporary = path + ".tmp"
    with open(temporary, "w") as handle:
        json.dump(payload, handle, indent=2, default=_to_builtin)
    os.replace(temporary, path)


def _to_builtin(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Not JSON serializable: {type(value).__name__}")


class RunCheckpoint(keras.callbacks.Callback):
    """Saves the model and the history after every epoch, atomically.

    `model.keras` and `history.json` in `directory` always hold the last
    completed epoch: each is written to a temporary file and renamed, so a crash
    (or Ctrl-C) mid-write keeps the previous version.

    Args:
        directory: str, run directory.
    """

    def __init__(self, directory):
        super().__init__()
        self.directory = directory
        self.history = {}

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        temporary = os.path.join(self.directory, "model.tmp.keras")
        self.model.save(temporary)
        os.replace(temporary, os.path.join(self.directory, "model.keras"))
        write_json_atomically(
            os.path.join(self.directory, "history.json"),
            {"epochs_completed": epoch + 1, "history": self.history},
        )
