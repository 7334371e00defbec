import keras

from patchpu_keras.losses.loss_state import LossState
from patchpu_keras.models.multi_label_model import MultiLabelModel, multi_label_loss, multi_label_metrics


def task_of(model):
    """The task `model` trains: a `TrainingModel`'s `task`, or `model` itself."""
    return model.task if isinstance(model, TrainingModel) else model


class TrainingModel(keras.Model):
    """A task and the `LossState` of its stateful loss, trained together.

    A stateful loss (ROLE, LL, EN + CL, EM + APL) keeps per-image tables for
    one training set: they belong to the training run, not to the model a
    user deploys. This model holds both, so `compile`/`fit` train the task's
    weights and the loss's trainable tables (ROLE's label estimates) with one
    optimizer, and `save_weights` (the run's checkpoint) stores both; the
    task itself, and its `.keras` file, hold what inference needs only.

    The loss's epoch counter and end-of-epoch update run in
    `patchpu_keras.losses.LossStateCallback(loss, loss_state)`, passed to
    `fit`.

    Args:
        model: the task (`PatchPUClassifier`, `CAMClassifier` or another
            `MultiLabelModel`).
        loss_state: the `LossState` of the loss, from
            `loss.make_state(observed_labels)` for the training set, in the
            order of the `index` the training batches carry.

    Call arguments:
        images: the task's inputs.
        training: bool.

    Returns:
        The task's output dict.

    Example:
    ```python
    loss = patchpu_keras.losses.ROLE(expected_positives=1.38)
    state = loss.make_state(observed_labels)
    trainer = TrainingModel(model, state)
    trainer.compile(optimizer=Lamb(1e-3, learning_rate_multipliers=loss.learning_rate_multipliers), loss=loss)
    trainer.fit(array_dataset(images, observed_labels=observed_labels, batch_size=16), epochs=10,
                callbacks=[LossStateCallback(loss, state)])
    model.save("model.keras")  # the task: no loss table
    ```

    Reference:
        Cole et al., "Multi-Label Learning from Single Positive Labels", CVPR
        2021 (ROLE's label-estimate table, eq. 8).
    """

    def __init__(self, model, loss_state, **kwargs):
        if not isinstance(model, MultiLabelModel):
            raise ValueError(
                f"`model` must be a patchpu-keras task (a MultiLabelModel). Received: model={model!r}"
            )
        if not isinstance(loss_state, LossState) or loss_state.num_labels != model.num_labels:
            raise ValueError(
                f"`loss_state` must be a LossState with the model's {model.num_labels} labels, from "
                f"`loss.make_state(observed_labels)`. Received: loss_state={loss_state!r}"
            )
        kwargs.setdefault("dtype", model.dtype_policy)
        super().__init__(**kwargs)
        self.task = model
        self.loss_state = loss_state
        self.built = True

    @property
    def num_labels(self):
        return self.task.num_labels

    def head_layers(self):
        """The task's head layers (see `MultiLabelModel.head_layers`)."""
        return self.task.head_layers()

    def call(self, images, training=None):
        return self.task(images, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return multi_label_loss(self, self.num_labels, x, y, y_pred, sample_weight, training, self.loss_state)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return multi_label_metrics(self, self.num_labels, x, y, y_pred, sample_weight)
