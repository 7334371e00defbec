import keras
from keras import ops


class LossStateCallback(keras.callbacks.Callback):
    """Keeps a stateful loss's `LossState` in step with the epochs.

    Sets `state.epoch` at the start of every epoch and calls the loss's eager
    `on_epoch_end(state, epoch)` hook at its end. Pass it to the `fit` of the
    `TrainingModel` that holds the state (`training.train` does).

    Args:
        loss: the `StatefulLoss`.
        state: its `LossState`.

    Example:
    ```python
    trainer.fit(dataset, epochs=10, callbacks=[LossStateCallback(loss, state)])
    ```
    """

    def __init__(self, loss, state):
        super().__init__()
        self.loss = loss
        self.state = state

    def on_epoch_begin(self, epoch, logs=None):
        self.state.epoch.assign(ops.cast(epoch, "int32"))

    def on_epoch_end(self, epoch, logs=None):
        self.loss.on_epoch_end(self.state, epoch)
