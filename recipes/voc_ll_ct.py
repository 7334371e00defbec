"""VOC 2012, Large Loss Matters, temporary correction (LL-Ct).

    python cli.py train --recipe voc_ll_ct --data-dir /data/VOCdevkit

Method: Kim et al., CVPR 2022 (LL-Ct, delta_rel 0.2 percent per epoch). Model
and training: the patch paper's sec. 4.1.2 (Jouanneau et al., VISAPP 2023:
640x640, 3 resolutions, 64x64 patches, 25 epochs, batch 16, LAMB lr 1e-3
halved every 5 epochs); only the loss differs from recipe voc_wn. Data
protocol of Cole et al. 2021 (one positive per training image, seed 1200;
tested on full labels). Reported numbers, for an ImageNet-pretrained ResNet-50
at 448x448, not this recipe's from-scratch model: Liu et al., "Can Class-
Priors Help Single-Positive Multi-Label Learning?" (CRISP), Table 1, their re-
run of the method: VOC 2012 mAP 87.1 ± 0.2. The method's own paper's table is
not quoted, nor the patch paper's Table 1 value for this row: neither is
verified. Not reproduced by the project's tests (they ship no VOC / COCO).
"""

from ._paper import paper_recipe


def get_config():
    return paper_recipe("voc2012", loss="ll_ct")
