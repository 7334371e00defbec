import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="patchpu_keras")
class MeanAveragePrecision(keras.metrics.Metric):
    """Mean average precision over an epoch, equal to scikit-learn's.

    Accumulates every score and full label seen since the last reset in fixed
    buffers of `capacity` rows (Keras variables, so the metric works inside
    compiled steps on every backend) and returns the mean over classes of
    average precision, exactly as `sklearn.metrics.average_precision_score` per
    class, ties included. Classes with no positive among the accumulated rows are
    left out of the mean. If more than `capacity` rows are seen, the result is
    NaN rather than a silently wrong number: size `capacity` to the evaluation
    set (`patchpu_keras.training` does).

    Args:
        num_labels: int, number of classes.
        capacity: int, the most rows accumulated between resets.
        name: metric name (`"map"` in logs).

    Call arguments (`update_state`):
        y_true: `(batch, num_labels)` full labels in {0, 1}.
        y_pred: `(batch, num_labels)` scores.

    Example:
    >>> metric = MeanAveragePrecision(num_labels=2)
    >>> metric.update_state([[1, 0], [0, 1]], [[0.9, 0.2], [0.3, 0.8]])
    >>> float(metric.result())
    1.0

    Reference:
        Everingham et al., "The PASCAL VOC Challenge", IJCV 2010 (mAP); the
        evaluation of Jouanneau et al., VISAPP 2023, sec. 4.1.
    """

    def __init__(self, num_labels, capacity=16384, name="map", dtype=None):
        super().__init__(name=name, dtype=dtype)
        if num_labels < 1 or capacity < 1:
            raise ValueError(
                "`num_labels` and `capacity` must be >= 1. "
                f"Received: num_labels={num_labels}, capacity={capacity}"
            )
        self.num_labels = num_labels
        self.capacity = capacity
        # Stored class-major, (num_labels, capacity), so each class's scores are
        # contiguous for sorting.
        self.scores = self.add_variable(
            shape=(num_labels, capacity), initializer="zeros", dtype="float32", name="scores"
        )
        self.labels = self.add_variable(
            shape=(num_labels, capacity), initializer="zeros", dtype="float32", name="labels"
        )
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="int32", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(
                "MeanAveragePrecision does not support sample weights. "
                "Received: sample_weight is not None"
            )
        y_true = ops.cast(ops.convert_to_tensor(y_true), "float32")
        y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
        if y_pred.shape[-1] != self.num_labels:
            raise ValueError(
                f"Expected scores with {self.num_labels} columns. "
                f"Received: y_pred.shape={tuple(y_pred.shape)}"
            )
        batch = ops.shape(y_pred)[0]
        # Past capacity the start is clamped (JAX and XLA clamp anyway) and the
        # count keeps growing, so `result` can report the overflow.
        count = ops.convert_to_tensor(self.count)
        start = ops.maximum(ops.minimum(count, self.capacity - batch), 0)
        zero = ops.zeros((), "int32")
        for variable, values in ((self.scores, y_pred), (self.labels, y_true)):
            variable.assign(
                ops.slice_update(
                    ops.convert_to_tensor(variable), [zero, start], ops.transpose(values)
                )
            )
        self.count.assign(count + ops.cast(batch, "int32"))

    def result(self):
        count = ops.convert_to_tensor(self.count)
        rows = ops.arange(self.capacity) < count
        scores = ops.where(rows[None, :], ops.convert_to_tensor(self.scores), -np.inf)
        labels = ops.where(rows[None, :], ops.convert_to_tensor(self.labels), 0.0)
        capacity = float(self.capacity)
        total, classes = 0.0, 0.0
        for label in range(self.num_labels):
            class_scores = scores[label]
            positive = labels[label] > 0.5
            # Rows scoring >= s = capacity - rows scoring < s; padding scores -inf.
            at_or_above = capacity - ops.cast(
                ops.searchsorted(ops.sort(class_scores), class_scores, side="left"), "float32"
            )
            positive_scores = ops.where(positive, class_scores, -np.inf)
            positives_at_or_above = capacity - ops.cast(
                ops.searchsorted(ops.sort(positive_scores), class_scores, side="left"), "float32"
            )
            precision = positives_at_or_above / ops.maximum(at_or_above, 1.0)
            num_positives = ops.sum(ops.cast(positive, "float32"))
            precision_sum = ops.sum(ops.where(positive, precision, 0.0))
            has_positive = ops.cast(num_positives > 0, "float32")
            total = total + has_positive * precision_sum / ops.maximum(num_positives, 1.0)
            classes = classes + has_positive
        value = total / ops.maximum(classes, 1.0)
        return ops.where(count > self.capacity, np.nan, value)

    def reset_state(self):
        for variable in (self.scores, self.labels, self.count):
            variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))

    def get_config(self):
        return {
            "num_labels": self.num_labels,
            "capacity": self.capacity,
            "name": self.name,
            "dtype": self.dtype,
        }
