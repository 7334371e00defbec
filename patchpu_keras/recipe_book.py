"""The recipes package, wherever it is installed.

`recipes/` lives at the top of a checkout (the README's home for it) and ships in
the wheel as `patchpu_keras.recipes`, so an installed package adds no top-level
`recipes` module to site-packages. In a checkout (`python cli.py`, or
`PYTHONPATH=$PWD`) the top-level `recipes` beside this package is used, so a
checkout never reads the recipes of another installed copy; anywhere else,
`patchpu_keras.recipes` (a wheel, or an editable install).
"""

import importlib
import os

_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _import_recipes():
    try:
        module = importlib.import_module("recipes")
    except ImportError:
        module = None
    if module is not None and os.path.dirname(os.path.dirname(os.path.abspath(module.__file__))) == _CHECKOUT:
        return module
    return importlib.import_module("patchpu_keras.recipes")


recipes = _import_recipes()
