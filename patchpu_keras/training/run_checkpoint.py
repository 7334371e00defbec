"""Checkpoints of a run: written atomically during training, read back to resume it.

A run directory holds `checkpoint/state.json` and the one weights file it
names (`weights-ITERATIONS.weights.h5`: the trained model's weights, with the
`LossState` tables of a stateful loss when it is a `TrainingModel`, and the
optimizer's variables with its iteration count). `model.keras` holds the
task only (`task_of`): weights and config, no loss state.
A checkpoint is written as: weights to a temporary file, renamed; then
`state.json` through a temporary file, renamed; then the previous weights file
is deleted. `state.json` is the commit point, so a crash at any moment leaves
the previous complete checkpoint or the new one, never half of one.
"""

import glob
import json
import os

import keras
import numpy as np

from patchpu_keras.models.training_model import task_of

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"
STATE_VERSION = 1
# Keys that may differ between a run and its resumption: more epochs extend a
# run, and how often it checkpoints changes nothing it computes. Resuming on a
# different number of devices is allowed too (a host lost a GPU); the result is
# then equal within float rounding, not bit for bit.
RESUMABLE_CHANGES = ("epochs", "checkpoint_every")


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss (or weights); the last good checkpoint is kept."""


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


def _comparable(value):
    # JSON turns tuples into lists; compare what a recipe value means, not its type.
    return json.loads(json.dumps(value, default=_to_builtin))


def config_differences(saved, given, ignore=RESUMABLE_CHANGES):
    """`{key: (saved value, given value)}` for the keys where two recipe dicts differ."""
    keys = (set(saved) | set(given)) - set(ignore)
    return {
        key: (saved.get(key), given.get(key))
        for key in sorted(keys)
        if _comparable(saved.get(key)) != _comparable(given.get(key))
    }


def read_checkpoint(out_dir):
    """The `state.json` of `out_dir`'s checkpoint (with `weights_path` added), or None."""
    path = os.path.join(out_dir, CHECKPOINT_DIR, STATE_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        state = json.load(handle)
    state["weights_path"] = os.path.join(out_dir, CHECKPOINT_DIR, state["weights"])
    return state


def _seed_states(model):
    """The states of the model's random seed generators (drop-connect, patch subsampling).

    They are variables of the model but not weights, so `save_weights` leaves them
    out; a checkpoint stores them so the resumed steps draw the same masks.
    """
    weights = {id(variable) for variable in model.weights}
    return [variable for variable in model.variables if id(variable) not in weights]


def restore_checkpoint(model, state):
    """Loads a checkpoint into a compiled model: weights, `LossState`, optimizer, seeds."""
    # The optimizer's variables exist only once it is built; the file holds them.
    model.optimizer.build(model.trainable_variables)
    model.load_weights(state["weights_path"])
    for variable, value in zip(_seed_states(model), state.get("seed_states", [])):
        variable.assign(np.asarray(value, dtype=variable.dtype))


def loss_tracker(model):
    """The compiled model's running mean of the loss (the `loss` entry of `model.metrics`)."""
    return next(metric for metric in model.metrics if metric.name == "loss")


def _as_int(variable):
    return int(keras.ops.convert_to_numpy(variable))


def _first_non_finite(variables):
    for variable in variables:
        if not np.all(np.isfinite(keras.ops.convert_to_numpy(variable))):
            return variable.path
    return None


class RunCheckpoint(keras.callbacks.Callback):
    """Saves the run after every epoch (and every `checkpoint_every` steps), atomically.

    After every epoch, `model.keras` and `history.json` in `directory` hold the
    last completed epoch (each written to a temporary file and renamed), and
    `checkpoint/` holds everything `train(..., resume=True)` needs to continue:
    weights, `LossState` tables, optimizer state and iterations, the epoch and
    step, the history, the epoch's running loss and the recipe. With
    `checkpoint_every=N`, a checkpoint is also written every N optimizer steps
    inside an epoch. A checkpoint whose weights are not finite is never
    written (trainable weights, batch norm statistics, loss state):
    `NonFiniteLossError` is raised instead and the previous one stays.

    Args:
        directory: str, run directory.
        config: the recipe dict, stored in the checkpoint (resume compares it).
        steps_per_epoch: int, steps of a full epoch.
        checkpoint_every: optional int, optimizer steps between checkpoints.
        resumed_from: optional `state.json` dict of the checkpoint this run
            continues: its history is kept, and an epoch entered mid-way counts
            its steps and running loss from there.
    """

    def __init__(self, directory, config=None, steps_per_epoch=None, checkpoint_every=None, resumed_from=None):
        super().__init__()
        if checkpoint_every is not None and int(checkpoint_every) < 1:
            raise ValueError(
                "`checkpoint_every` is a number of steps >= 1, or None for every epoch. "
                f"Received: checkpoint_every={checkpoint_every!r}"
            )
        self.directory = directory
        self.config = config
        self.steps_per_epoch = steps_per_epoch
        self.checkpoint_every = None if checkpoint_every is None else int(checkpoint_every)
        self.resumed_from = resumed_from
        self.history = {key: list(values) for key, values in (resumed_from or {}).get("history", {}).items()}
        self.train_seconds_before = float((resumed_from or {}).get("train_seconds", 0.0))
        self.epoch = int((resumed_from or {}).get("epoch", 0))
        self.step_in_epoch = 0
        self.last_saved = None  # (epoch, step) of the newest checkpoint written or resumed from
        if resumed_from is not None:
            self.last_saved = (resumed_from["epoch"], resumed_from["step"])
        self._session_start = None

    @property
    def checkpoint_dir(self):
        return os.path.join(self.directory, CHECKPOINT_DIR)

    def describe_last(self):
        """Where the last good checkpoint is, in words."""
        if self.last_saved is None:
            return "no checkpoint was written yet"
        epoch, step = self.last_saved
        where = f"after epoch {epoch}" if step == 0 else f"at epoch {epoch + 1}, step {step}"
        return f"the last good checkpoint ({where}) is kept in {self.checkpoint_dir}"

    def on_train_begin(self, logs=None):
        import time

        if self._session_start is None:
            self._session_start = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.step_in_epoch = 0
        resumed = self.resumed_from
        if resumed is not None and resumed["step"] > 0 and epoch == resumed["epoch"]:
            # Entered mid-epoch: the steps and running loss of that epoch so far.
            self.step_in_epoch = resumed["step"]
            for variable, value in zip(loss_tracker(self.model).variables, resumed["loss_tracker"]):
                variable.assign(value)

    def on_train_batch_end(self, batch, logs=None):
        self.step_in_epoch += 1
        every = self.checkpoint_every
        if every and self.step_in_epoch < (self.steps_per_epoch or np.inf):
            # Counted in steps, not optimizer iterations: float16 loss scaling skips
            # the iterations of steps whose gradients overflowed.
            if (self.epoch * self.steps_per_epoch + self.step_in_epoch) % every == 0:
                self.save(self.epoch, self.step_in_epoch)

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.save(epoch + 1, 0)
        temporary = os.path.join(self.directory, "model.tmp.keras")
        task_of(self.model).save(temporary)
        os.replace(temporary, os.path.join(self.directory, "model.keras"))
        write_json_atomically(
            os.path.join(self.directory, "history.json"),
            {"epochs_completed": epoch + 1, "history": self.history},
        )

    def train_seconds(self):
        """Training seconds over every session of the run, this one included."""
        import time

        session = 0.0 if self._session_start is None else time.time() - self._session_start
        return self.train_seconds_before + session

    def save(self, epoch, step):
        """Writes the checkpoint of `epoch` epochs and `step` steps done (atomically)."""
        # Every weight, not only the trainable ones: a non-finite batch made the batch norms'
        # moving statistics NaN while the trainable weights may still be finite.
        bad = _first_non_finite(self.model.weights)
        if bad is not None:
            raise NonFiniteLossError(
                f"The weights became NaN or infinite during epoch {epoch + (step > 0)} (variable {bad}); "
                f"{self.describe_last()}. Lower the learning rate (--set learning_rate=...)."
            )
        os.makedirs(self.checkpoint_dir, exist_ok=True)
        iterations = _as_int(self.model.optimizer.iterations)
        name = f"weights-{iterations:09d}.weights.h5"
        temporary = os.path.join(self.checkpoint_dir, f"incomplete-{name}")
        self.model.save_weights(temporary)
        os.replace(temporary, os.path.join(self.checkpoint_dir, name))
        state = {
            "version": STATE_VERSION,
            "epoch": epoch,
            "step": step,
            "steps_per_epoch": self.steps_per_epoch,
            "iterations": iterations,
            "weights": name,
            "history": self.history,
            "loss_tracker": [float(keras.ops.convert_to_numpy(v)) for v in loss_tracker(self.model).variables],
            "seed_states": [keras.ops.convert_to_numpy(v).tolist() for v in _seed_states(self.model)],
            "train_seconds": self.train_seconds(),
            "config": self.config,
        }
        write_json_atomically(os.path.join(self.checkpoint_dir, STATE_FILE), state)
        self.last_saved = (epoch, step)
        for old in glob.glob(os.path.join(self.checkpoint_dir, "*.weights.h5")):
            if os.path.basename(old) != name:
                os.remove(old)
