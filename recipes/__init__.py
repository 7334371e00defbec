"""Recipes: the paper's and the peers' as rows of a table (`_table.py`), the demo and own-data ones as modules.

`python cli.py recipes` lists them; `python cli.py train --recipe NAME` runs one.
`load` merges the method defaults (`patchpu_keras.training.method_defaults`:
every key a model, the optimizer or a loss reads, with the default of the
argument it sets) under the recipe's own keys, so `--set loss=NAME` and its
keys work from every recipe.
"""

import ast
import difflib
import importlib
import pkgutil

from ._paper import paper_recipe
from ._peers import peers_recipe
from ._table import PAPER, PEERS, ROWS

_ROWS = {row.name: row for row in ROWS}
_PROTOCOLS = {PAPER: paper_recipe, PEERS: peers_recipe}


def _modules():
    """Recipes with code of their own: the demo and the own-data recipes."""
    return [module.name for module in pkgutil.iter_modules(__path__) if not module.name.startswith("_")]


def names():
    """Every recipe name, sorted."""
    return sorted([*_ROWS, *_modules()])


def did_you_mean(value, choices):
    """` Did you mean 'x'?` for the choice closest to `value`, or "" when none is close."""
    close = difflib.get_close_matches(str(value), list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _check_name(name):
    if name not in names():
        raise ValueError(
            f"Unknown recipe.{did_you_mean(name, names())} `python cli.py recipes` lists them all. "
            f"Received: recipe={name!r}"
        )


def row(name):
    """The table row of recipe `name` (`_table.Row`), or None for a recipe module."""
    _check_name(name)
    return _ROWS.get(name)


def _own_config(name):
    table_row = row(name)
    if table_row is None:
        return importlib.import_module(f"{__name__}.{name}").get_config()
    return _PROTOCOLS[table_row.protocol](table_row.dataset, **table_row.settings)


def load(name):
    """The config dict of recipe `name`, over the method defaults."""
    from patchpu_keras.training.builders import method_defaults

    return {**method_defaults(), **_own_config(name)}


def summary(name):
    """One line about recipe `name`: its row's summary, or the first line of its module's docstring."""
    table_row = row(name)
    if table_row is not None:
        return table_row.summary
    module = importlib.import_module(f"{__name__}.{name}")
    return (module.__doc__ or "").strip().splitlines()[0]


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


# How `--set` errors name a value's type.
_KINDS = {int: "a whole number", float: "a number", bool: "true or false", str: "a text",
          tuple: "a list (a,b)", list: "a list (a,b)"}

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
                f"Unknown recipe key {key!r}.{did_you_mean(key, config)} `python cli.py recipes` lists the "
                f"recipes; docs/recipes.md the keys. Received: {assignment!r}"
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
                f"Recipe key {key!r} expects {_KINDS.get(type(current), type(current).__name__)} "
                f"(currently {current!r}). Received: {assignment!r}"
            )
        config[key] = value
    return config
