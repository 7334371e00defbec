"""The loss table: every name a recipe's `loss` key accepts, what it builds and which keys it reads.

This is the one place a loss is declared for recipes and the CLI: one line
per loss, the loss class (or a `functools.partial` of it) and the recipe keys
that set its arguments. A key's default is its argument's default in the
class's signature (`patchpu_keras.configured`), so `defaults()` merges them
into every recipe (`recipes.load`): `--set loss=NAME` works from any recipe, and
`--set KEY=VALUE` accepts every key any loss reads.

An argument without a default (EPR and ROLE's expected number of positives per
image depends on the data) is a required key: its recipe default is None, and
building the loss without a value fails at once, naming the key to set.

Adding a loss: its module (the loss class), one line here, its test.
"""

import collections
import difflib
import functools

from patchpu_keras.configured import Configured, same_names
from patchpu_keras.losses.assume_negative import AssumeNegative
from patchpu_keras.losses.assume_negative_ls import AssumeNegativeLS
from patchpu_keras.losses.entropy_maximization import EntropyMaximization
from patchpu_keras.losses.expected_negative_consistency import ExpectedNegativeConsistency
from patchpu_keras.losses.expected_positive_regularization import ExpectedPositiveRegularization
from patchpu_keras.losses.full_bce import FullBCE
from patchpu_keras.losses.generalized_robust import GeneralizedRobust
from patchpu_keras.losses.large_loss import LargeLoss
from patchpu_keras.losses.online_negative import OnlineNegative
from patchpu_keras.losses.role import ROLE
from patchpu_keras.losses.weak_assume_negative import WeakAssumeNegative
from patchpu_keras.losses.weak_negative import WeakNegative


class LossEntry(collections.namedtuple("LossEntry", ["configured", "summary"])):
    """One loss of the table.

    Fields:
        configured: `Configured`, the loss class and the recipe keys it reads.
        summary: str, one line for `cli.py recipes`.
    """

    __slots__ = ()

    @property
    def defaults(self):
        """`{recipe key: default}` of the keys the loss reads (None for the required ones)."""
        return self.configured.defaults()

    @property
    def required(self):
        """Keys without a default: the recipe or `--set` must give them."""
        return self.configured.required()

    def build(self, config):
        """The loss, from the keys `config` gives (the others keep their defaults)."""
        return self.configured(config)


def _entry(target, summary, keys=(), **from_recipe):
    """A table line: `keys` are loss keys (a tuple of names, or {recipe key: argument}), `from_recipe`
    the recipe's own keys the loss reads ({argument: recipe key})."""
    keys = same_names(*keys) if isinstance(keys, tuple) else keys
    return LossEntry(Configured(target, keys, {key: argument for argument, key in from_recipe.items()}), summary)


EXPECTED_POSITIVES_HINT = (
    "the expected number of positive labels per image, k. It has no default: "
    "measure it on a fully labelled sample of your data (the mean number of labels "
    "per image; VOC 2012: 1.38, COCO 2014: 2.92)"
)
EM_KEYS = {"em_alpha": "alpha"}
APL_KEYS = {**EM_KEYS, "apl_beta": "beta", "apl_warmup_epochs": "warmup_epochs",
            "apl_negative_proportion": "negative_proportion"}

LOSSES = {
    "full_bce": _entry(FullBCE, "BCE on full labels: the upper bound (needs regime=full)"),
    "assume_negative": _entry(AssumeNegative, "AN: every unknown label is a negative"),
    "assume_negative_ls": _entry(AssumeNegativeLS, "AN-LS: assume negative with label smoothing (Cole et al. 2021)",
                                 ("label_smoothing",)),
    "weak_assume_negative": _entry(WeakAssumeNegative, "WAN: unknown labels as negatives weighted 1/(L-1)"),
    "weak_negative": _entry(WeakNegative, "WN: negatives weighted by label-embedding similarity (the patch paper, eq. 7-9)",
                            ("theta",)),
    "online_negative": _entry(OnlineNegative, "ON: unknown labels as negatives weighted by the model's own "
                              "(1 - p)^gamma, no prior", {"online_gamma": "gamma"}),
    "expected_positive_regularization": _entry(
        ExpectedPositiveRegularization, "EPR: expected positive regularization (Cole et al. 2021)",
        ("expected_positives",)),
    "role": _entry(ROLE, "ROLE: online label estimates trained with EPR (Cole et al. 2021)",
                   ("expected_positives",), seed="seed"),
    "ll_r": _entry(functools.partial(LargeLoss, mode="reject"),
                   "LL-R: reject the largest unknown-label losses (Kim et al. 2022)", ("delta_rel",)),
    "ll_ct": _entry(functools.partial(LargeLoss, mode="temporary"),
                    "LL-Ct: correct the largest losses for one step (Kim et al. 2022)", ("delta_rel",)),
    "ll_cp": _entry(functools.partial(LargeLoss, mode="permanent"),
                    "LL-Cp: correct the largest losses for good (Kim et al. 2022)", ("delta_rel",)),
    "em": _entry(EntropyMaximization, "EM: entropy maximization on unknown labels (Zhou et al. 2022)", EM_KEYS),
    # Zhou et al. 2022's VOC beta as the default; the COCO recipes set their own.
    "em_apl": _entry(functools.partial(EntropyMaximization, beta=0.02),
                     "EM + APL: entropy maximization with asymmetric pseudo-labels (Zhou et al. 2022)",
                     APL_KEYS, num_epochs="epochs"),
    "en_cl": _entry(ExpectedNegativeConsistency, "EN + CL: expected negatives with consistency (reconstructed)",
                    {"en_momentum": "momentum", "en_threshold": "threshold", "en_weight": "weight"}),
    "generalized_robust": _entry(
        GeneralizedRobust, "GR-Loss: generalized robust loss with epoch schedules (Chen et al. 2024)",
        {"gr_q2": "q2", "gr_q3": "q3"}, num_epochs="epochs"),
}


def names():
    """Every loss name, sorted."""
    return sorted(LOSSES)


def defaults():
    """Every key any loss reads, with its default (None for the `required` ones).

    A key several losses read (`em_alpha`, `delta_rel`, `expected_positives`)
    takes the default of the first loss in the table that reads it.
    """
    merged = {}
    for entry in LOSSES.values():
        merged.update({key: value for key, value in entry.defaults.items() if key not in merged})
    return merged


def did_you_mean(name, choices):
    """` Did you mean 'x'?` for the choice closest to `name`, or "" when none is close."""
    close = difflib.get_close_matches(str(name), list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _missing_key_message(name, key, config):
    hint = EXPECTED_POSITIVES_HINT if key == "expected_positives" else "it has no default"
    return (
        f"The {name!r} loss needs the recipe key {key!r}: {hint}. Add `--set {key}=VALUE`. "
        f"Received: {key}={config.get(key)!r}"
    )


def build_loss(config):
    """The loss a recipe dict names (`config["loss"]`), built from the recipe's keys.

    Keys the recipe does not give keep their defaults; `seed` (ROLE) and
    `epochs` (EM + APL, GR-Loss) come from the recipe.

    Raises:
        ValueError: the name is not in the table, or a `required` key is
            missing or None; the message names the key and how to set it.
    """
    name = config.get("loss")
    if name not in LOSSES:
        raise ValueError(
            f"Unknown loss.{did_you_mean(name, LOSSES)} Expected one of {names()}. Received: loss={name!r}"
        )
    entry = LOSSES[name]
    for key in entry.required:
        if config.get(key) is None:
            raise ValueError(_missing_key_message(name, key, config))
    return entry.build(config)
