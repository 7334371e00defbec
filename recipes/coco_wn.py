"""COCO 2014, single positive labels, weak negative loss: the paper's setting (reported mAP 63.2).

    python cli.py train --recipe coco_wn --data-dir /data/coco

Source: Jouanneau et al., VISAPP 2023, settings of sec. 4.1.2 (640x640, 3
resolutions, factor 2, 64x64 patches stride 64, F = 256, 25 epochs, batch 16,
LAMB lr 1e-3 halved every 5 epochs, weight decay 1e-4, theta = 0). Data
protocol of Cole et al. 2021: train on the annotated images of train2014
(82,081) with one positive per image drawn with seed 1200, test on the
annotated images of val2014 (40,137) with full labels; 80 classes in the order
of the json's categories. The paper reports a test mAP of 63.2 with the weak
negative loss (and 65.8 with BCE, recipe coco_bce). `--data-dir` holds
annotations/instances_{train,val}2014.json, train2014/ and val2014/ (or is a
TFDS data dir with `--source tfds`).
"""

from ._paper import paper_recipe


def get_config():
    return paper_recipe("coco2014", loss="weak_negative")
