"""The compared methods' recipes: every one loads and builds its loss and model."""

import json
import os
import shutil
import subprocess
import sys

import pytest

import recipes
from patchpu_keras import CAMClassifier, PatchPUClassifier, losses
from patchpu_keras.models import cam_backbone
from patchpu_keras.training import build_loss, build_model
from recipes._table import OWN_SETTING, PRETRAINED_RESNET50
from tests.configs import TINY_PAPER as SHRUNK

# recipe suffix: (loss class, loss attributes, model, boost_lu_alpha, regime)
METHODS = {
    "an": (losses.AssumeNegative, {}, "patch", None, "single_positive"),
    "an_ls": (losses.AssumeNegativeLS, {"label_smoothing": 0.1}, "patch", None, "single_positive"),
    "wan": (losses.WeakAssumeNegative, {}, "patch", None, "single_positive"),
    "epr": (losses.ExpectedPositiveRegularization, {"expected_positives": "k"}, "patch", None, "single_positive"),
    "role": (losses.ROLE, {"expected_positives": "k"}, "patch", None, "single_positive"),
    "ll_r": (losses.LargeLoss, {"mode": "reject", "delta_rel": 0.005}, "patch", None, "single_positive"),
    "ll_ct": (losses.LargeLoss, {"mode": "temporary", "delta_rel": 0.002}, "patch", None, "single_positive"),
    "ll_cp": (losses.LargeLoss, {"mode": "permanent", "delta_rel": 0.001}, "patch", None, "single_positive"),
    "em_apl": (losses.EntropyMaximization, {"alpha": "alpha", "beta": "beta", "warmup_epochs": 5,
                                            "num_epochs": 25}, "patch", None, "single_positive"),
    "en_cl": (losses.ExpectedNegativeConsistency, {"momentum": 0.9, "threshold": 0.5, "weight": 1.0},
              "patch", None, "single_positive"),
    "resnet50_bce": (losses.FullBCE, {}, "cam", None, "full"),
    "resnet50_an": (losses.AssumeNegative, {}, "cam", None, "single_positive"),
    "resnet50_ll_r_boostlu": (losses.LargeLoss, {"mode": "reject", "delta_rel": 0.005}, "cam", 5.0,
                              "single_positive"),
}
# Per-dataset values: EPR / ROLE k (patch paper), EM alpha and APL beta (Zhou et al. 2022).
DATASETS = {
    "voc": ("voc2012", {"k": 1.38, "alpha": 0.2, "beta": 0.02}),
    "coco": ("coco2014", {"k": 2.92, "alpha": 0.1, "beta": 0.9}),
}
PAPER_TRAINING = {"epochs": 25, "batch_size": 16, "learning_rate": 1e-3, "lr_decay_epochs": 5,
                  "lr_decay_rate": 0.5, "weight_decay": 1e-4, "label_seed": 1200}


def test_every_table_row_has_a_recipe_for_both_datasets():
    expected = {f"{prefix}_{method}" for prefix in DATASETS for method in METHODS}
    assert expected <= set(recipes.names())


