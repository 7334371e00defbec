import keras

from patchpu_keras.optimizers.learning_rate_multipliers import LearningRateMultipliers


@keras.saving.register_keras_serializable(package="patchpu_keras")
class Adam(LearningRateMultipliers, keras.optimizers.Adam):
    """`keras.optimizers.Adam` with per-variable learning-rate multipliers.

    The single-positive papers fine-tune an ImageNet ResNet-50 with Adam at
    1e-5 and its last layer at 10 times that (Kim et al. 2022 and 2023, Chen
    et al. 2024): `learning_rate_multipliers={"cam_head/kernel": 10.0,
    "cam_head/bias": 10.0}`. See `LearningRateMultipliers`.

    Args:
        learning_rate: float or schedule.
        learning_rate_multipliers: dict `variable name or path -> float`.
        **kwargs: the arguments of `keras.optimizers.Adam`.
    """

    def __init__(self, learning_rate=0.001, learning_rate_multipliers=None, weight_decay_excluded_names=None,
                 **kwargs):
        super().__init__(
            learning_rate=learning_rate, learning_rate_multipliers=learning_rate_multipliers,
            weight_decay_excluded_names=weight_decay_excluded_names, **kwargs
        )
