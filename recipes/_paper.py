"""The paper's settings (Jouanneau et al., VISAPP 2023, sec. 4.1.2), shared by the dataset recipes."""


def paper_settings():
    """Model, optimisation and data-protocol keys of sec. 4.1.2 as a plain dict."""
    return {
        # Data. The other data keys keep their defaults (`--data-dir`, `source`, `label_seed` 1200 as
        # Cole et al. 2021, `val_fraction` 0: the paper's protocol keeps the last epoch; docs/recipes.md).
        "dataset": None,  # set by each recipe: "voc2012", "coco2014" or "custom"
        "regime": "single_positive",
        # Model: the patch model's defaults are sec. 4.1.2's (3 resolutions, factor 2,
        # F = 256, 640x640 images); patch_size and stride follow image_size
        # (64x64 patches side by side at 640: `training.builders.resolve_patch_geometry`).
        # Training: 25 epochs, batch 16, LAMB lr 1e-3 halved every 5 epochs, weight decay 1e-4
        "loss": "weak_negative",
        "epochs": 25,
        "batch_size": 16,
        "learning_rate": 1e-3,
        "lr_decay_epochs": 5,
        "lr_decay_rate": 0.5,
        "weight_decay": 1e-4,
        "seed": 0,
        "early_stopping_patience": None,  # epochs without a better val_map before stopping; None: never
    }


# Per-dataset hyperparameters of the compared methods, as their papers set them.
_METHOD_SETTINGS = {
    "voc2012": {"expected_positives": 1.38, "em_alpha": 0.2, "apl_beta": 0.02},
    "coco2014": {"expected_positives": 2.92, "em_alpha": 0.1, "apl_beta": 0.9},
}


def method_settings(dataset):
    """The compared methods' keys whose value depends on `dataset`.

    k of EPR / ROLE: 1.38 (VOC) and 2.92 (COCO), the patch paper's values.
    EM alpha and APL beta: Zhou et al. 2022 (VOC 0.2 / 0.02, COCO 0.1 / 0.9).
    Every other method key keeps its default (`patchpu_keras.training.method_defaults`:
    APL after 5 warm-up epochs, Kim et al.'s delta_rel per mode, our EN + CL settings).
    """
    if dataset not in _METHOD_SETTINGS:
        raise ValueError(f"Expected one of {sorted(_METHOD_SETTINGS)}. Received: dataset={dataset!r}")
    return dict(_METHOD_SETTINGS[dataset])


def paper_recipe(dataset, **changes):
    """A recipe on `dataset` ("voc2012" or "coco2014"): the paper's settings, the dataset's
    method settings, single positive labels, then `changes` (e.g. `loss="role"`)."""
    return {**paper_settings(), **method_settings(dataset), "dataset": dataset,
            "regime": "single_positive", **changes}
