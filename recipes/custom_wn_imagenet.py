"""Your own images gathered per label: `custom_wn` with the patch embedder initialised from ImageNet.

    python cli.py train --recipe custom_wn_imagenet --data-dir /data/my_labels

`custom_wn` (the paper's model and weak negative loss on your folders or
manifest) with the patch embedder's EfficientNet-B0 stem and first five MBConv
blocks copied from `keras.applications.EfficientNetB0(weights="imagenet")`
(`embedder_weights="imagenet"`, with its input normalisation; offline,
`--set embedder_weights=PATH` of a file saved with
`keras.applications.EfficientNetB0(weights="imagenet").save_weights`). There
is no reference number for your data.
"""

from . import custom_wn


def get_config():
    return {**custom_wn.get_config(), "embedder_weights": "imagenet"}
