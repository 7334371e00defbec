"""Builders: a recipe dict in, the model, optimizer and loss it names out.

`method_defaults()` is every key the builders and the loss table read, with
its default; `recipes.load` merges it under every recipe, so any recipe trains
any method with `--set loss=NAME` or `--set model=cam`.
"""

import math
import typing

import keras

from patchpu_keras.losses.registry import build_loss, defaults as loss_defaults
from patchpu_keras.models import CAMClassifier, PatchPUClassifier
from patchpu_keras.optimizers import Adam, Lamb

# Keys `build_model` reads for the compared models, with their defaults.
MODEL_DEFAULTS = {
    "model": "patch",  # "cam": CAMClassifier
    "backbone": "resnet50",  # CAM backbone: "resnet50" or "tiny"
    "boost_lu_alpha": None,  # 5: BoostLU (Kim et al. 2023)
    "backbone_weights": None,  # CAM: None (from scratch), "imagenet" or a local weights file
    "embedder_weights": None,  # patch model: None (from scratch), "imagenet" or a local weights file
    "rematerialize_embedder": False,  # patch model: recompute the embedder's activations in backward (less memory)
    # Patch model, eq. (1) where the paper is silent (docs/attention.md): the defaults are eq. (1) as written.
    "attention_score_scale": 1.0,  # multiplies the codebook-patch scores (1 / 16: 1 / sqrt(F) for F = 256)
    "attention_learn_temperature": False,  # True: a learned scalar temperature divides the scores
    "codebook_init_mode": "fan_out",  # variance scaling mode of the label codebooks: "fan_out" or "fan_in"
}
# Keys of the training budget, with their defaults.
TRAINING_DEFAULTS = {
    "min_steps": None,  # at least this many steps: more epochs on small data (see training_budget)
    "diagnostics_images": 256,  # training images scored every epoch when their full labels are known
    "optimizer": "lamb",  # the paper's; "adam" for the single-positive peers' protocol
    "head_lr_multiplier": 1.0,  # learning rate of the model's head layers over the rest (peers: 10)
}
OPTIMIZERS = {"lamb": Lamb, "adam": Adam}

# Keys of how a run executes, with their defaults (docs/scaling.md).
RUN_DEFAULTS = {
    "checkpoint_every": None,  # steps between checkpoints; None: at the end of every epoch only
    "dtype_policy": None,  # None (float32), "float32", "mixed_float16" or "mixed_bfloat16"
    "distribute": "none",  # "none": one device; "auto": every visible device
    "jit_compile": "auto",  # True, False or "auto" (see resolve_jit_compile)
}

DTYPE_POLICIES = (None, "float32", "mixed_float16", "mixed_bfloat16")

__all__ = [
    "MODEL_DEFAULTS",
    "RUN_DEFAULTS",
    "TRAINING_DEFAULTS",
    "TrainingBudget",
    "build_loss",
    "build_model",
    "build_optimizer",
    "method_defaults",
    "resolve_jit_compile",
    "training_budget",
]


def method_defaults():
    """`MODEL_DEFAULTS`, `TRAINING_DEFAULTS`, `RUN_DEFAULTS` and every key of the loss table, with defaults."""
    return {**MODEL_DEFAULTS, **TRAINING_DEFAULTS, **RUN_DEFAULTS, **loss_defaults()}


def resolve_jit_compile(value):
    """The `jit_compile` argument of `compile` for the recipe key of that name.

    `True` or `False` are passed to Keras as they are. `"auto"` is the fastest
    measured choice per backend and device (docs/performance.md):

    - JAX: `True`. Keras runs an un-jitted JAX step op by op, many times slower.
    - TensorFlow: `True` when a GPU is visible (XLA fuses the embedder's
      convolutions, batch norms and activations), `False` on CPU, where XLA's
      convolutions made this model 7-10x slower than oneDNN's.
    - PyTorch: `False` (Keras' `jit_compile=True` goes through `torch.compile`,
      which the project does not test).

    Args:
        value: `True`, `False` or `"auto"`.

    Returns:
        bool.
    """
    if isinstance(value, bool):
        return value
    if value != "auto":
        raise ValueError(f"`jit_compile` must be True, False or 'auto'. Received: jit_compile={value!r}")
    backend = keras.backend.backend()
    if backend == "jax":
        return True
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU"))
    return False


class TrainingBudget(typing.NamedTuple):
    """How long a run trains and when its learning rate decays.

    Fields:
        epochs: int, epochs to train.
        steps_per_epoch: int.
        lr_decay_steps: int, steps between two learning-rate decays.
    """

    epochs: int
    steps_per_epoch: int
    lr_decay_steps: int

    @property
    def total_steps(self):
        return self.epochs * self.steps_per_epoch


