"""The paper's and the peers' recipes as data: one row per method x dataset.

Each row names its recipe, its dataset, the protocol it starts from (`PAPER`:
the patch paper's sec. 4.1.2, `_paper.py`; `PEERS`: the single-positive papers'
fine-tuning protocol, `_peers.py`), the keys it changes, the method it runs and
the numbers published for it, each with its source. What the numbers mean and
how far they apply is said once, in docs/recipes.md ("Reported numbers").
`python cli.py recipes` lists the rows; `python cli.py train --recipe NAME
--data-dir DIR` runs one.
"""

import typing

PAPER = "paper"
PEERS = "peers"

# What a row's reported numbers were measured with.
OWN_SETTING = "this recipe's setting"
PRETRAINED_RESNET50 = "an ImageNet-pretrained ResNet-50 at 448x448, not this recipe's from-scratch model"

# Sources of the reported numbers.
PATCH_PAPER = "Jouanneau et al., VISAPP 2023"
ZHOU_QUOTED = (
    "the ECCV 2022 table of Zhou et al. as quoted by Tran et al., arXiv 2508.20381, and the mvrl/VLPL README "
    "(448x448 input)"
)
VLPL = "the mvrl/VLPL README's table (448x448 input)"
CRISP = 'Liu et al., "Can Class-Priors Help Single-Positive Multi-Label Learning?" (CRISP), Table 1, their re-run'
BOOSTLU_TABLE = (
    "Kim et al., CVPR 2023 (BoostLU), results table in youngwk/BridgeGapExplanationPAMC (imgs/quantitative1.png)"
)


class Reported(typing.NamedTuple):
    """A published test mAP: its value, where it was read, and its spread over runs when given."""

    map: float
    source: str
    spread: typing.Optional[float] = None


class Row(typing.NamedTuple):
    """One recipe of the table.

    Fields:
        name: the recipe's name (`--recipe NAME`).
        dataset: "voc2012" or "coco2014".
        protocol: `PAPER` or `PEERS`, the settings the row starts from.
        title: one line for `cli.py recipes` (the reported mAP is added from `reported`).
        settings: dict, the recipe keys the row sets over its protocol.
        method: the method's paper.
        measured_on: what the reported numbers were measured with (`OWN_SETTING`,
            `PRETRAINED_RESNET50`), None when there is none.
        reported: tuple of `Reported`.
    """

    name: str
    dataset: str
    protocol: str
    title: str
    settings: dict
    method: str
    measured_on: typing.Optional[str] = None
    reported: tuple = ()

    @property
    def summary(self):
        """The line `cli.py recipes` prints: the title, with the mAP reported for this very setting."""
        if self.measured_on == OWN_SETTING and self.reported:
            return f"{self.title} (reported mAP {self.reported[0].map})."
        return f"{self.title}."


