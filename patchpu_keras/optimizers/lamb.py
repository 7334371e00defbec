import keras

from patchpu_keras.optimizers.learning_rate_multipliers import LearningRateMultipliers


@keras.saving.register_keras_serializable(package="patchpu_keras")
class Lamb(LearningRateMultipliers, keras.optimizers.Lamb):
    """`keras.optimizers.Lamb` with per-variable learning-rate multipliers.

    ROLE trains its table of label estimates with 10 times the model's
    learning rate (Cole et al. 2021). Variables matching a key of
    `learning_rate_multipliers` (a variable name or the end of its path, see
    `LearningRateMultipliers`) get `learning_rate * multiplier`; all others the
    plain learning rate. Works on every backend (Keras' LAMB has no
    backend-specific fused path, so every update goes through `update_step`).

    Args:
        learning_rate: float or schedule.
        learning_rate_multipliers: dict `variable name or path -> float`.
        weight_decay_excluded_names: list of variable names (regular expressions)
            left out of weight decay, as `exclude_from_weight_decay(var_names=...)`.
        **kwargs: the arguments of `keras.optimizers.Lamb` (e.g. `weight_decay`).

    Example:
    >>> optimizer = Lamb(1e-3, weight_decay=1e-4,
    ...                  learning_rate_multipliers={"label_estimate_logits": 10.0})
    """

    def __init__(self, learning_rate=0.001, learning_rate_multipliers=None, weight_decay_excluded_names=None,
                 **kwargs):
        super().__init__(
            learning_rate=learning_rate, learning_rate_multipliers=learning_rate_multipliers,
            weight_decay_excluded_names=weight_decay_excluded_names, **kwargs
        )
