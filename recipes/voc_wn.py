"""VOC 2012, single positive labels, weak negative loss: the paper's setting (reported mAP 60.4).

    python cli.py train --recipe voc_wn --data-dir /data/VOCdevkit

Source: Jouanneau, Bugeau, Palyart, Papadakis, Vézard, "A Patch-Based
Architecture for Multi-Label Classification from Single Positive Annotations",
VISAPP 2023. Settings of sec. 4.1.2: 640x640 images, 3 resolutions, factor 2,
64x64 patches with stride 64 (100 + 25 + 4 = 129 patches), F = 256, 25 epochs,
batch 16, LAMB lr 1e-3 halved every 5 epochs, weight decay 1e-4, theta = 0.
Data protocol of Cole et al. 2021: train on VOC 2012 `train` (5,717 images)
with one positive per image drawn with seed 1200, test on `val` (5,823) with
full labels. The paper reports a test mAP of 60.4 with the weak negative loss
(and 61.6 with BCE, recipe voc_bce). `--data-dir` takes the VOCdevkit folder,
VOC2012 itself, VOCtrainval_11-May-2012.tar, or a TFDS data dir with
`--source tfds`.
"""

from ._paper import paper_recipe


def get_config():
    return paper_recipe("voc2012", loss="weak_negative")
