"""Builders: a recipe dict in, the model, optimizer and loss it names out.

`method_defaults()` is every key the builders and the loss table read, with
its default; `recipes.load` merges it under every recipe, so any recipe trains
any method with `--set loss=NAME` or `--set model=cam`.
"""

import keras

from patchpu_keras.losses.registry import build_loss, defaults as loss_defaults
from patchpu_keras.models import CAMClassifier, PatchPUClassifier
from patchpu_keras.optimizers import Lamb

# Keys `build_model` reads for the compared models, with their defaults.
MODEL_DEFAULTS = {
    "model": "patch",  # "cam": CAMClassifier
    "backbone": "resnet50",  # CAM backbone: "resnet50" or "tiny"
    "boost_lu_alpha": None,  # 5: BoostLU (Kim et al. 2023)
}

# Keys of how a run executes, with their defaults (docs/scaling.md).
RUN_DEFAULTS = {
    "checkpoint_every": None,  # steps between checkpoints; None: at the end of every epoch only
    "dtype_policy": None,  # None (float32), "float32", "mixed_float16" or "mixed_bfloat16"
    "distribute": "none",  # "none": one device; "auto": every visible device
}

DTYPE_POLICIES = (None, "float32", "mixed_float16", "mixed_bfloat16")

__all__ = [
    "MODEL_DEFAULTS", "RUN_DEFAULTS", "build_loss", "build_model", "build_optimizer", "method_defaults",
]


def method_defaults():
    """`MODEL_DEFAULTS`, `RUN_DEFAULTS` and every key of the loss table, with defaults."""
    return {**MODEL_DEFAULTS, **RUN_DEFAULTS, **loss_defaults()}


def build_model(config, num_labels, label_names=None, loss_state=None):
    """The recipe's model: `PatchPUClassifier`, or `CAMClassifier` when `model="cam"`.

    `dtype_policy` (None: float32) is the model's Keras dtype policy; with
    "mixed_float16", `compile` wraps the optimizer in Keras' `LossScaleOptimizer`.
    """
    policy = config.get("dtype_policy")
    if policy not in DTYPE_POLICIES:
        raise ValueError(
            f"`dtype_policy` must be one of {list(DTYPE_POLICIES)}. Received: dtype_policy={policy!r}"
        )
    if config.get("model", "patch") == "cam":
        return CAMClassifier(
            num_labels,
            backbone=config["backbone"],
            image_size=config["image_size"],
            boost_lu_alpha=config.get("boost_lu_alpha"),
            label_names=label_names,
            loss_state=loss_state,
            dtype=config.get("dtype_policy"),
        )
    if config.get("model", "patch") != "patch":
        raise ValueError(f"`model` must be 'patch' or 'cam'. Received: model={config['model']!r}")
    return PatchPUClassifier(
        num_labels,
        image_size=config["image_size"],
        patch_size=config["patch_size"],
        stride=config.get("stride"),
        num_resolutions=config["num_resolutions"],
        downsample_factor=config["downsample_factor"],
        embedding_dim=config["embedding_dim"],
        mlp_units=config["mlp_units"],
        max_patches_per_resolution=config.get("max_patches_per_resolution"),
        label_names=label_names,
        seed=config["seed"],
        loss_state=loss_state,
        dtype=config.get("dtype_policy"),
    )


def build_optimizer(config, steps_per_epoch, loss=None):
    """LAMB whose learning rate is multiplied by `lr_decay_rate` every `lr_decay_epochs`.

    The paper (sec. 4.1.2): lr 1e-3 halved every 5 epochs, weight decay 1e-4.
    A stateful loss's trainable tables get its learning-rate multipliers (ROLE:
    10x) and no weight decay.
    """
    schedule = keras.optimizers.schedules.ExponentialDecay(
        config["learning_rate"],
        decay_steps=max(1, int(config["lr_decay_epochs"] * steps_per_epoch)),
        decay_rate=config["lr_decay_rate"],
        staircase=True,
    )
    multipliers = dict(getattr(loss, "learning_rate_multipliers", {}))
    optimizer = Lamb(
        schedule, weight_decay=config["weight_decay"], learning_rate_multipliers=multipliers
    )
    if multipliers:
        optimizer.exclude_from_weight_decay(var_names=list(multipliers))
    return optimizer
