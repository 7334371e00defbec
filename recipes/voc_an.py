"""VOC 2012, assume negative (AN).

    python cli.py train --recipe voc_an --data-dir /data/VOCdevkit

Method: Cole et al., "Multi-Label Learning from Single Positive Labels", CVPR
2021 (AN loss). Model and training: the patch paper's sec. 4.1.2 (Jouanneau et
al., VISAPP 2023: 640x640, 3 resolutions, 64x64 patches, 25 epochs, batch 16,
LAMB lr 1e-3 halved every 5 epochs); only the loss differs from recipe voc_wn.
Data protocol of Cole et al. 2021 (one positive per training image, seed 1200;
tested on full labels). Reported numbers, for an ImageNet-pretrained ResNet-50
at 448x448, not this recipe's from-scratch model: the ECCV 2022 table of Zhou
et al. as quoted by two later works (Tran et al., arXiv 2508.20381, and the
mvrl/VLPL README, "Input image size: 448x448"): VOC 2012 mAP 85.89; Liu et
al., "Can Class-Priors Help Single-Positive Multi-Label Learning?" (CRISP),
Table 1, their re-run of the method: VOC 2012 mAP 85.5 ± 0.3. The method's own
paper's table is not quoted, nor the patch paper's Table 1 value for this row:
neither is verified. Not reproduced by the project's tests (they ship no VOC /
COCO).
"""

from ._paper import paper_recipe


def get_config():
    return paper_recipe("voc2012", loss="assume_negative")
