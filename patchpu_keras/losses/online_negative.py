import keras
from keras import ops

from patchpu_keras.labels import OBSERVED_LABELS
from patchpu_keras.losses.observed_label_loss import ObservedLabelLoss, binary_terms


def online_negative_targets(y_observed, probabilities, gamma=1.0):
    """Negative weights of every entry from the model's own scores.

    An unknown label's weight is `w = (1 - p)^gamma`, with `p` the model's
    current probability of that label (held constant: no gradient flows
    through the weight). An unknown entry the model already scores high, a
    likely hidden positive, is pushed down less than one it scores low, a
    likely true negative. Observed negatives weigh 1 and observed positives 0.
    No prior on the number of labels per image is needed; `gamma = 0` is AN.

    Args:
        y_observed: `(batch, num_labels)` observed labels, +1 / 0 / -1.
        probabilities: `(batch, num_labels)` predicted probabilities.
        gamma: exponent of `1 - p`, >= 0.

    Returns:
        `(batch, num_labels)` weights in [0, 1] for the `-log(1 - p)` terms.
    """
    probabilities = ops.stop_gradient(ops.convert_to_tensor(probabilities))
    y_observed = ops.cast(y_observed, probabilities.dtype)
    unknown_weights = ops.power(ops.clip(1.0 - probabilities, 0.0, 1.0), gamma)
    weights = ops.where(
        y_observed < 0,
        ops.ones_like(unknown_weights),
        ops.where(y_observed > 0, ops.zeros_like(unknown_weights), unknown_weights),
    )
    return ops.stop_gradient(weights)


def online_negative(y_observed, probabilities, gamma=1.0):
    """Online negative loss (ON): unknown labels as negatives weighted by the model's own scores.

    With `y+` the observed positives and `w` from `online_negative_targets`:

        L = -1 / (B L) sum_{b, l} [ y+ log p + (1 - y+) w log(1 - p) ],
        w = 1 (observed negative), (1 - sg(p))^gamma (unknown),

    `sg` stopping the gradient. It is the paper's weighted negative term
    (eq. 9) with eq. (7)-(8)'s similarity weight replaced by the model's
    probability, which ranks hidden positives below true negatives better
    (docs/benchmarks.md, "Long budget": prob. AUC against WN AUC).

    Args:
        y_observed: `(batch, num_labels)` observed labels, +1 / 0 / -1.
        probabilities: `(batch, num_labels)` predicted probabilities.
        gamma: exponent of `1 - p`; 0 gives AN.

    Returns:
        Scalar, the mean over batch and labels, logs clipped at 1e-7.

    Reference:
        Jouanneau et al., VISAPP 2023, eq. (9) and sec. 5 (online estimation
        of negatives, named as future work).
    """
    return ops.mean(_online_negative_terms(y_observed, probabilities, gamma))


def _online_negative_terms(y_observed, probabilities, gamma):
    probabilities = ops.convert_to_tensor(probabilities)
    y_observed = ops.cast(y_observed, probabilities.dtype)
    weights = online_negative_targets(y_observed, probabilities, gamma)
    positives = ops.cast(y_observed > 0, probabilities.dtype)
    return binary_terms(positives, probabilities, negative_weight=weights)


@keras.saving.register_keras_serializable(package="patchpu_keras")
class OnlineNegative(ObservedLabelLoss):
    """`keras.losses.Loss` of `online_negative`.

    Args:
        gamma: exponent of `1 - p` in the unknown labels' weight, >= 0; 0 is AN.

    Example:

    ```python
    loss = OnlineNegative(gamma=1.0)
    loss([[1.0, 0.0]], [[0.9, 0.4]])  # (-log 0.9 - 0.6 log 0.6) / 2
    ```

    Reference:
        Jouanneau et al., VISAPP 2023, eq. (9) and sec. 5.
    """

    def __init__(self, gamma=1.0, name="online_negative", **kwargs):
        super().__init__(name=name, **kwargs)
        if not gamma >= 0:
            raise ValueError(f"`gamma` must be >= 0. Received: gamma={gamma!r}")
        self.gamma = gamma

    def entry_terms(self, labels, outputs):
        return _online_negative_terms(labels[OBSERVED_LABELS], outputs["probabilities"], self.gamma)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma}
