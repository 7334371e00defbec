"""`Configured`: a callable a recipe configures, and which recipe keys set which of its arguments.

A recipe is one flat dict of keys (`--set KEY=VALUE`). Each key that configures a
model, a loss or the optimizer takes its default from the signature of the
callable it configures, so each default is declared once, where it acts: the
loss table (`losses.registry.LOSSES`) and the builders' tables
(`training.builders.MODELS`, `OPTIMIZER`) list the callables and their keys.
"""

import inspect
import typing


def same_names(*names):
    """`{name: name}`: recipe keys named like the arguments they set."""
    return {name: name for name in names}


class Configured(typing.NamedTuple):
    """A callable and the recipe keys that set its arguments.

    Fields:
        target: the callable: a class, a function or a `functools.partial`
            (whose bound keywords become the defaults, e.g. EM + APL's beta).
        keys: dict, recipe key -> the name of the argument of `target` it sets
            (`em_alpha` -> `alpha`).
        from_recipe: dict, recipe key -> argument, for keys the rest of the
            recipe owns (`seed`, `epochs`): passed on, their defaults not taken.
        declared_in: callables whose signatures declare the defaults, first
            match wins, before `target`'s own (a builder such as
            `PatchPUClassifier.create` passes its keywords on to the backbone
            and the task, which declare them).
    """

    target: typing.Callable
    keys: dict
    from_recipe: dict = {}
    declared_in: tuple = ()

    def parameters(self):
        """`{argument: inspect.Parameter}` of `target`'s arguments and `declared_in`'s, each from the
        first signature that declares it (`declared_in` in order, then `target`)."""
        parameters = {}
        for source in (*self.declared_in, self.target):
            for name, parameter in inspect.signature(source).parameters.items():
                parameters.setdefault(name, parameter)
        return parameters

    def defaults(self):
        """`{recipe key: default}` of `keys`, from the declaring signatures (None where there is none)."""
        parameters = self.parameters()
        return {
            key: None if parameters[argument].default is inspect.Parameter.empty else parameters[argument].default
            for key, argument in self.keys.items()
        }

    def required(self):
        """Recipe keys of `keys` whose argument has no default."""
        parameters = self.parameters()
        return tuple(key for key, argument in self.keys.items()
                     if parameters[argument].default is inspect.Parameter.empty)

    def arguments(self, config):
        """`{argument: value}` for every key of `keys` and `from_recipe` that `config` gives.

        A key the config leaves out keeps its argument's default.
        """
        mapping = {**self.keys, **self.from_recipe}
        return {argument: config[key] for key, argument in mapping.items() if key in config}

    def __call__(self, config, **arguments):
        """`target` called with the config's arguments, then `arguments`."""
        return self.target(**{**self.arguments(config), **arguments})
