"""Builders: a recipe dict in, the model, optimizer and loss it names out.

A recipe is one flat dict. Each key that configures a callable takes its
default from that callable's signature (`patchpu_keras.configured`): the model
keys from the model classes (`MODELS`), the optimizer keys from
`make_optimizer`, the loss keys from the loss classes (`losses.registry.LOSSES`).
`method_defaults()` collects them with the run's keys (`RUN_DEFAULTS`,
`TRAINING_DEFAULTS`); `recipes.load` merges them under every recipe, so any
recipe trains any method with `--set loss=NAME` or `--set model=cam`.
"""

import math
import typing

import keras

from patchpu_keras.configured import Configured, same_names
from patchpu_keras.data.recipe_data import data_defaults
from patchpu_keras.losses.registry import build_loss, defaults as loss_defaults
from patchpu_keras.models import CAMBackbone, CAMClassifier, PatchBackbone, PatchPUClassifier
from patchpu_keras.optimizers import Adam, Lamb
from patchpu_keras.pretraining import PRETRAINING

# The models a recipe's `model` key names, with the recipe keys each reads
# ({recipe key: constructor argument}); each key's default is its argument's.
# The table to adapt when a model's constructor changes.
MODELS = {
    "patch": Configured(PatchPUClassifier.create, {
        **same_names(
            "image_size", "patch_size", "stride", "num_resolutions", "downsample_factor", "embedding_dim",
            "mlp_units", "max_patches_per_resolution", "seed", "embedder_weights",
            # eq. (1) where the paper is silent (docs/attention.md)
            "attention_score_scale", "attention_learn_temperature", "codebook_init_mode",
        ),
        "rematerialize_embedder": "rematerialize_embedder",
    }, declared_in=(PatchBackbone, PatchPUClassifier)),
    "cam": Configured(
        CAMClassifier.create, same_names("backbone", "image_size", "boost_lu_alpha", "backbone_weights"),
        declared_in=(CAMClassifier.create, CAMBackbone, CAMClassifier),
    ),
}
DEFAULT_MODEL = "patch"
# Keys of the patch geometry whose recipe default is None: `resolve_patch_geometry`
# derives them from `image_size` (the paper's 64 / 640) and `patch_size`.
FOLLOWS_IMAGE_SIZE = ("patch_size", "stride")

# Keys of the training budget, with their defaults.
TRAINING_DEFAULTS = {
    "min_steps": None,  # at least this many steps: more epochs on small data (see training_budget)
    "diagnostics_images": 256,  # training images scored every epoch when their full labels are known
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
    "MODELS",
    "MODEL_DEFAULTS",
    "OPTIMIZER",
    "RUN_DEFAULTS",
    "TRAINING_DEFAULTS",
    "TrainingBudget",
    "build_loss",
    "build_model",
    "build_optimizer",
    "make_optimizer",
    "method_defaults",
    "resolve_jit_compile",
    "training_budget",
]


def _model_defaults():
    """`model` and every key a model reads, with its default (a key two models read: the first's)."""
    defaults = {"model": DEFAULT_MODEL}
    for configured in MODELS.values():
        defaults.update({key: value for key, value in configured.defaults().items() if key not in defaults})
    return {**defaults, **dict.fromkeys(FOLLOWS_IMAGE_SIZE)}


def method_defaults():
    """Every key the builders and the loss table read, with its default.

    The data, model, optimizer, pretraining and loss keys come from the signatures they
    configure (`data.recipe_data.DATA_KEYS`, `MODELS`, `OPTIMIZER`, `pretraining.PRETRAINING`,
    `losses.registry.LOSSES`); then `TRAINING_DEFAULTS` and `RUN_DEFAULTS`.
    """
    return {**data_defaults(), **_model_defaults(), **OPTIMIZER.defaults(), **PRETRAINING.defaults(),
            **TRAINING_DEFAULTS, **RUN_DEFAULTS, **loss_defaults()}


