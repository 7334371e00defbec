"""Per-variable learning-rate multipliers for Keras optimizers."""


class LearningRateMultipliers:
    """Mixin: variables named in `learning_rate_multipliers` get `learning_rate * multiplier`.

    A key matches a variable's name (`"label_estimate_logits"`, ROLE's table)
    or the end of its path (`"cam_head/kernel"`, a layer's variable), so a
    model's head can train faster than its pretrained backbone, as the
    single-positive papers do (10x). All other variables get the plain
    learning rate. Mixed into an optimizer whose `update_step` is used on every
    backend (a subclass, so PyTorch's fused replacements of Keras' classes do
    not apply).

    The names given to `exclude_from_weight_decay(var_names=...)` are part of
    the config (`weight_decay_excluded_names`), so a reloaded model keeps
    training without decaying them.
    """

    def __init__(self, *args, learning_rate_multipliers=None, weight_decay_excluded_names=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.learning_rate_multipliers = dict(learning_rate_multipliers or {})
        self.weight_decay_excluded_names = []
        if weight_decay_excluded_names:
            self.exclude_from_weight_decay(var_names=weight_decay_excluded_names)

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        super().exclude_from_weight_decay(var_list=var_list, var_names=var_names)
        self.weight_decay_excluded_names = list(var_names or [])

    def multiplier(self, variable):
        """The learning-rate multiplier of `variable` (1.0 when no key matches)."""
        key = self.matching_key(variable, self.learning_rate_multipliers)
        return 1.0 if key is None else self.learning_rate_multipliers[key]

    def matching_key(self, variable, keys):
        """The first of `keys` that is `variable`'s name or the end of its path, or None."""
        if getattr(self, "_trainable_variables", None) and not hasattr(variable, "path"):
            # TensorFlow hands `update_step` the tf.Variable ("PATH:0"): read the Keras
            # variable the optimizer was built with.
            variable = self._trainable_variables[self._get_variable_index(variable)]
        path = getattr(variable, "path", None) or variable.name.split(":")[0]
        name = path.rsplit("/", 1)[-1]
        for key in keys:
            if key in (name, path) or path.endswith("/" + key):
                return key
        return None

    def update_step(self, gradient, variable, learning_rate):
        super().update_step(gradient, variable, learning_rate * self.multiplier(variable))

    def get_config(self):
        return {
            **super().get_config(),
            "learning_rate_multipliers": self.learning_rate_multipliers,
            "weight_decay_excluded_names": self.weight_decay_excluded_names,
        }
