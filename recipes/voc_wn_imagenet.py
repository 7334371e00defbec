"""VOC 2012, weak negative loss, patch embedder initialised from ImageNet (no published number).

    python cli.py train --recipe voc_wn_imagenet --data-dir /data/VOCdevkit

The paper's recipe `voc_wn` (Jouanneau et al., VISAPP 2023, sec. 4.1.2; reported
mAP 60.4 from scratch) with the patch embedder's EfficientNet-B0 stem and first
five MBConv blocks copied from `keras.applications.EfficientNetB0(weights="imagenet")`
(`embedder_weights="imagenet"`, with its input normalisation; offline,
`--set embedder_weights=PATH` of a file saved with
`keras.applications.EfficientNetB0(weights="imagenet").save_weights`). The
paper trains from scratch; no paper reports this variant. Not reproduced by
the project's tests (they ship no VOC / COCO and no ImageNet weights).
"""

from ._paper import paper_recipe


def get_config():
    return paper_recipe("voc2012", loss="weak_negative", embedder_weights="imagenet")
