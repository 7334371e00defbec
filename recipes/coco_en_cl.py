"""COCO 2014, expected negative + consistency (EN + CL, reconstructed).

    python cli.py train --recipe coco_en_cl --data-dir /data/coco

Method: Verelst et al., "Spatial Consistency Loss for Training Multi-Label
Classifiers from Single-Label Annotations", WACV 2023. Reconstructed from the
paper's description: momentum, threshold and weight are ours. Model and
training: the patch paper's sec. 4.1.2 (Jouanneau et al., VISAPP 2023:
640x640, 3 resolutions, 64x64 patches, 25 epochs, batch 16, LAMB lr 1e-3
halved every 5 epochs); only the loss differs from recipe coco_wn. Data
protocol of Cole et al. 2021 (one positive per training image, seed 1200;
tested on full labels). Reported number: none quoted. Neither the method's
paper nor the patch paper's Table 1 is quoted (neither is verified), and this
is a reconstruction, so no published number applies to it as is. Not
reproduced by the project's tests (they ship no VOC / COCO).
"""

from ._paper import paper_recipe


def get_config():
    return paper_recipe("coco2014", loss="en_cl")
