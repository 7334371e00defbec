"""The single-positive peers' training protocol (docs/peers_protocol.md), shared by their recipes."""

from ._paper import paper_recipe

# Kim et al. 2022 / 2023 and Chen et al. 2024 (`config.py` / `train.py` of their code): an
# ImageNet ResNet-50 CAM model at 448x448, Adam at 1e-5 with the last layer at 10x, no weight
# decay and no schedule, batch 16, 10 epochs.
PEERS_PROTOCOL = {
    "model": "cam",
    "backbone": "resnet50",
    "backbone_weights": "imagenet",
    "image_size": 448,
    "optimizer": "adam",
    "learning_rate": 1e-5,
    "head_lr_multiplier": 10.0,
    "weight_decay": 0.0,
    "lr_decay_rate": 1.0,
    "batch_size": 16,
    "epochs": 10,
    "val_fraction": 0.2,  # 20 % of the training images validate, annotated as the training ones
}


def peers_recipe(dataset, **changes):
    """A recipe on `dataset` with the peers' protocol, then `changes` (the loss and its settings)."""
    return paper_recipe(dataset, **{**PEERS_PROTOCOL, **changes})
