"""Recipes: one module per experiment, each with `get_config()` returning a plain dict.

`python cli.py recipes` lists them; `python cli.py train --recipe NAME` runs one.
`load` merges the method defaults (`patchpu_keras.training.method_defaults`:
every key a loss or a compared model reads) under the recipe's own keys, so
`--set loss=NAME` and its keys work from every recipe.
"""

import ast
import importlib
import pkgutil


def names():
    """Names of every recipe module, sorted."""
    return sorted(
        module.name for module in pkgutil.iter_modules(__path__) if not module.name.startswith("_")
    )


def _module(name):
    if name not in names():
        raise ValueError(f"Unknown recipe. Expected one of {names()}. Received: recipe={name!r}")
    return importlib.import_module(f"{__name__}.{name}")


def load(name):
    """The config dict of recipe `name`, over the method defaults."""
    from patchpu_keras.training.builders import method_defaults

    return {**method_defaults(), **_module(name).get_config()}


def summary(name):
    """The first line of recipe `name`'s docstring."""
    return (_module(name).__doc__ or "").strip().splitlines()[0]


def _parse(text):
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


# Keys whose values may change type: `jit_compile` is True, False or "auto".
MIXED_TYPE_KEYS = {"jit_compile": (bool, str)}


def apply_overrides(config, assignments):
    """A copy of `config` with `key=value` assignments applied.

    Values are read as Python literals (`3`, `0.5`, `1,4`, `none`, `true`),
    anything else as a string, and must fit the type of the value they replace
    (an int may replace a float; anything may replace `None`).
    """
    config = dict(config)
    for assignment in assignments:
        if "=" not in assignment:
            raise ValueError(f"Overrides are key=value. Received: {assignment!r}")
        key, text = assignment.split("=", 1)
        key = key.strip()
        if key not in config:
            raise ValueError(
                f"Unknown recipe key {key!r}. Expected one of {sorted(config)}. "
                f"Received: {assignment!r}"
            )
        value, current = _parse(text), config[key]
        if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(current, (tuple, list)) and isinstance(value, (tuple, list)):
            value = type(current)(value)
        if key in MIXED_TYPE_KEYS and isinstance(value, MIXED_TYPE_KEYS[key]):
            pass
        elif current is not None and value is not None and type(value) is not type(current):
            raise ValueError(
                f"Recipe key {key!r} expects a {type(current).__name__} "
                f"(currently {current!r}). Received: {assignment!r}"
            )
        config[key] = value
    return config
