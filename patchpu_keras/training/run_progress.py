"""Time of a run: an estimate from the first measured steps, then elapsed and remaining per epoch.

Keras' progress bar shows the current epoch; `RunProgress` adds the whole
run's view, printed as plain lines between the bars.
"""

import time

import keras

# Steps timed for the first estimate; the first step is left out (it compiles).
MEASURED_STEPS = 5


def format_duration(seconds):
    """`1 h 02 min`, `3 min 20 s` or `42 s`."""
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {seconds:02d} s"
    return f"{seconds} s"


class RunProgress(keras.callbacks.Callback):
    """Prints the run's estimated time after its first steps and, after each epoch, elapsed and remaining.

    The estimate counts training steps only; each epoch's validation and the
    final test scoring come on top, and are in the per-epoch figures, which
    extrapolate the seconds per epoch measured so far.

    Args:
        steps_to_train: int, training steps of this session.
        epochs_to_train: int, epochs of this session (an interrupted epoch counts).
        print_fn: callable taking a str.
        measured_steps: int, steps timed (after the first) for the estimate.
    """

    def __init__(self, steps_to_train, epochs_to_train, print_fn=print, measured_steps=MEASURED_STEPS):
        super().__init__()
        self.steps_to_train = int(steps_to_train)
        self.epochs_to_train = int(epochs_to_train)
        self.print_fn = print_fn
        self.measured_steps = int(measured_steps)
        self.steps_done = 0
        self.epochs_done = 0
        self.start = None
        self.timer_start = None
        self.estimate = None

    def on_train_begin(self, logs=None):
        if self.start is None:
            self.start = time.time()

    def on_train_batch_end(self, batch, logs=None):
        self.steps_done += 1
        if self.steps_done == 1:
            self.timer_start = time.time()
        elif self.estimate is None and self.steps_done == 1 + min(self.measured_steps, self.steps_to_train - 1):
            per_step = (time.time() - self.timer_start) / (self.steps_done - 1)
            self.estimate = per_step * self.steps_to_train
            self.print_fn(
                f"\nestimate: {per_step:.3f} s per step from steps 2-{self.steps_done}: about "
                f"{format_duration(self.estimate)} for {self.steps_to_train} steps (training only)"
            )

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_done += 1
        elapsed = time.time() - self.start
        remaining = elapsed / self.epochs_done * (self.epochs_to_train - self.epochs_done)
        self.print_fn(
            f"epoch {epoch + 1}: {format_duration(elapsed)} elapsed, about {format_duration(remaining)} "
            f"remaining ({self.epochs_done} of {self.epochs_to_train} epochs of this session)"
        )
