import keras
from keras import ops

from patchpu_keras.optimizers.learning_rate_multipliers import LearningRateMultipliers


@keras.saving.register_keras_serializable(package="patchpu_keras")
class Lamb(LearningRateMultipliers, keras.optimizers.Lamb):
    """`keras.optimizers.Lamb` with per-variable learning-rate multipliers and layer-adaptation exclusions.

    ROLE trains its table of label estimates with 10 times the model's
    learning rate (Cole et al. 2021). Variables matching a key of
    `learning_rate_multipliers` (a variable name or the end of its path, see
    `LearningRateMultipliers`) get `learning_rate * multiplier`; all others the
    plain learning rate. Works on every backend (Keras' LAMB has no
    backend-specific fused path, so every update goes through `update_step`).

    LAMB scales each variable's Adam step by the trust ratio `|w| / |step|`
    (You et al. 2020), meant for a layer's weights. On a per-image table
    such as ROLE's label-estimate logits, where a batch touches a few rows, that
    ratio makes every step proportional to the whole table's norm: the logits grow
    geometrically (to 1e14 after 9,000 steps, or to infinity) and every estimate
    saturates. Variables matching `layer_adaptation_excluded_names` take the plain
    Adam step instead (trust ratio 1), the optimizer the method's authors train the
    table with; TensorFlow Addons' LAMB offered the same exclusion
    (`exclude_from_layer_adaptation`).

    Args:
        learning_rate: float or schedule.
        learning_rate_multipliers: dict `variable name or path -> float`.
        weight_decay_excluded_names: list of variable names (regular expressions)
            left out of weight decay, as `exclude_from_weight_decay(var_names=...)`.
        layer_adaptation_excluded_names: list of variable names or path ends
            updated with trust ratio 1 (Adam's step).
        **kwargs: the arguments of `keras.optimizers.Lamb` (e.g. `weight_decay`).

    Example:
    >>> optimizer = Lamb(1e-3, weight_decay=1e-4,
    ...                  learning_rate_multipliers={"label_estimate_logits": 10.0},
    ...                  layer_adaptation_excluded_names=["label_estimate_logits"])

    Reference:
        You et al., "Large Batch Optimization for Deep Learning: Training BERT in
        76 minutes", ICLR 2020, Algorithm 2.
    """

    def __init__(self, learning_rate=0.001, learning_rate_multipliers=None, weight_decay_excluded_names=None,
                 layer_adaptation_excluded_names=None, **kwargs):
        super().__init__(
            learning_rate=learning_rate, learning_rate_multipliers=learning_rate_multipliers,
            weight_decay_excluded_names=weight_decay_excluded_names, **kwargs
        )
        self.layer_adaptation_excluded_names = list(layer_adaptation_excluded_names or [])

    def update_step(self, gradient, variable, learning_rate):
        if self.matching_key(variable, self.layer_adaptation_excluded_names) is None:
            return super().update_step(gradient, variable, learning_rate)
        # Keras' LAMB step with the trust ratio left out: Adam's bias-corrected step.
        lr = ops.cast(learning_rate * self.multiplier(variable), variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        local_step = ops.cast(self.iterations + 1, variable.dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        m_hat = ops.divide(m, 1.0 - ops.power(ops.cast(self.beta_1, variable.dtype), local_step))
        v_hat = ops.divide(v, 1.0 - ops.power(ops.cast(self.beta_2, variable.dtype), local_step))
        self.assign_sub(variable, ops.multiply(lr, ops.divide(m_hat, ops.add(ops.sqrt(v_hat), self.epsilon))))

    def get_config(self):
        return {**super().get_config(), "layer_adaptation_excluded_names": self.layer_adaptation_excluded_names}
