"""The loss table: every name a recipe's `loss` key accepts, how it builds, and its defaults.

This is the one place a loss is declared for recipes and the CLI. Each entry
names the recipe keys its loss reads and their default values; `defaults()`
merges them into every recipe (`recipes.load`), so `--set loss=NAME` works from
any recipe, and `--set KEY=VALUE` accepts every key any loss reads.

A key listed in `required` has no honest default (EPR and ROLE's expected
number of positives per image depends on the data): its default is None, and
building the loss without a value fails at once, naming the key to set.
"""

import collections

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


class LossEntry(collections.namedtuple("LossEntry", ["build", "defaults", "summary", "required"])):
    """One loss of the table.

    Fields:
        build: callable, recipe dict -> `keras.losses.Loss`.
        defaults: dict of the recipe keys `build` reads (beyond `seed` and
            `epochs`) and their defaults.
        summary: str, one line for `cli.py recipes`.
        required: tuple of keys of `defaults` without an honest default (None
            there): the recipe or `--set` must give them.
    """

    __slots__ = ()

    def __new__(cls, build, defaults, summary, required=()):
        return super().__new__(cls, build, defaults, summary, tuple(required))


EXPECTED_POSITIVES_HINT = (
    "the expected number of positive labels per image, k. It has no default: "
    "measure it on a fully labelled sample of your data (the mean number of labels "
    "per image; VOC 2012: 1.38, COCO 2014: 2.92)"
)

LOSSES = {
    "full_bce": LossEntry(
        lambda c: FullBCE(), {}, "BCE on full labels: the upper bound (needs regime=full)"),
    "assume_negative": LossEntry(
        lambda c: AssumeNegative(), {}, "AN: every unknown label is a negative"),
    "assume_negative_ls": LossEntry(
        lambda c: AssumeNegativeLS(c["label_smoothing"]), {"label_smoothing": 0.1},
        "AN-LS: assume negative with label smoothing (Cole et al. 2021)"),
    "weak_assume_negative": LossEntry(
        lambda c: WeakAssumeNegative(), {}, "WAN: unknown labels as negatives weighted 1/(L-1)"),
    "weak_negative": LossEntry(
        lambda c: WeakNegative(theta=c["theta"]), {"theta": 0.0},
        "WN: negatives weighted by label-embedding similarity (the patch paper, eq. 7-9)"),
    "online_negative": LossEntry(
        lambda c: OnlineNegative(gamma=c["online_gamma"]), {"online_gamma": 1.0},
        "ON: unknown labels as negatives weighted by the model's own (1 - p)^gamma, no prior"),
    "expected_positive_regularization": LossEntry(
        lambda c: ExpectedPositiveRegularization(c["expected_positives"]),
        {"expected_positives": None}, "EPR: expected positive regularization (Cole et al. 2021)",
        required=("expected_positives",)),
    "role": LossEntry(
        lambda c: ROLE(c["expected_positives"], seed=c["seed"]), {"expected_positives": None},
        "ROLE: online label estimates trained with EPR (Cole et al. 2021)",
        required=("expected_positives",)),
    "ll_r": LossEntry(
        lambda c: LargeLoss("reject", delta_rel=c["delta_rel"]), {"delta_rel": None},
        "LL-R: reject the largest unknown-label losses (Kim et al. 2022)"),
    "ll_ct": LossEntry(
        lambda c: LargeLoss("temporary", delta_rel=c["delta_rel"]), {"delta_rel": None},
        "LL-Ct: correct the largest losses for one step (Kim et al. 2022)"),
    "ll_cp": LossEntry(
        lambda c: LargeLoss("permanent", delta_rel=c["delta_rel"]), {"delta_rel": None},
        "LL-Cp: correct the largest losses for good (Kim et al. 2022)"),
    "em": LossEntry(
        lambda c: EntropyMaximization(c["em_alpha"]), {"em_alpha": 0.2},
        "EM: entropy maximization on unknown labels (Zhou et al. 2022)"),
    "em_apl": LossEntry(
        lambda c: EntropyMaximization(
            c["em_alpha"],
            beta=c["apl_beta"],
            warmup_epochs=c["apl_warmup_epochs"],
            num_epochs=c["epochs"],
            negative_proportion=c["apl_negative_proportion"],
        ),
        {"em_alpha": 0.2, "apl_beta": 0.02, "apl_warmup_epochs": 5, "apl_negative_proportion": 0.9},
        "EM + APL: entropy maximization with asymmetric pseudo-labels (Zhou et al. 2022)"),
    "en_cl": LossEntry(
        lambda c: ExpectedNegativeConsistency(
            momentum=c["en_momentum"], threshold=c["en_threshold"], weight=c["en_weight"]),
        {"en_momentum": 0.9, "en_threshold": 0.5, "en_weight": 1.0},
        "EN + CL: expected negatives with consistency (reconstructed)"),
    "generalized_robust": LossEntry(
        lambda c: GeneralizedRobust(num_epochs=c["epochs"], q2=c["gr_q2"], q3=c["gr_q3"]),
        {"gr_q2": 0.01, "gr_q3": 1.0},
        "GR-Loss: generalized robust loss with epoch schedules (Chen et al. 2024)"),
}

# Keys read by more than one loss must agree on their default.
for _name, _entry in LOSSES.items():
    for _key, _value in _entry.defaults.items():
        for _other in LOSSES.values():
            assert _other.defaults.get(_key, _value) == _value, (_name, _key)


def names():
    """Every loss name, sorted."""
    return sorted(LOSSES)


def defaults():
    """Every key any loss reads, with its default (None for the `required` ones)."""
    merged = {}
    for entry in LOSSES.values():
        merged.update(entry.defaults)
    return merged


def _missing_key_message(name, key, config):
    hint = EXPECTED_POSITIVES_HINT if key == "expected_positives" else "it has no default"
    return (
        f"The {name!r} loss needs the recipe key {key!r}: {hint}. Add `--set {key}=VALUE`. "
        f"Received: {key}={config.get(key)!r}"
    )


def build_loss(config):
    """The loss a recipe dict names (`config["loss"]`), built from the recipe's keys.

    Keys the recipe does not give fall back to the table's defaults; `seed`
    (ROLE) and `epochs` (EM + APL) come from the recipe.

    Raises:
        ValueError: the name is not in the table, or a `required` key is
            missing or None; the message names the key and how to set it.
    """
    name = config.get("loss")
    if name not in LOSSES:
        raise ValueError(f"Unknown loss. Expected one of {names()}. Received: loss={name!r}")
    entry = LOSSES[name]
    merged = {**entry.defaults, **config}
    for key in entry.required:
        if merged.get(key) is None:
            raise ValueError(_missing_key_message(name, key, config))
    return entry.build(merged)