def resolve_jit_compile(value):
    """The `jit_compile` argument of `compile` for the recipe key of that name.

    `True` or `False` are passed to Keras as they are. `"auto"` is the fastest
    measured choice per backend and device (docs/performance.md):

    - JAX: `True`. Keras runs an un-jitted JAX step op by op, many times slower.
    - TensorFlow: `True` when a GPU is visible (XLA fuses the embedder's
      convolutions, batch norms and activations), `False` on CPU, where XLA's
      convolutions were measured slower than oneDNN's.
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


def resolve_patch_geometry(config):
    """`(patch_size, stride)` of a patch-model recipe, with the keys it leaves at None derived.

    `patch_size=None` follows the image: the divisor of `image_size` closest to
    `image_size * 64 / 640` (the paper's 64x64 patches on 640x640 images, sec.
    4.1.2) that fits the coarsest level, so the patches tile the image exactly.
    `stride=None` is `patch_size` (patches side by side). A key the recipe or
    `--set` gives is kept as it is (`training.settings.check_settings` says when
    it does not fit the image).
    """
    image_size, patch_size = config["image_size"], config.get("patch_size")
    if patch_size is None:
        coarsest = image_size
        for _ in range(1, config["num_resolutions"]):
            coarsest = int(coarsest / config["downsample_factor"])
        fitting = [size for size in range(1, max(1, coarsest) + 1) if image_size % size == 0]
        target = image_size * PAPER_PATCH_FRACTION
        patch_size = min(fitting, key=lambda size: (abs(size - target), -size))
    stride = config.get("stride")
    return patch_size, patch_size if stride is None else stride


# Sec. 4.1.2: 64x64 patches on 640x640 images.
PAPER_PATCH_FRACTION = 64 / 640


def build_model(config, num_labels, label_names=None):
    """The recipe's model: `PatchPUClassifier`, or `CAMClassifier` when `model="cam"`.

    The keys each model reads are in `MODELS`; a key the config leaves out keeps
    the model's default. `dtype_policy` (None: float32) is the model's Keras
    dtype policy; with "mixed_float16", `compile` wraps the optimizer in Keras'
    `LossScaleOptimizer`. A stateful loss's state is not part of the model
    (`TrainingModel`).
    """
    policy = config.get("dtype_policy")
    if policy not in DTYPE_POLICIES:
        raise ValueError(
            f"`dtype_policy` must be one of {list(DTYPE_POLICIES)}. Received: dtype_policy={policy!r}"
        )
    name = config.get("model", DEFAULT_MODEL)
    if name not in MODELS:
        raise ValueError(f"`model` must be one of {sorted(MODELS)}. Received: model={name!r}")
    extra = {}
    if name == "patch":
        extra = dict(zip(FOLLOWS_IMAGE_SIZE, resolve_patch_geometry(config)))
    return MODELS[name](config, num_labels=num_labels, label_names=label_names, dtype=policy, **extra)


def build_optimizer(config, steps_per_epoch, loss=None, lr_decay_steps=None, model=None):
    """`make_optimizer` with the recipe's optimizer keys (`OPTIMIZER`); the others keep their defaults."""
    return OPTIMIZER(config, steps_per_epoch=steps_per_epoch, loss=loss, lr_decay_steps=lr_decay_steps, model=model)


def make_optimizer(steps_per_epoch, learning_rate, lr_decay_epochs, lr_decay_rate, weight_decay,
                   optimizer="lamb", head_lr_multiplier=1.0, loss=None, lr_decay_steps=None, model=None):
    """LAMB (or Adam) whose learning rate is multiplied by `lr_decay_rate` every `lr_decay_epochs`.

    The paper (sec. 4.1.2): LAMB, lr 1e-3 halved every 5 epochs, weight decay
    1e-4. A stateful loss's trainable tables get its learning-rate multipliers
    (ROLE: 10x), no weight decay and, under LAMB, no trust ratio. `lr_decay_steps` (from `training_budget`)
    replaces `lr_decay_epochs * steps_per_epoch` when given. With
    `head_lr_multiplier` other than 1, the variables of `model.head_layers()`
    train at that multiple of the learning rate (the peers: Adam at 1e-5, the
    last layer at 1e-4).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer. Expected one of {sorted(OPTIMIZERS)}. Received: optimizer={optimizer!r}")
    if lr_decay_steps is None:
        lr_decay_steps = int(lr_decay_epochs * steps_per_epoch)
    schedule = keras.optimizers.schedules.ExponentialDecay(
        learning_rate,
        decay_steps=max(1, int(lr_decay_steps)),
        decay_rate=lr_decay_rate,
        staircase=True,
    )
    optimizer_class = OPTIMIZERS[optimizer]
    loss_multipliers = dict(getattr(loss, "learning_rate_multipliers", {}))
    multipliers = dict(loss_multipliers)
    if head_lr_multiplier != 1.0:
        if model is None:
            raise ValueError(
                "`head_lr_multiplier` needs the model whose head it speeds up. "
                f"Received: head_lr_multiplier={head_lr_multiplier}, model=None"
            )
        for layer in model.head_layers():
            multipliers.update({variable.path: head_lr_multiplier for variable in layer.trainable_variables})
    # A loss's own tables (ROLE's estimates) take Adam's step under LAMB, not one scaled by the table's norm.
    adaptation = {"layer_adaptation_excluded_names": list(loss_multipliers)} if optimizer_class is Lamb else {}
    built = optimizer_class(
        schedule, weight_decay=weight_decay or None, learning_rate_multipliers=multipliers, **adaptation
    )
    if loss_multipliers:  # a loss's own tables (ROLE's estimates) are not decayed
        built.exclude_from_weight_decay(var_names=list(loss_multipliers))
    return built


# The optimizer keys of a recipe, named like `make_optimizer`'s arguments.
OPTIMIZER = Configured(make_optimizer, same_names(
    "learning_rate", "lr_decay_epochs", "lr_decay_rate", "weight_decay", "optimizer", "head_lr_multiplier"))
# Every model key with its default (from the models' signatures; `patch_size` and `stride`: None).
MODEL_DEFAULTS = _model_defaults()
