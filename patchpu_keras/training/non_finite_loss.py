import math

import keras

from patchpu_keras.training.run_checkpoint import NonFiniteLossError


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first step whose loss is NaN or infinite, saying where.

    `keras.callbacks.TerminateOnNaN` only stops; this raises a
    `NonFiniteLossError` naming the epoch, the step and the last good
    checkpoint (which it precedes in the callback list, so the bad step is never
    saved), and keeps the facts in `failure` for the report.

    Args:
        checkpoint: the run's `RunCheckpoint` (its step count and last save).
    """

    def __init__(self, checkpoint):
        super().__init__()
        self.checkpoint = checkpoint
        self.failure = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        epoch, step = self.checkpoint.epoch + 1, self.checkpoint.step_in_epoch + 1
        iteration = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.failure = {"epoch": epoch, "step": step, "iteration": iteration, "loss": float(loss)}
        self.model.stop_training = True
        raise NonFiniteLossError(
            f"The training loss became {float(loss)} at epoch {epoch}, step {step} "
            f"(step {iteration} of the run); {self.checkpoint.describe_last()}. "
            "Lower the learning rate (--set learning_rate=...) and start again."
        )
