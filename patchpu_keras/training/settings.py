"""Settings checked before any data is read: one line per problem, naming the key, the value and what works.

`check_settings(config)` runs on the recipe dict `--set` produced (the CLI
calls it before it reads data or builds a model) and returns it with the patch
geometry resolved: `patch_size` and `stride` left at None follow `image_size`
(`builders.resolve_patch_geometry`); a number given in the recipe or by `--set`
is kept as it is and checked.
"""

import numbers

from patchpu_keras.losses.registry import LOSSES, build_loss, did_you_mean
from patchpu_keras.training.builders import DTYPE_POLICIES, MODELS, OPTIMIZERS, resolve_patch_geometry

# Keys that must be whole numbers > 0, and an example of a value that works.
POSITIVE_INTEGERS = {
    "image_size": 640, "batch_size": 16, "epochs": 25, "num_resolutions": 3, "embedding_dim": 256,
    "mlp_units": 256, "num_train": 2000, "num_test": 600, "item_size": 28,
}
# Keys that may be None, else whole numbers > 0.
OPTIONAL_POSITIVE_INTEGERS = {
    "patch_size": 64, "stride": 64, "max_patches_per_resolution": 64, "checkpoint_every": 500, "min_steps": 2000,
}
# Keys that must be numbers > 0, >= 0, or in [0, 1).
POSITIVE_NUMBERS = {"learning_rate": 1e-3, "lr_decay_epochs": 5, "lr_decay_rate": 0.5, "head_lr_multiplier": 1.0}
NON_NEGATIVE_NUMBERS = {"weight_decay": 1e-4, "diagnostics_images": 256}
FRACTIONS = {"holdout_fraction": 0.1, "partial_fraction": 0.1}


class SettingsError(ValueError):
    """A recipe setting that cannot work; the message is one line."""


def _problem(key, value, expected, example):
    return SettingsError(f"{key}={value!r}: expected {expected}, e.g. --set {key}={example}. Received: {key}={value!r}")


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_whole(value):
    return _is_number(value) and float(value) == int(value)


def _check_values(config):
    for key, example in POSITIVE_INTEGERS.items():
        if key in config and not (_is_whole(config[key]) and config[key] > 0):
            raise _problem(key, config[key], "a whole number > 0", example)
    for key, example in OPTIONAL_POSITIVE_INTEGERS.items():
        value = config.get(key)
        if value is not None and not (_is_whole(value) and value > 0):
            raise _problem(key, value, "a whole number > 0 (or none)", example)
    for key, example in POSITIVE_NUMBERS.items():
        if key in config and not (_is_number(config[key]) and config[key] > 0):
            raise _problem(key, config[key], "a number > 0", example)
    for key, example in NON_NEGATIVE_NUMBERS.items():
        if key in config and config[key] is not None and not (_is_number(config[key]) and config[key] >= 0):
            raise _problem(key, config[key], "a number >= 0", example)
    for key, example in FRACTIONS.items():
        if key in config and config[key] is not None and not (_is_number(config[key]) and 0 <= config[key] < 1):
            raise _problem(key, config[key], "a number in [0, 1)", example)
    if "downsample_factor" in config and not (_is_number(config["downsample_factor"]) and config["downsample_factor"] > 1):
        raise _problem("downsample_factor", config["downsample_factor"], "a number > 1", 2)


def _check_choices(config):
    choices = {"model": sorted(MODELS), "optimizer": sorted(OPTIMIZERS), "loss": sorted(LOSSES)}
    for key, allowed in choices.items():
        if key in config and config[key] not in allowed:
            raise SettingsError(
                f"{key}={config[key]!r} is not one of {allowed}.{did_you_mean(config[key], allowed)} "
                f"Received: {key}={config[key]!r}"
            )
    if config.get("dtype_policy") not in DTYPE_POLICIES:
        raise SettingsError(
            f"dtype_policy={config['dtype_policy']!r} is not one of {list(DTYPE_POLICIES)}. "
            f"Received: dtype_policy={config['dtype_policy']!r}"
        )


def _level_sizes(config):
    sizes = [config["image_size"]]
    for _ in range(1, config["num_resolutions"]):
        sizes.append(int(sizes[-1] / config["downsample_factor"]))
    return sizes


def _check_patch_geometry(config, patch_size, stride):
    given = f"patch_size={patch_size}, stride={stride}, image_size={config['image_size']}"
    if stride > patch_size:
        raise SettingsError(
            f"stride={stride} is larger than patch_size={patch_size}: {stride - patch_size} pixel(s) between "
            f"neighbouring patches are never seen. Use stride <= patch_size, e.g. --set stride={patch_size} "
            f"(or leave stride unset: it follows patch_size). Received: {given}"
        )
    sizes = _level_sizes(config)
    too_small = [size for size in sizes if size < patch_size]
    if too_small:
        fits = max(size for size in range(1, sizes[-1] + 1) if config["image_size"] % size == 0)
        raise SettingsError(
            f"patch_size={patch_size} does not fit the levels {sizes} of a {config['image_size']}x"
            f"{config['image_size']} image with num_resolutions={config['num_resolutions']}: every level must "
            f"hold a patch. Use a patch_size <= {sizes[-1]} (e.g. --set patch_size={fits}), fewer resolutions "
            f"or a larger image_size (or leave patch_size unset: it follows image_size). Received: {given}, "
            f"num_resolutions={config['num_resolutions']}"
        )
    uncovered = (config["image_size"] - patch_size) % stride
    if uncovered:
        raise SettingsError(
            f"patch_size={patch_size} with stride={stride} leaves the last {uncovered} pixel(s) of each row "
            f"and column of the {config['image_size']}x{config['image_size']} image uncovered. Use a stride "
            f"that divides image_size - patch_size = {config['image_size'] - patch_size} (e.g. a patch_size "
            f"dividing image_size, with stride unset). Received: {given}"
        )


def check_settings(config):
    """`config` checked, with the patch model's `patch_size` and `stride` resolved.

    Args:
        config: a recipe dict (after `--set`).

    Returns:
        A copy of `config`; for `model="patch"`, `patch_size` and `stride` are numbers.

    Raises:
        SettingsError: (a `ValueError`) one line naming the key, its value and a
            value that works: sizes and counts <= 0, values that are not numbers,
            unknown model / optimizer / loss names, patch geometry that leaves
            pixels unseen or a level without a patch, a loss key without value.
    """
    _check_values(config)
    _check_choices(config)
    config = dict(config)
    if config.get("model") == "patch" and "image_size" in config:
        patch_size, stride = resolve_patch_geometry(config)
        _check_patch_geometry(config, patch_size, stride)
        config["patch_size"], config["stride"] = patch_size, stride
    if "loss" in config:
        try:
            build_loss(config)
        except ValueError as error:
            raise SettingsError(" ".join(str(error).split())) from None
    return config