@pytest.mark.parametrize("prefix", sorted(DATASETS))
@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_recipe_builds_its_loss_and_model(prefix, method, monkeypatch):
    name = f"{prefix}_{method}"
    loss_class, attributes, model, alpha, regime = METHODS[method]
    dataset, values = DATASETS[prefix]
    config = recipes.load(name)
    assert (config["dataset"], config["regime"], config["model"]) == (dataset, regime, model)
    assert config["boost_lu_alpha"] == alpha
    assert {key: config[key] for key in PAPER_TRAINING} == PAPER_TRAINING
    assert config["image_size"] == (448 if model == "cam" else 640)

    loss = build_loss(config)
    assert type(loss) is loss_class
    for attribute, value in attributes.items():
        assert getattr(loss, attribute) == pytest.approx(values.get(value, value)), attribute

    # The backbone the recipe asks for is recorded and the test one built instead:
    # one real ResNet-50 is built, in tests/models/test_stateful_training.py.
    backbones = []

    def record_backbone(name, image_size, weights=None):
        backbones.append((name, image_size, weights))
        return original_backbone("tiny", image_size)

    original_backbone = cam_backbone.feature_extractor
    monkeypatch.setattr(cam_backbone, "feature_extractor", record_backbone)
    built = build_model({**config, **SHRUNK}, num_labels=3)
    assert isinstance(built, CAMClassifier if model == "cam" else PatchPUClassifier)
    if model == "cam":
        assert backbones == [("resnet50", SHRUNK["image_size"], config["backbone_weights"])]
        assert built.boost_lu_alpha == alpha and built.backbone.architecture == "resnet50"
    else:
        assert backbones == []

    row = recipes.row(name)
    assert row.dataset == dataset and row.method
    # Numbers quoted for these rows were measured with a pretrained ResNet-50, not this recipe's model.
    assert all(reported.source and 40 < reported.map < 100 for reported in row.reported)
    assert row.measured_on in (None, PRETRAINED_RESNET50) and bool(row.reported) == (row.measured_on is not None)


def _distinct_value(default, index):
    """A value for a loss key that no recipe uses, of its default's kind, different for each key."""
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 3 + index
    return 0.37 + 0.01 * index


def test_every_loss_key_reaches_its_argument_and_its_default_is_the_signatures():
    """Each key of the loss table sets the argument it names; keys a recipe leaves out keep
    the loss class's own default; the recipe's `seed` and `epochs` reach the losses that read them."""
    import inspect

    config = recipes.load("demo")
    for name, entry in losses.LOSSES.items():
        configured = entry.configured
        parameters = configured.parameters()  # a `declared_in` signature first, as the table reads them
        # Left out: the built loss holds each argument's default.
        given = {key: 1.5 for key in entry.required}
        built = build_loss({"loss": name, **given})
        for key, argument in configured.keys.items():
            default = parameters[argument].default
            if default is not inspect.Parameter.empty and default is not None:
                assert getattr(built, argument) == default, (name, key)
        # Set: every key arrives at its argument.
        values = {key: _distinct_value(1.0 if entry.defaults[key] is None else entry.defaults[key], index)
                  for index, key in enumerate(configured.keys)}
        built = build_loss({**config, "loss": name, **values, "seed": 11, "epochs": 13})
        for key, argument in configured.keys.items():
            assert getattr(built, argument) == pytest.approx(values[key]), (name, key)
        for key, argument in configured.from_recipe.items():
            assert getattr(built, argument) == {"seed": 11, "epochs": 13}[key], (name, key)


@pytest.mark.parametrize("loss", losses.registry.names())
def test_every_recipe_builds_every_loss_or_names_the_missing_key(loss):
    """`--set loss=NAME` from any recipe gives that loss, or says which key to set."""
    for name in recipes.names():
        config = recipes.apply_overrides(recipes.load(name), [f"loss={loss}"])
        if losses.LOSSES[loss].required and config["expected_positives"] is None:  # own data
            with pytest.raises(ValueError, match=r"needs the recipe key 'expected_positives'.*--set"):
                build_loss(config)
            config = recipes.apply_overrides(config, ["expected_positives=1.5"])
        built = build_loss(config)
        target = losses.LOSSES[loss].configured.target
        assert type(built) is getattr(target, "func", target), (name, loss)  # a class or a partial of one
    # Only own data (custom_*) leaves k unknown; the paper's datasets and the demo state it.
    unknown = [name for name in recipes.names() if recipes.load(name)["expected_positives"] is None]
    assert unknown == [name for name in recipes.names() if name.startswith("custom_")] and unknown


