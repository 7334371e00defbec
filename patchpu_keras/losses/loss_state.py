import keras
from keras import ops


@keras.saving.register_keras_serializable(package="patchpu_keras")
class LossState(keras.layers.Layer):
    """Per-image and per-epoch state of a stateful loss, kept with the training run.

    Holds an `epoch` counter and named `(num_images, num_labels)` tables (label
    estimates, stored observed labels, moving averages...). It is a layer of
    the run's `patchpu_keras.models.TrainingModel(model, loss_state)`, not of
    the model: its variables are saved in the run's checkpoint
    (`save_weights`), never in the model's `.keras` file; trainable tables are
    trained by the run's optimizer. Rows are addressed by the `index` the
    input pipeline carries with every training image.

    Args:
        num_images: int, training images (rows of every table).
        num_labels: int, columns of every table.
        tables: dict `name -> trainable` (bool).

    Example:
    >>> state = LossState(100, 20, tables={"observed": False})
    >>> state.table("observed").shape
    (100, 20)
    """

    def __init__(self, num_images, num_labels, tables=None, **kwargs):
        super().__init__(**kwargs)
        if num_images < 1 or num_labels < 1:
            raise ValueError(
                "`num_images` and `num_labels` must be >= 1. "
                f"Received: num_images={num_images}, num_labels={num_labels}"
            )
        self.num_images = int(num_images)
        self.num_labels = int(num_labels)
        self.tables = dict(tables or {})
        self.epoch = self.add_weight(
            shape=(), initializer="zeros", dtype="int32", trainable=False, name="epoch"
        )
        self._tables = {
            name: self.add_weight(
                shape=(self.num_images, self.num_labels),
                initializer="zeros",
                trainable=bool(trainable),
                name=name,
            )
            for name, trainable in self.tables.items()
        }
        self.built = True

    def table(self, name):
        """The variable of table `name`."""
        if name not in self._tables:
            raise KeyError(f"No table {name!r}; this state has {sorted(self._tables)}.")
        return self._tables[name]

    def rows(self, name, index):
        """Rows `index` of table `name`, `(batch, num_labels)`."""
        return ops.take(self.table(name), ops.cast(index, "int32"), axis=0)

    def write_rows(self, name, index, values):
        """Writes `values` `(batch, num_labels)` into rows `index` of table `name`."""
        variable = self.table(name)
        index = ops.cast(ops.reshape(index, (-1, 1)), "int32")
        variable.assign(
            ops.scatter_update(ops.convert_to_tensor(variable), index, ops.cast(values, variable.dtype))
        )

    def call(self, inputs):
        return inputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {"num_images": self.num_images, "num_labels": self.num_labels, "tables": self.tables}
        )
        return config
