import keras
from keras import ops

from patchpu_keras.labels import OBSERVED_LABELS
from patchpu_keras.losses.observed_label_loss import clipped_log
from patchpu_keras.losses.stateful_loss import StatefulLoss


def _robust_term(x, q):
    """`(1 - x^q) / q` for x in [0, 1], finite with a finite gradient at x = 0.

    The gradient of `x^q` is infinite at 0 for q < 1; there the term is its
    limit `1 / q` and carries no gradient (the gradient through a sigmoid,
    `q x^q (1 - x)`, tends to 0 as well).
    """
    positive = x > 0
    safe = ops.where(positive, x, ops.ones_like(x))
    return ops.where(positive, (1.0 - ops.power(safe, q)) / q, ops.full_like(x, 1.0 / q))


def missing_label_weights(probabilities, w, b, mu, sigma):
    """GR-Loss's `K(p) = sigmoid(w p + b)` and `V(p) = exp(-(p - mu)^2 / (2 sigma^2))`.

    `K` estimates the chance that a missing label is positive; `V` weighs each
    missing entry by how far its score is from `mu`. Both are computed from
    the probabilities without gradient.

    Args:
        probabilities: `(batch, num_labels)` predicted probabilities.
        w, b: slope and offset of `K`.
        mu, sigma: centre and width of `V`.

    Returns:
        `(k, v)`, two `(batch, num_labels)` tensors without gradient.

    Reference:
        Chen et al., "Boosting Single Positive Multi-label Classification with
        Generalized Robust Loss", IJCAI 2024 (sec. 4, K and V).
    """
    p = ops.stop_gradient(ops.clip(ops.convert_to_tensor(probabilities), 0.0, 1.0))
    k = ops.sigmoid(w * p + b)
    v = ops.exp(-0.5 * ops.square((p - mu) / sigma))
    return ops.stop_gradient(k), ops.stop_gradient(v)


def generalized_robust(y_observed, probabilities, w, b, mu, sigma, q2=0.01, q3=1.0):
    """Generalized robust loss (GR-Loss).

    Observed positives: `-log p`. Every missing (unknown) entry:
    `V(p) * [K(p) (1 - p^q2) / q2 + (1 - K(p)) (1 - (1 - p)^q3) / q3]`, the
    expected risk of a robust positive loss and a robust negative loss, mixed
    by the estimated chance `K(p)` that the label is positive and weighted by
    `V(p)` (see `missing_label_weights`; neither carries gradient). With the
    defaults, the negative part is `p` (MAE) and the positive part is close
    to `-log p` (q2 -> 0).

    GR-Loss is defined for single positives (no observed negative). An
    observed negative (-1) is a known label, so it gets the cross-entropy
    `-log(1 - p)`, as in every other loss of `patchpu_keras.losses` (AN, EM):
    the robust terms are for the labels that are missing.

    Args:
        y_observed: `(batch, num_labels)` observed labels, +1 / 0 / -1.
        probabilities: `(batch, num_labels)` predicted probabilities.
        w, b: slope and offset of `K(p) = sigmoid(w p + b)`.
        mu, sigma: centre and width of `V(p) = exp(-(p - mu)^2 / (2 sigma^2))`.
        q2: exponent of the positive robust term (> 0).
        q3: exponent of the negative robust term (> 0).

    Returns:
        Scalar, mean over batch and labels, logs clipped at 1e-7. Finite,
        with a finite gradient, at p = 0 and p = 1.

    Reference:
        Chen et al., "Boosting Single Positive Multi-label Classification with
        Generalized Robust Loss", IJCAI 2024 (GR-Loss, sec. 4).
    """
    return ops.mean(_generalized_robust_terms(y_observed, probabilities, w, b, mu, sigma, q2, q3))


def _generalized_robust_terms(y_observed, probabilities, w, b, mu, sigma, q2, q3):
    _check_exponents(q2, q3)
    probabilities = ops.clip(ops.convert_to_tensor(probabilities), 0.0, 1.0)
    y_observed = ops.cast(ops.convert_to_tensor(y_observed), probabilities.dtype)
    k, v = missing_label_weights(probabilities, w, b, mu, sigma)
    missing = v * (
        k * _robust_term(probabilities, q2) + (1.0 - k) * _robust_term(1.0 - probabilities, q3)
    )
    return ops.where(
        y_observed > 0,
        -clipped_log(probabilities),
        ops.where(y_observed < 0, -clipped_log(1.0 - probabilities), missing),
    )


