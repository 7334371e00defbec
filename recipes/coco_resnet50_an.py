"""COCO 2014, ResNet-50 CAM from scratch, assume negative.

    python cli.py train --recipe coco_resnet50_an --data-dir /data/coco

Method: Kim et al., CVPR 2023 (ResNet-50 CAM rows); AN of Cole et al. 2021.
Model: `CAMClassifier`, ResNet-50 trained from scratch (no pretrained
weights), 448x448 input as in Kim et al.; training as the patch paper's sec.
4.1.2 (25 epochs, batch 16, LAMB lr 1e-3 halved every 5 epochs, weight decay
1e-4), so that the only difference from the patch recipes is the model. Data
protocol of Cole et al. 2021 (one positive per training image, seed 1200;
tested on full labels). Reported numbers, for an ImageNet-pretrained ResNet-50
at 448x448, not this recipe's from-scratch model: the ECCV 2022 table of Zhou
et al. as quoted by two later works (Tran et al., arXiv 2508.20381, and the
mvrl/VLPL README, "Input image size: 448x448"): COCO 2014 mAP 64.92; Liu et
al., "Can Class-Priors Help Single-Positive Multi-Label Learning?" (CRISP),
Table 1, their re-run of the method: COCO 2014 mAP 64.3 ± 0.2. The method's
own paper's table is not quoted, nor the patch paper's Table 1 value for this
row: neither is verified. Not reproduced by the project's tests (they ship no
VOC / COCO).
"""

from ._paper import paper_recipe


def get_config():
    return paper_recipe("coco2014", loss="assume_negative", model="cam", image_size=448)
