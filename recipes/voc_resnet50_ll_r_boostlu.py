"""VOC 2012, ResNet-50 CAM from scratch, LL-R + BoostLU (alpha 5).

    python cli.py train --recipe voc_resnet50_ll_r_boostlu --data-dir /data/VOCdevkit

Method: Kim et al., CVPR 2023: BoostLU(x) = max(x, 5x) on the class activation
maps, with LL-R of Kim et al. 2022. Model: `CAMClassifier`, ResNet-50 trained
from scratch (no pretrained weights), 448x448 input as in Kim et al.; training
as the patch paper's sec. 4.1.2 (25 epochs, batch 16, LAMB lr 1e-3 halved
every 5 epochs, weight decay 1e-4), so that the only difference from the patch
recipes is the model. Data protocol of Cole et al. 2021 (one positive per
training image, seed 1200; tested on full labels). Reported numbers, for an
ImageNet-pretrained ResNet-50 at 448x448, not this recipe's from-scratch
model: Liu et al., "Can Class-Priors Help Single-Positive Multi-Label
Learning?" (CRISP), Table 1, their re-run of the method (BoostLU+LL-R): VOC
2012 mAP 89.2 ± 0.0. The method's own paper's table is not quoted, nor the patch
paper's Table 1 value for this row: neither is verified. Not reproduced by the
project's tests (they ship no VOC / COCO).
"""

from ._paper import paper_recipe


def get_config():
    return paper_recipe("voc2012", loss="ll_r", model="cam", boost_lu_alpha=5.0, image_size=448)
