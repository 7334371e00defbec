import keras
from keras import ops

from patchpu_keras.labels import OBSERVED_LABELS
from patchpu_keras.losses.observed_label_loss import ObservedLabelLoss, clipped_log


def positive_terms(y_observed, probabilities):
    """`(batch, num_labels)`: `-log p` at observed positives, 0 elsewhere."""
    probabilities = ops.convert_to_tensor(probabilities)
    positives = ops.cast(ops.convert_to_tensor(y_observed) > 0, probabilities.dtype)
    return -positives * clipped_log(probabilities)


def expected_positive_regularizer(probabilities, expected_positives):
    """`(mean over the batch of sum over labels of p - k)^2 / L^2`."""
    probabilities = ops.convert_to_tensor(probabilities)
    num_labels = probabilities.shape[-1]
    expected_count = ops.mean(ops.sum(probabilities, axis=-1))
    return ops.square(expected_count - expected_positives) / float(num_labels**2)


def expected_positive_regularization(y_observed, probabilities, expected_positives):
    """Expected positive regularization (EPR).

    Args:
        y_observed: `(batch, num_labels)` observed labels, +1 / 0 / -1.
        probabilities: `(batch, num_labels)` predicted probabilities.
        expected_positives: k, the expected number of positives per image (1.38
            for VOC and 2.92 for COCO in the patch paper's recipes).

    Returns:
        Scalar: the mean over batch and labels of `-log p` at observed positives
        (0 elsewhere), plus `(mean_b sum_l p - k)^2 / L^2`.

    Reference:
        Cole et al., CVPR 2021 (EPR).
    """
    return ops.mean(positive_terms(y_observed, probabilities)) + expected_positive_regularizer(
        probabilities, expected_positives
    )


@keras.saving.register_keras_serializable(package="patchpu_keras")
class ExpectedPositiveRegularization(ObservedLabelLoss):
    """`keras.losses.Loss` of `expected_positive_regularization`.

    The regulariser is a batch-level term; it is spread evenly over the entries
    so the Keras reduction (mean over the batch) returns the pure function's
    value.

    Args:
        expected_positives: k.
    """

    def __init__(self, expected_positives, name="expected_positive_regularization", **kwargs):
        super().__init__(name=name, **kwargs)
        self.expected_positives = expected_positives

    def entry_terms(self, labels, outputs):
        probabilities = outputs["probabilities"]
        terms = positive_terms(labels[OBSERVED_LABELS], probabilities)
        return terms + expected_positive_regularizer(probabilities, self.expected_positives)

    def get_config(self):
        return {**super().get_config(), "expected_positives": self.expected_positives}
