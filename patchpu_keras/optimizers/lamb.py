import keras


@keras.saving.register_keras_serializable(package="patchpu_keras")
class Lamb(keras.optimizers.Lamb):
    """`keras.optimizers.Lamb` with per-variable learning-rate multipliers.

    ROLE trains its table of label estimates with 10 times the model's
    learning rate (Cole et al. 2021). Variables whose name is a key of
    `learning_rate_multipliers` get `learning_rate * multiplier`; all others the
    plain learning rate. The names given to `exclude_from_weight_decay(var_names=...)`
    are part of the config, so a reloaded model keeps training without decaying them. Works on every backend (Keras' LAMB has no
    backend-specific fused path, so every update goes through `update_step`).

    Args:
        learning_rate: float or schedule.
        learning_rate_multipliers: dict `variable name -> float`.
        weight_decay_excluded_names: list of variable names (regular expressions)
            left out of weight decay, as `exclude_from_weight_decay(var_names=...)`.
        **kwargs: the arguments of `keras.optimizers.Lamb` (e.g. `weight_decay`).

    Example:
    >>> optimizer = Lamb(1e-3, weight_decay=1e-4,
    ...                  learning_rate_multipliers={"label_estimate_logits": 10.0})
    """

    def __init__(
        self, learning_rate=0.001, learning_rate_multipliers=None, weight_decay_excluded_names=None, **kwargs
    ):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.learning_rate_multipliers = dict(learning_rate_multipliers or {})
        self.weight_decay_excluded_names = []
        if weight_decay_excluded_names:
            self.exclude_from_weight_decay(var_names=weight_decay_excluded_names)

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        super().exclude_from_weight_decay(var_list=var_list, var_names=var_names)
        self.weight_decay_excluded_names = list(var_names or [])

    def update_step(self, gradient, variable, learning_rate):
        # On TensorFlow `variable` is the underlying tf.Variable, named "NAME:0":
        # the name is read from the Keras variable the optimizer was built with.
        name = self._trainable_variables[self._get_variable_index(variable)].name
        multiplier = self.learning_rate_multipliers.get(name, 1.0)
        super().update_step(gradient, variable, learning_rate * multiplier)

    def get_config(self):
        return {
            **super().get_config(),
            "learning_rate_multipliers": self.learning_rate_multipliers,
            "weight_decay_excluded_names": self.weight_decay_excluded_names,
        }
