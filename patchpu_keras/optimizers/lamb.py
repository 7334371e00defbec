import keras


@keras.saving.register_keras_serializable(package="patchpu_keras")
class Lamb(keras.optimizers.Lamb):
    """`keras.optimizers.Lamb` with per-variable learning-rate multipliers.

    ROLE trains its table of label estimates with 10 times the model's
    learning rate (Cole et al. 2021). Variables whose name is a key of
    `learning_rate_multipliers` get `learning_rate * multiplier`; all others the
    plain learning rate. Works on every backend (Keras' LAMB has no
    backend-specific fused path, so every update goes through `update_step`).

    Args:
        learning_rate: float or schedule.
        learning_rate_multipliers: dict `variable name -> float`.
        **kwargs: the arguments of `keras.optimizers.Lamb` (e.g. `weight_decay`).

    Example:
    >>> optimizer = Lamb(1e-3, weight_decay=1e-4,
    ...                  learning_rate_multipliers={"label_estimate_logits": 10.0})
    """

    def __init__(self, learning_rate=0.001, learning_rate_multipliers=None, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.learning_rate_multipliers = dict(learning_rate_multipliers or {})

    def update_step(self, gradient, variable, learning_rate):
        multiplier = self.learning_rate_multipliers.get(variable.name, 1.0)
        super().update_step(gradient, variable, learning_rate * multiplier)

    def get_config(self):
        return {**super().get_config(), "learning_rate_multipliers": self.learning_rate_multipliers}
