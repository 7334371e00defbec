"""COCO 2014, binary cross-entropy on full labels: the paper's BCE row (reported mAP 65.8).

    python cli.py train --recipe coco_bce --data-dir /data/coco

Source: Jouanneau et al., VISAPP 2023, settings of sec. 4.1.2 (as recipe
coco_wn). The loss is eq. (5), binary cross-entropy on every label of every
training image (`regime=full`): our reading of the paper's BCE row, the
fully-labelled reference. The paper reports a test mAP of 65.8 on the
annotated images of val2014.
"""

from ._paper import paper_recipe


def get_config():
    return paper_recipe("coco2014", loss="full_bce", regime="full")
