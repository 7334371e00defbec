"""VOC 2012, binary cross-entropy on full labels: the paper's BCE row (reported mAP 61.6).

    python cli.py train --recipe voc_bce --data-dir /data/VOCdevkit

Source: Jouanneau et al., VISAPP 2023, settings of sec. 4.1.2 (as recipe
voc_wn: 640x640, 3 resolutions, factor 2, 64x64 patches stride 64, F = 256, 25
epochs, batch 16, LAMB lr 1e-3 halved every 5 epochs, weight decay 1e-4). The
loss is eq. (5), binary cross-entropy on every label of every training image
(`regime=full`): our reading of the paper's BCE row, the fully-labelled
reference the single-positive losses are compared with. The paper reports a
test mAP of 61.6 on VOC 2012 `val`.
"""

from ._paper import paper_recipe


def get_config():
    return paper_recipe("voc2012", loss="full_bce", regime="full")
