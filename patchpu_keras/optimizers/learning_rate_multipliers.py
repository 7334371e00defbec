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
    """

    def __init__(self, *args, learning_rate_multipliers=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.learning_rate_multipliers = dict(learning_rate_multipliers or {})

    def multiplier(self, variable):
        """The learning-rate multiplier of `variable` (1.0 when no key matches)."""
        # TensorFlow hands `update_step` the tf.Variable, named by the Keras path plus ":0".
        path = getattr(variable, "path", None) or variable.name.split(":")[0]
        name = path.rsplit("/", 1)[-1]
        for key, value in self.learning_rate_multipliers.items():
            if key in (name, path) or path.endswith("/" + key):
                return value
        return 1.0

    def update_step(self, gradient, variable, learning_rate):
        super().update_step(gradient, variable, learning_rate * self.multiplier(variable))

    def get_config(self):
        return {**super().get_config(), "learning_rate_multipliers": self.learning_rate_multipliers}
