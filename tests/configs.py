"""The small configurations the tests build and train, defined once.

Model keyword arguments (`TINY`) and recipe overrides (`TINY_PAPER`,
`TINY_DEMO`) small enough for a CPU training step in well under a second.
"""

# 32x32 images, 16x16 patches, 2 levels (4 + 1 patches), F = 16.
TINY = dict(image_size=32, patch_size=16, num_resolutions=2, embedding_dim=16, mlp_units=16)
# The paper's recipes (640x640, 64x64 patches) shrunk to TINY.
TINY_PAPER = {**TINY, "stride": 16}
# The demo recipe shrunk to seconds: 56x56 mosaics, 28x28 patches, 2 levels; its val_fraction of
# 0.1 holds out 4 of the 36 training mosaics for validation, leaving 2 batches of 16.
TINY_DEMO = {
    "num_train": 36, "num_test": 16, "image_size": 56, "num_resolutions": 2,
    "embedding_dim": 16, "mlp_units": 16, "batch_size": 16,
}


def as_overrides(settings):
    """`key=value` strings, as `recipes.apply_overrides` and `--set` take them."""
    return [f"{key}={value}" for key, value in settings.items()]


def set_options(settings):
    """`--set key=value` command-line words."""
    return sum((["--set", override] for override in as_overrides(settings)), [])


TINY_DEMO_OVERRIDES = as_overrides(TINY_DEMO)
