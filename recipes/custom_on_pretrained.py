"""Your own images gathered per label: `custom_on` after pretraining its patch embedder on them, without labels.

    python cli.py train --recipe custom_on_pretrained --data-dir /data/my_labels

`custom_on` (the paper's model with online negatives, no label-count prior) with
`pretrain_steps=300`: before training, the run pretrains the patch embedder on the
patches of its own training images with the contrastive objective
(`patchpu_keras.pretraining`, `RUN/pretrained_embedder.weights.h5`, reused by
`--resume`) and trains from it. The best single-positive setting measured without
a label-count prior on the half-scale Fashion-MNIST mosaics, 3 seeds
(docs/benchmarks.md, "Beyond the paper": ON after contrastive pretraining against
ON from scratch, every seed above). There is no reference number for your data.
"""

from . import custom_on


def get_config():
    return {**custom_on.get_config(), "pretrain_steps": 300}
