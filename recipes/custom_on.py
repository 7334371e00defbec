"""Your own images gathered per label: the paper's model with online negatives (ON), no label-count prior.

    python cli.py train --recipe custom_on --data-dir /data/my_labels

`custom_wn` with the weak negative loss replaced by the online negative loss
(`patchpu_keras.losses.OnlineNegative`): an unknown label is a negative weighted
by `1 - p`, the model's own current probability of it held fixed, so the labels
the model already finds are pushed down less. Like WN, it needs no prior on the
number of labels per image (EPR and ROLE do). The data layout, the model and
the optimisation are `custom_wn`'s (docs/datasets.md; Jouanneau et al., VISAPP
2023, sec. 4.1.2, learning rate 5e-3). Chosen by measurement on the half-scale
Fashion-MNIST mosaics, 3 seeds (docs/benchmarks.md, "Beyond the paper"): ON
above AN by more than the seed spread. There is no reference number for your
data.
"""

from . import custom_wn


def get_config():
    return {**custom_wn.get_config(), "loss": "online_negative"}
