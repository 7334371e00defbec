"""The compared methods' recipes: every one loads and builds its loss and model."""

import re

import pytest

import recipes
from patchpu_keras import CAMClassifier, PatchPUClassifier, losses
from patchpu_keras.models import cam_classifier
from patchpu_keras.training import build_loss, build_model
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

    original_backbone = cam_classifier.build_backbone
    monkeypatch.setattr(cam_classifier, "build_backbone", record_backbone)
    built = build_model({**config, **SHRUNK}, num_labels=3)
    assert isinstance(built, CAMClassifier if model == "cam" else PatchPUClassifier)
    if model == "cam":
        assert backbones == [("resnet50", SHRUNK["image_size"], config["backbone_weights"])]
        assert built.boost_lu_alpha == alpha and built.backbone_name == "resnet50"
    else:
        assert backbones == []

    doc = " ".join(recipes._module(name).__doc__.split())
    assert f"python cli.py train --recipe {name} --data-dir" in doc
    assert "Method:" in doc and "Not reproduced by the project's tests" in doc
    # Either a number with where it was read, or an explicit statement that none is quoted.
    assert re.search(r"mAP \d+\.\d", doc) or "none quoted" in doc


# loss name: (class, {attribute: the recipe key it comes from, or a constant as ("=", value)}).
LOSS_KEYS = {
    "full_bce": (losses.FullBCE, {}),
    "assume_negative": (losses.AssumeNegative, {}),
    "assume_negative_ls": (losses.AssumeNegativeLS, {"label_smoothing": "label_smoothing"}),
    "weak_assume_negative": (losses.WeakAssumeNegative, {}),
    "weak_negative": (losses.WeakNegative, {"theta": "theta"}),
    "online_negative": (losses.OnlineNegative, {"gamma": "online_gamma"}),
    "expected_positive_regularization": (losses.ExpectedPositiveRegularization,
                                         {"expected_positives": "expected_positives"}),
    "role": (losses.ROLE, {"expected_positives": "expected_positives", "seed": "seed"}),
    "ll_r": (losses.LargeLoss, {"mode": ("=", "reject"), "delta_rel": "delta_rel"}),
    "ll_ct": (losses.LargeLoss, {"mode": ("=", "temporary"), "delta_rel": "delta_rel"}),
    "ll_cp": (losses.LargeLoss, {"mode": ("=", "permanent"), "delta_rel": "delta_rel"}),
    "em": (losses.EntropyMaximization, {"alpha": "em_alpha", "beta": ("=", None)}),
    "em_apl": (losses.EntropyMaximization, {
        "alpha": "em_alpha", "beta": "apl_beta", "warmup_epochs": "apl_warmup_epochs",
        "num_epochs": "epochs", "negative_proportion": "apl_negative_proportion"}),
    "en_cl": (losses.ExpectedNegativeConsistency,
              {"momentum": "en_momentum", "threshold": "en_threshold", "weight": "en_weight"}),
    "generalized_robust": (losses.GeneralizedRobust, {"q2": "gr_q2", "q3": "gr_q3", "num_epochs": "epochs"}),
}
# Kim et al.'s delta_rel per LL mode, used when a recipe leaves delta_rel at None.
LL_DELTA_REL = {"reject": 0.005, "temporary": 0.002, "permanent": 0.001}


def _expected_attributes(loss, config):
    loss_class, keys = LOSS_KEYS[loss]
    expected = {}
    for attribute, source in keys.items():
        expected[attribute] = source[1] if isinstance(source, tuple) else config[source]
    if loss.startswith("ll_") and expected["delta_rel"] is None:
        expected["delta_rel"] = LL_DELTA_REL[expected["mode"]]
    return loss_class, expected


def test_the_loss_table_is_the_one_this_test_knows():
    assert sorted(LOSS_KEYS) == losses.registry.names()


@pytest.mark.parametrize("loss", sorted(LOSS_KEYS))
def test_every_recipe_builds_every_loss_from_its_own_keys_or_names_the_missing_one(loss):
    """`--set loss=NAME` from any recipe gives that loss with the recipe's values, and
    `--set KEY=VALUE` of each key it reads reaches the loss."""
    for name in recipes.names():
        config = recipes.apply_overrides(recipes.load(name), [f"loss={loss}"])
        if losses.LOSSES[loss].required and config["expected_positives"] is None:  # own data
            with pytest.raises(ValueError, match=r"needs the recipe key 'expected_positives'.*--set"):
                build_loss(config)
            config = recipes.apply_overrides(config, ["expected_positives=1.5"])
        loss_class, expected = _expected_attributes(loss, config)
        built = build_loss(config)
        assert type(built) is loss_class, (name, loss)
        assert {attribute: getattr(built, attribute) for attribute in expected} == expected, (name, loss)
        # Every float key the loss reads, set to a value no recipe uses, arrives as set.
        floats = [key for key in LOSS_KEYS[loss][1].values() if isinstance(key, str) and key not in ("seed", "epochs", "apl_warmup_epochs")]
        config = recipes.apply_overrides(config, [f"{key}=0.37" for key in floats])
        built = build_loss(config)
        for attribute, key in LOSS_KEYS[loss][1].items():
            if key in floats:
                assert getattr(built, attribute) == 0.37, (name, loss, key)
    # Only own data (custom_*) leaves k unknown; the paper's datasets and the demo state it.
    unknown = [name for name in recipes.names() if recipes.load(name)["expected_positives"] is None]
    assert unknown == [name for name in recipes.names() if name.startswith("custom_")] and unknown


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
        doc = " ".join(recipes._module(name).__doc__.split())
        assert f"python cli.py train --recipe {name} --data-dir" in doc
        assert f"reported mAP {number})" in doc and f"Reported test mAP: {number} (" in doc
        built = build_loss(config)
        if loss == "generalized_robust":
            assert built.num_epochs == epochs


def test_imagenet_variants_of_the_patch_recipes_differ_only_in_the_embedders_weights():
    for name in ("voc_wn", "coco_wn", "custom_wn"):
        plain, pretrained = recipes.load(name), recipes.load(f"{name}_imagenet")
        assert pretrained["embedder_weights"] == "imagenet" and plain["embedder_weights"] is None
        assert {k: v for k, v in pretrained.items() if k != "embedder_weights"} == {
            k: v for k, v in plain.items() if k != "embedder_weights"}
