"""Your own images gathered per label: the paper's model and weak negative loss.

    python cli.py train --recipe custom_wn --data-dir /data/my_labels

`--data-dir` holds `train/<label>/<image>` folders (optionally `test/<label>/`)
or one manifest (`*.csv` / `*.jsonl` with `path`, `split`, `labels`, optional
`negatives`); see docs/datasets.md. The labels are the ones the data gives
(`regime=observed`): an image's observed positives are the folders it is in.
Without a test split, a seeded 10% of the training images is held out and
evaluated on its observed labels (the report says so); another seeded 10% of the
training images validates every epoch (`val_fraction`, annotated like the
training images), and `best_model.keras` is the epoch with the best validation mAP. Model and optimisation
are the paper's (Jouanneau et al., VISAPP 2023, sec. 4.1.2: 640x640, 3
resolutions, factor 2, 64x64 patches stride 64, F = 256, 25 epochs, batch 16,
LAMB halved every 5 epochs, weight decay 1e-4, theta = 0) but for the learning
rate: 5e-3 instead of the paper's 1e-3, chosen by experiment on datasets of 500,
2,000 and 8,000 images (`bench/schedule_study.py`; the numbers: docs/recipes.md,
"`custom_wn`'s defaults, measured"). There is no reference number for your data.
"""

from ._paper import paper_settings

# `bench/schedule_study.py`: lr 5e-3 against the paper's 1e-3 on 500 / 2,000 / 8,000 images.
LEARNING_RATE = 5e-3


def get_config():
    return {
        **paper_settings(),
        "dataset": "custom",
        "loss": "weak_negative",
        "regime": "observed",
        "learning_rate": LEARNING_RATE,
        "val_fraction": 0.1,  # validation images, annotated like the training ones
    }