def _check_exponents(q2, q3):
    if isinstance(q2, (int, float)) and isinstance(q3, (int, float)) and min(q2, q3) <= 0:
        raise ValueError(f"`q2` and `q3` must be > 0. Received: q2={q2}, q3={q3}")


@keras.saving.register_keras_serializable(package="patchpu_keras")
class GeneralizedRobust(StatefulLoss):
    """GR-Loss with its epoch schedules of `K` and `V`.

    The schedules interpolate linearly between a start and an end value over
    `num_epochs`, from the epoch counter of the run's `LossState` (0-based,
    set by `fit`), so a resumed or reloaded model continues where it was. With
    `e` the epoch and `T = num_epochs`, as in the authors' training script
    (which counts epochs from 1):

    - `w` and `b` (of `K`) use `e / T`: one epoch behind, so `w` goes
      0, 2/T, ..., 2 (T - 1)/T and never reaches its end value;
    - `mu` and `sigma` (of `V`) use `(e + 1) / T`, reaching their end values
      in the last epoch.

    Fractions are clipped to [0, 1], so epochs after `num_epochs` keep the end
    values. The state holds no table: only the epoch counter. Called as a plain
    Keras loss or on validation batches (no state), it returns the
    assume-negative terms like every `StatefulLoss`.

    Args:
        num_epochs: total training epochs T (8 in the authors' code).
        w: `(start, end)` of K's slope; `(0, 2)`.
        b: `(start, end)` of K's offset; `(-2, -2)`.
        mu: `(start, end)` of V's centre; `(0.5, 0.8)`.
        sigma: `(start, end)` of V's width; `(2, 0.5)`.
        q2: exponent of the positive robust term; 0.01.
        q3: exponent of the negative robust term; 1.

    Example:
    ```python
    loss = GeneralizedRobust(num_epochs=8)
    state = loss.make_state(observed_labels)
    trainer = TrainingModel(CAMClassifier.create(20), state)
    trainer.compile(optimizer="adam", loss=loss)
    trainer.fit(dataset, epochs=8, callbacks=[LossStateCallback(loss, state)])
    ```

    Reference:
        Chen et al., "Boosting Single Positive Multi-label Classification with
        Generalized Robust Loss", IJCAI 2024 (sec. 4 and the schedules of its
        experiments).
    """

    def __init__(
        self,
        num_epochs=8,
        w=(0.0, 2.0),
        b=(-2.0, -2.0),
        mu=(0.5, 0.8),
        sigma=(2.0, 0.5),
        q2=0.01,
        q3=1.0,
        name="generalized_robust",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if int(num_epochs) != num_epochs or num_epochs < 1:
            raise ValueError(f"`num_epochs` must be an integer >= 1. Received: num_epochs={num_epochs}")
        schedules = {"w": w, "b": b, "mu": mu, "sigma": sigma}
        for key, value in schedules.items():
            if len(value) != 2:
                raise ValueError(f"`{key}` must be a pair (start, end). Received: {key}={value!r}")
        if min(sigma) <= 0:
            raise ValueError(f"`sigma` must stay > 0. Received: sigma={sigma!r}")
        _check_exponents(q2, q3)
        self.num_epochs = int(num_epochs)
        self.w = tuple(float(x) for x in w)
        self.b = tuple(float(x) for x in b)
        self.mu = tuple(float(x) for x in mu)
        self.sigma = tuple(float(x) for x in sigma)
        self.q2 = float(q2)
        self.q3 = float(q3)

    def schedule(self, epoch):
        """`(w, b, mu, sigma)` in epoch `epoch` (0-based), as float32 tensors."""
        epoch = ops.cast(epoch, "float32")
        k_progress = ops.clip(epoch / self.num_epochs, 0.0, 1.0)
        v_progress = ops.clip((epoch + 1.0) / self.num_epochs, 0.0, 1.0)

        def interpolate(pair, progress):
            start, end = pair
            return start + (end - start) * progress

        return (
            interpolate(self.w, k_progress),
            interpolate(self.b, k_progress),
            interpolate(self.mu, v_progress),
            interpolate(self.sigma, v_progress),
        )

    def compute(self, labels, outputs, state):
        w, b, mu, sigma = self.schedule(state.epoch)
        return generalized_robust(
            labels[OBSERVED_LABELS], outputs["probabilities"], w, b, mu, sigma, self.q2, self.q3
        )

    def get_config(self):
        return {
            **super().get_config(),
            "num_epochs": self.num_epochs,
            "w": list(self.w),
            "b": list(self.b),
            "mu": list(self.mu),
            "sigma": list(self.sigma),
            "q2": self.q2,
            "q3": self.q3,
        }