def training_budget(config, num_train):
    """The epochs, steps and decay interval of a recipe on `num_train` images.

    A schedule fixed in epochs gives a small dataset few steps of optimisation.
    With `min_steps` set, a run trains at least that many steps: the epochs
    grow to `ceil(min_steps / steps_per_epoch)` and the learning-rate decay
    follows the steps, keeping the recipe's shape (decays at the same shares
    of the run: the paper's "halve every 5 of 25 epochs" becomes "every fifth
    of the steps"). Without `min_steps`, or when the data is large enough,
    the recipe's own epochs and `lr_decay_epochs` hold exactly.

    Args:
        config: a recipe dict with `epochs`, `batch_size`, `lr_decay_epochs`
            and optionally `min_steps`.
        num_train: int, training images.

    Returns:
        A `TrainingBudget`.
    """
    steps_per_epoch = int(math.ceil(num_train / config["batch_size"]))
    epochs = int(config["epochs"])
    if config.get("min_steps"):
        epochs = max(epochs, int(math.ceil(config["min_steps"] / steps_per_epoch)))
    if epochs == config["epochs"]:
        lr_decay_steps = int(config["lr_decay_epochs"] * steps_per_epoch)
    else:
        lr_decay_steps = int(round(config["lr_decay_epochs"] / config["epochs"] * epochs * steps_per_epoch))
    return TrainingBudget(epochs, steps_per_epoch, max(1, lr_decay_steps))


def build_model(config, num_labels, label_names=None):
    """The recipe's model: `PatchPUClassifier`, or `CAMClassifier` when `model="cam"`.

    `dtype_policy` (None: float32) is the model's Keras dtype policy; with
    "mixed_float16", `compile` wraps the optimizer in Keras' `LossScaleOptimizer`.
    A stateful loss's state is not part of the model (`TrainingModel`).
    """
    policy = config.get("dtype_policy")
    if policy not in DTYPE_POLICIES:
        raise ValueError(
            f"`dtype_policy` must be one of {list(DTYPE_POLICIES)}. Received: dtype_policy={policy!r}"
        )
    if config.get("model", "patch") == "cam":
        return CAMClassifier.create(
            num_labels,
            backbone=config["backbone"],
            image_size=config["image_size"],
            boost_lu_alpha=config.get("boost_lu_alpha"),
            label_names=label_names,
            backbone_weights=config.get("backbone_weights"),
            dtype=config.get("dtype_policy"),
        )
    if config.get("model", "patch") != "patch":
        raise ValueError(f"`model` must be 'patch' or 'cam'. Received: model={config['model']!r}")
    return PatchPUClassifier.create(
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
        embedder_weights=config.get("embedder_weights"),
        rematerialize_embedder=bool(config.get("rematerialize_embedder", False)),
        attention_score_scale=float(config.get("attention_score_scale", 1.0)),
        attention_learn_temperature=bool(config.get("attention_learn_temperature", False)),
        codebook_init_mode=config.get("codebook_init_mode", "fan_out"),
        dtype=config.get("dtype_policy"),
    )


def build_optimizer(config, steps_per_epoch, loss=None, lr_decay_steps=None, model=None):
    """LAMB (or Adam) whose learning rate is multiplied by `lr_decay_rate` every `lr_decay_epochs`.

    The paper (sec. 4.1.2): LAMB, lr 1e-3 halved every 5 epochs, weight decay
    1e-4. A stateful loss's trainable tables get its learning-rate multipliers
    (ROLE: 10x), no weight decay and, under LAMB, no trust ratio. `lr_decay_steps` (from `training_budget`)
    replaces `lr_decay_epochs * steps_per_epoch` when given. With
    `head_lr_multiplier` other than 1, the variables of `model.head_layers()`
    train at that multiple of the learning rate (the peers: Adam at 1e-5, the
    last layer at 1e-4).
    """
    if config.get("optimizer", "lamb") not in OPTIMIZERS:
        raise ValueError(
            f"Unknown optimizer. Expected one of {sorted(OPTIMIZERS)}. Received: optimizer={config['optimizer']!r}"
        )
    if lr_decay_steps is None:
        lr_decay_steps = int(config["lr_decay_epochs"] * steps_per_epoch)
    schedule = keras.optimizers.schedules.ExponentialDecay(
        config["learning_rate"],
        decay_steps=max(1, int(lr_decay_steps)),
        decay_rate=config["lr_decay_rate"],
        staircase=True,
    )
    optimizer_class = OPTIMIZERS[config.get("optimizer", "lamb")]
    loss_multipliers = dict(getattr(loss, "learning_rate_multipliers", {}))
    multipliers = dict(loss_multipliers)
    head_multiplier = config.get("head_lr_multiplier", 1.0)
    if head_multiplier != 1.0:
        if model is None:
            raise ValueError(
                "`head_lr_multiplier` needs the model whose head it speeds up. "
                f"Received: head_lr_multiplier={head_multiplier}, model=None"
            )
        for layer in model.head_layers():
            multipliers.update({variable.path: head_multiplier for variable in layer.trainable_variables})
    # A loss's own tables (ROLE's estimates) take Adam's step under LAMB, not one scaled by the table's norm.
    adaptation = {"layer_adaptation_excluded_names": list(loss_multipliers)} if optimizer_class is Lamb else {}
    optimizer = optimizer_class(
        schedule, weight_decay=config["weight_decay"] or None, learning_rate_multipliers=multipliers, **adaptation
    )
    if loss_multipliers:  # a loss's own tables (ROLE's estimates) are not decayed
        optimizer.exclude_from_weight_decay(var_names=list(loss_multipliers))
    return optimizer