ROWS = (
    Row('voc_bce', 'voc2012', PAPER, "VOC 2012, binary cross-entropy on full labels: the paper's BCE row",
        {'loss': 'full_bce', 'regime': 'full'},
        method="Jouanneau et al., VISAPP 2023, eq. (5) on every label",
        measured_on=OWN_SETTING, reported=(Reported(61.6, PATCH_PAPER),)),
    Row('voc_wn', 'voc2012', PAPER, "VOC 2012, single positive labels, weak negative loss: the paper's setting",
        {'loss': 'weak_negative'},
        method="Jouanneau et al., VISAPP 2023, eq. (7-9)",
        measured_on=OWN_SETTING, reported=(Reported(60.4, PATCH_PAPER),)),
    Row('voc_wn_imagenet', 'voc2012', PAPER, 'VOC 2012, weak negative loss, patch embedder initialised from ImageNet (no published number)',
        {'loss': 'weak_negative', 'embedder_weights': 'imagenet'},
        method="Jouanneau et al., VISAPP 2023, eq. (7-9)",
        measured_on=None, reported=()),
    Row('voc_an', 'voc2012', PAPER, 'VOC 2012, assume negative (AN)',
        {'loss': 'assume_negative'},
        method="Cole et al., \"Multi-Label Learning from Single Positive Labels\", CVPR 2021",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(85.89, ZHOU_QUOTED), Reported(85.5, CRISP, spread=0.3))),
    Row('voc_an_ls', 'voc2012', PAPER, 'VOC 2012, assume negative with label smoothing 0.1 (AN-LS)',
        {'loss': 'assume_negative_ls'},
        method="Cole et al., CVPR 2021",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(87.5, CRISP, spread=0.1),)),
    Row('voc_wan', 'voc2012', PAPER, 'VOC 2012, weak assume negative (WAN)',
        {'loss': 'weak_assume_negative'},
        method="Cole et al., CVPR 2021",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(87.1, CRISP, spread=0.2),)),
    Row('voc_epr', 'voc2012', PAPER, 'VOC 2012, expected positive regularization (EPR)',
        {'loss': 'expected_positive_regularization'},
        method="Cole et al., CVPR 2021",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(85.2, CRISP, spread=0.4),)),
    Row('voc_role', 'voc2012', PAPER, 'VOC 2012, ROLE (regularized online label estimation)',
        {'loss': 'role'},
        method="Cole et al., CVPR 2021",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(87.77, ZHOU_QUOTED), Reported(88.1, CRISP, spread=0.2))),
    Row('voc_ll_r', 'voc2012', PAPER, 'VOC 2012, Large Loss Matters, rejection (LL-R)',
        {'loss': 'll_r'},
        method="Kim et al., \"Large Loss Matters in Weakly Supervised Multi-Label Classification\", CVPR 2022",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(89.2, VLPL), Reported(87.8, CRISP, spread=0.1))),
    Row('voc_ll_ct', 'voc2012', PAPER, 'VOC 2012, Large Loss Matters, temporary correction (LL-Ct)',
        {'loss': 'll_ct'},
        method="Kim et al., CVPR 2022",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(87.1, CRISP, spread=0.2),)),
    Row('voc_ll_cp', 'voc2012', PAPER, 'VOC 2012, Large Loss Matters, permanent correction (LL-Cp)',
        {'loss': 'll_cp'},
        method="Kim et al., CVPR 2022",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(87.5, CRISP, spread=0.0),)),
    Row('voc_em_apl', 'voc2012', PAPER, 'VOC 2012, entropy maximization + asymmetric pseudo-labelling (EM + APL)',
        {'loss': 'em_apl'},
        method="Zhou et al., \"Acknowledging the Unknown for Multi-label Learning with Single Positive Labels\", ECCV 2022",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(89.19, ZHOU_QUOTED), Reported(88.9, CRISP, spread=0.1))),
    Row('voc_en_cl', 'voc2012', PAPER, 'VOC 2012, expected negative + consistency (EN + CL, reconstructed)',
        {'loss': 'en_cl'},
        method="Verelst et al., \"Spatial Consistency Loss for Training Multi-Label Classifiers from Single-Label Annotations\", WACV 2023 (reconstructed: momentum, threshold and weight are ours)",
        measured_on=None, reported=()),
    Row('voc_resnet50_an', 'voc2012', PAPER, 'VOC 2012, ResNet-50 CAM from scratch, assume negative',
        {'loss': 'assume_negative', 'model': 'cam', 'image_size': 448},
        method="Kim et al., CVPR 2023 (ResNet-50 CAM rows); AN of Cole et al. 2021",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(85.89, ZHOU_QUOTED), Reported(85.5, CRISP, spread=0.3))),
    Row('voc_resnet50_bce', 'voc2012', PAPER, 'VOC 2012, ResNet-50 CAM from scratch, BCE on full labels (upper bound)',
        {'loss': 'full_bce', 'regime': 'full', 'model': 'cam', 'image_size': 448},
        method="Kim et al., \"Bridging the Gap between Model Explanations in Partially Annotated Multi-label Classification\", CVPR 2023 (ResNet-50 CAM rows)",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(89.42, ZHOU_QUOTED + ", full-label row"),)),
    Row('voc_resnet50_ll_r_boostlu', 'voc2012', PAPER, 'VOC 2012, ResNet-50 CAM from scratch, LL-R + BoostLU (alpha 5)',
        {'loss': 'll_r', 'model': 'cam', 'boost_lu_alpha': 5.0, 'image_size': 448},
        method="Kim et al., CVPR 2023: BoostLU(x) = max(x, 5x) on the class activation maps, with LL-R of Kim et al. 2022",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(89.2, CRISP + " (BoostLU+LL-R)", spread=0.0),)),
    Row('voc_peers_an', 'voc2012', PEERS, "VOC 2012, AN (assume negative), fine-tuned as Kim et al. re-ran it: the single-positive peers' protocol",
        {'loss': 'assume_negative'},
        method="Cole et al., CVPR 2021 (AN); protocol of Kim et al. 2022",
        measured_on=OWN_SETTING, reported=(Reported(85.89, BOOSTLU_TABLE + ", their re-run of AN with this protocol"),)),
    Row('voc_peers_ll_r', 'voc2012', PEERS, "VOC 2012, LL-R (large loss rejection): the single-positive peers' protocol",
        {'loss': 'll_r'},
        method="Kim et al., CVPR 2022: rejection rate delta_rel 0.5 % per epoch",
        measured_on=OWN_SETTING, reported=(Reported(89.2, "Kim et al., CVPR 2022 (Large Loss Matters), results table in snucml/LargeLossMatters (imgs/quant1.png), end to end"),)),
    Row('voc_peers_ll_r_boostlu', 'voc2012', PEERS, "VOC 2012, LL-R + BoostLU: the single-positive peers' protocol",
        {'loss': 'll_r', 'boost_lu_alpha': 5.0},
        method="Kim et al., CVPR 2023: BoostLU alpha 5 on the CAM, LL-R with delta_rel 0.5 %",
        measured_on=OWN_SETTING, reported=(Reported(89.29, BOOSTLU_TABLE),)),
    Row('voc_peers_em_apl', 'voc2012', PEERS, "VOC 2012, EM + APL (entropy maximization, asymmetric pseudo-labels): the single-positive peers' protocol",
        {'loss': 'em_apl', 'head_lr_multiplier': 1.0, 'batch_size': 8},
        method="Zhou et al., ECCV 2022: one learning rate for every layer, batch 8 (VOC) / 16 (COCO), APL after 5 warm-up epochs",
        measured_on=OWN_SETTING, reported=(Reported(89.19, "Kim et al., CVPR 2023, results table quoting Zhou et al., ECCV 2022 (Zhou et al.'s own table not read)"),)),
    Row('voc_peers_gr', 'voc2012', PEERS, "VOC 2012, GR-Loss (generalized robust loss): the single-positive peers' protocol",
        {'loss': 'generalized_robust', 'batch_size': 8, 'epochs': 8},
        method="Chen et al., IJCAI 2024: the defaults of their config.py (batch 8, 8 epochs, w 0 -> 2, b -2, mu 0.5 -> 0.8, sigma 2 -> 0.5, q2 0.01, q3 1)",
        measured_on=OWN_SETTING, reported=(Reported(89.8, "a third-party listing of Chen et al., IJCAI 2024 (the paper's own table not read)"),)),
    Row('coco_bce', 'coco2014', PAPER, "COCO 2014, binary cross-entropy on full labels: the paper's BCE row",
        {'loss': 'full_bce', 'regime': 'full'},
        method="Jouanneau et al., VISAPP 2023, eq. (5) on every label",
        measured_on=OWN_SETTING, reported=(Reported(65.8, PATCH_PAPER),)),
    Row('coco_wn', 'coco2014', PAPER, "COCO 2014, single positive labels, weak negative loss: the paper's setting",
        {'loss': 'weak_negative'},
        method="Jouanneau et al., VISAPP 2023, eq. (7-9)",
        measured_on=OWN_SETTING, reported=(Reported(63.2, PATCH_PAPER),)),
    Row('coco_wn_imagenet', 'coco2014', PAPER, 'COCO 2014, weak negative loss, patch embedder initialised from ImageNet (no published number)',
        {'loss': 'weak_negative', 'embedder_weights': 'imagenet'},
        method="Jouanneau et al., VISAPP 2023, eq. (7-9)",
        measured_on=None, reported=()),
    Row('coco_an', 'coco2014', PAPER, 'COCO 2014, assume negative (AN)',
        {'loss': 'assume_negative'},
        method="Cole et al., \"Multi-Label Learning from Single Positive Labels\", CVPR 2021",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(64.92, ZHOU_QUOTED), Reported(64.3, CRISP, spread=0.2))),
    Row('coco_an_ls', 'coco2014', PAPER, 'COCO 2014, assume negative with label smoothing 0.1 (AN-LS)',
        {'loss': 'assume_negative_ls'},
        method="Cole et al., CVPR 2021",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(67.1, CRISP, spread=0.2),)),
    Row('coco_wan', 'coco2014', PAPER, 'COCO 2014, weak assume negative (WAN)',
        {'loss': 'weak_assume_negative'},
        method="Cole et al., CVPR 2021",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(65.6, CRISP, spread=0.2),)),
    Row('coco_epr', 'coco2014', PAPER, 'COCO 2014, expected positive regularization (EPR)',
        {'loss': 'expected_positive_regularization'},
        method="Cole et al., CVPR 2021",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(63.6, CRISP, spread=0.2),)),
    Row('coco_role', 'coco2014', PAPER, 'COCO 2014, ROLE (regularized online label estimation)',
        {'loss': 'role'},
        method="Cole et al., CVPR 2021",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(67.04, ZHOU_QUOTED), Reported(67.0, CRISP, spread=0.1))),
    Row('coco_ll_r', 'coco2014', PAPER, 'COCO 2014, Large Loss Matters, rejection (LL-R)',
        {'loss': 'll_r'},
        method="Kim et al., \"Large Loss Matters in Weakly Supervised Multi-Label Classification\", CVPR 2022",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(71.0, VLPL), Reported(70.1, CRISP, spread=0.0))),
    Row('coco_ll_ct', 'coco2014', PAPER, 'COCO 2014, Large Loss Matters, temporary correction (LL-Ct)',
        {'loss': 'll_ct'},
        method="Kim et al., CVPR 2022",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(70.4, CRISP, spread=0.1),)),
    Row('coco_ll_cp', 'coco2014', PAPER, 'COCO 2014, Large Loss Matters, permanent correction (LL-Cp)',
        {'loss': 'll_cp'},
        method="Kim et al., CVPR 2022",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(70.5, CRISP, spread=0.0),)),
    Row('coco_em_apl', 'coco2014', PAPER, 'COCO 2014, entropy maximization + asymmetric pseudo-labelling (EM + APL)',
        {'loss': 'em_apl'},
        method="Zhou et al., \"Acknowledging the Unknown for Multi-label Learning with Single Positive Labels\", ECCV 2022",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(70.87, ZHOU_QUOTED), Reported(70.8, CRISP, spread=0.2))),
    Row('coco_en_cl', 'coco2014', PAPER, 'COCO 2014, expected negative + consistency (EN + CL, reconstructed)',
        {'loss': 'en_cl'},
        method="Verelst et al., \"Spatial Consistency Loss for Training Multi-Label Classifiers from Single-Label Annotations\", WACV 2023 (reconstructed: momentum, threshold and weight are ours)",
        measured_on=None, reported=()),
    Row('coco_resnet50_an', 'coco2014', PAPER, 'COCO 2014, ResNet-50 CAM from scratch, assume negative',
        {'loss': 'assume_negative', 'model': 'cam', 'image_size': 448},
        method="Kim et al., CVPR 2023 (ResNet-50 CAM rows); AN of Cole et al. 2021",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(64.92, ZHOU_QUOTED), Reported(64.3, CRISP, spread=0.2))),
    Row('coco_resnet50_bce', 'coco2014', PAPER, 'COCO 2014, ResNet-50 CAM from scratch, BCE on full labels (upper bound)',
        {'loss': 'full_bce', 'regime': 'full', 'model': 'cam', 'image_size': 448},
        method="Kim et al., \"Bridging the Gap between Model Explanations in Partially Annotated Multi-label Classification\", CVPR 2023 (ResNet-50 CAM rows)",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(76.78, ZHOU_QUOTED + ", full-label row"),)),
    Row('coco_resnet50_ll_r_boostlu', 'coco2014', PAPER, 'COCO 2014, ResNet-50 CAM from scratch, LL-R + BoostLU (alpha 5)',
        {'loss': 'll_r', 'model': 'cam', 'boost_lu_alpha': 5.0, 'image_size': 448},
        method="Kim et al., CVPR 2023: BoostLU(x) = max(x, 5x) on the class activation maps, with LL-R of Kim et al. 2022",
        measured_on=PRETRAINED_RESNET50, reported=(Reported(73.3, CRISP + " (BoostLU+LL-R)", spread=0.0),)),
    Row('coco_peers_an', 'coco2014', PEERS, "COCO 2014, AN (assume negative), fine-tuned as Kim et al. re-ran it: the single-positive peers' protocol",
        {'loss': 'assume_negative'},
        method="Cole et al., CVPR 2021 (AN); protocol of Kim et al. 2022",
        measured_on=OWN_SETTING, reported=(Reported(64.92, BOOSTLU_TABLE + ", their re-run of AN with this protocol"),)),
    Row('coco_peers_ll_r', 'coco2014', PEERS, "COCO 2014, LL-R (large loss rejection): the single-positive peers' protocol",
        {'loss': 'll_r'},
        method="Kim et al., CVPR 2022: rejection rate delta_rel 0.5 % per epoch",
        measured_on=OWN_SETTING, reported=(Reported(71.0, "Kim et al., CVPR 2022 (Large Loss Matters), results table in snucml/LargeLossMatters (imgs/quant1.png), end to end"),)),
    Row('coco_peers_ll_r_boostlu', 'coco2014', PEERS, "COCO 2014, LL-R + BoostLU: the single-positive peers' protocol",
        {'loss': 'll_r', 'boost_lu_alpha': 5.0},
        method="Kim et al., CVPR 2023: BoostLU alpha 5 on the CAM, LL-R with delta_rel 0.5 %",
        measured_on=OWN_SETTING, reported=(Reported(72.89, BOOSTLU_TABLE),)),
    Row('coco_peers_em_apl', 'coco2014', PEERS, "COCO 2014, EM + APL (entropy maximization, asymmetric pseudo-labels): the single-positive peers' protocol",
        {'loss': 'em_apl', 'head_lr_multiplier': 1.0},
        method="Zhou et al., ECCV 2022: one learning rate for every layer, batch 8 (VOC) / 16 (COCO), APL after 5 warm-up epochs",
        measured_on=OWN_SETTING, reported=(Reported(70.87, "Kim et al., CVPR 2023, results table quoting Zhou et al., ECCV 2022 (Zhou et al.'s own table not read)"),)),
    Row('coco_peers_gr', 'coco2014', PEERS, "COCO 2014, GR-Loss (generalized robust loss): the single-positive peers' protocol",
        {'loss': 'generalized_robust', 'batch_size': 8, 'epochs': 8},
        method="Chen et al., IJCAI 2024: the defaults of their config.py (batch 8, 8 epochs, w 0 -> 2, b -2, mu 0.5 -> 0.8, sigma 2 -> 0.5, q2 0.01, q3 1)",
        measured_on=OWN_SETTING, reported=(Reported(73.2, "a third-party listing of Chen et al., IJCAI 2024 (the paper's own table not read)"),)),

)