def test_large_loss_modes_keep_kims_rates_when_delta_rel_is_unset():
    # Kim et al.'s delta_rel per LL mode, used when a recipe leaves delta_rel at None.
    for loss, mode, rate in (("ll_r", "reject", 0.005), ("ll_ct", "temporary", 0.002), ("ll_cp", "permanent", 0.001)):
        built = build_loss(recipes.apply_overrides(recipes.load("demo"), [f"loss={loss}"]))
        assert (built.mode, built.delta_rel) == (mode, rate)


# The peers' protocol (docs/peers_protocol.md): method -> (loss, boost_lu_alpha, head multiplier,
# batch per dataset, epochs, reported mAP per dataset).
PEERS = {
    "an": ("assume_negative", None, 10.0, (16, 16), 10, ("85.89", "64.92")),
    "ll_r": ("ll_r", None, 10.0, (16, 16), 10, ("89.2", "71.0")),
    "ll_r_boostlu": ("ll_r", 5.0, 10.0, (16, 16), 10, ("89.29", "72.89")),
    "em_apl": ("em_apl", None, 1.0, (8, 16), 10, ("89.19", "70.87")),
    "gr": ("generalized_robust", None, 10.0, (8, 8), 8, ("89.8", "73.2")),
}


@pytest.mark.parametrize("method", sorted(PEERS))
def test_peers_protocol_recipes_state_the_papers_settings(method):
    loss, alpha, head, batches, epochs, reported = PEERS[method]
    for (prefix, dataset), batch, number in zip(DATASETS.items(), batches, reported):
        name = f"{prefix}_peers_{method}"
        config = recipes.load(name)
        expected = {
            "dataset": dataset[0], "model": "cam", "backbone": "resnet50", "backbone_weights": "imagenet",
            "image_size": 448, "optimizer": "adam", "learning_rate": 1e-5, "weight_decay": 0.0,
            "lr_decay_rate": 1.0, "loss": loss, "boost_lu_alpha": alpha, "head_lr_multiplier": head,
            "batch_size": batch, "epochs": epochs, "regime": "single_positive", "label_seed": 1200,
        }
        assert {key: config[key] for key in expected} == expected, name
        row = recipes.row(name)
        assert row.reported[0].map == float(number) and row.reported[0].source, name
        assert row.measured_on == OWN_SETTING and f"(reported mAP {number})." in recipes.summary(name)
        built = build_loss(config)
        if loss == "generalized_robust":
            assert built.num_epochs == epochs


def test_imagenet_variants_of_the_patch_recipes_differ_only_in_the_embedders_weights():
    for name in ("voc_wn", "coco_wn", "custom_wn"):
        plain, pretrained = recipes.load(name), recipes.load(f"{name}_imagenet")
        assert pretrained["embedder_weights"] == "imagenet" and plain["embedder_weights"] is None
        assert {k: v for k, v in pretrained.items() if k != "embedder_weights"} == {
            k: v for k, v in plain.items() if k != "embedder_weights"}


def test_every_recipe_loads_under_the_wheels_package_name(tmp_path):
    # The wheel ships `recipes/` as `patchpu_keras.recipes`: a recipe module that imports
    # `recipes` by its checkout name works here and fails for every user of the wheel.
    # Copied under another name, each recipe must still load, with the same config.
    shutil.copytree(os.path.dirname(recipes.__file__), tmp_path / "shipped_recipes",
                    ignore=shutil.ignore_patterns("__pycache__"))
    script = (
        "import json, sys\n"
        "sys.path.remove('') if '' in sys.path else None\n"
        "import shipped_recipes as r\n"
        "print(json.dumps({n: [r.summary(n), r._own_config(n)] for n in r.names()}, default=str))\n"
    )
    # Only the package beside the copy: no top-level `recipes` to fall back on.
    package = os.path.dirname(os.path.dirname(os.path.abspath(losses.__file__)))
    os.symlink(package, tmp_path / "patchpu_keras")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    shipped = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(shipped) == sorted(recipes.names())
    for name, (summary, config) in shipped.items():
        assert summary == recipes.summary(name)
        assert config == json.loads(json.dumps(recipes._own_config(name), default=str)), name
