"""Per-class thresholds chosen on a validation split of the demo, scored on its test split.

    python cli.py train --recipe demo --set num_train=1600 --out /tmp/demo-thr
    python bench/threshold_choice.py /tmp/demo-thr [--validation 400]

The run trained on the first `num_train` of the demo's seeded training mosaics
(read from its `report.json`); the next `--validation` mosaics of the same
seeded sequence (the rest of the demo's 2,000 training mosaics with the
defaults) were never trained on and are the validation split, annotated twice:
with full labels, and with single positives drawn as the training split's
(`observe(..., "single_positive", seed=label_seed)`). Thresholds are chosen
on it with `patchpu_keras.thresholds.choose_thresholds` from the full labels
(max F1 per class) and from the single positives for several
`--shares` of known positives kept, then applied to the test split (600
mosaics of Fashion-MNIST's test items, full labels). Prints, per rule, the
micro and macro F1 (and precision / recall) on the test split, beside 0.5 and
the test split's own best-F1 thresholds (an optimistic bound, chosen on the
data it is measured on), and the same numbers on the validation split's full
labels (how the share is picked without touching the test split).

`--write-model PATH` saves the run's model with the thresholds chosen from the
single positives at `choose_thresholds`' default share, as a run whose
validation split has only single positives would ship it.
"""

import json
import os
import sys

import click
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from patchpu_keras.data.mosaics import recipe_mosaics  # noqa: E402
from patchpu_keras.data.regimes import observe  # noqa: E402
from patchpu_keras.inference import predict_batch  # noqa: E402
from patchpu_keras.metrics.classification import classification_report  # noqa: E402
from patchpu_keras.models import load_model  # noqa: E402
from patchpu_keras.thresholds import choose_thresholds  # noqa: E402

BATCH_SIZE = 32


def probabilities_of(model, images):
    images = np.asarray(images)[..., None] if np.ndim(images) == 3 else np.asarray(images)
    return np.concatenate([
        predict_batch(model, images[start:start + BATCH_SIZE], BATCH_SIZE)["probabilities"]
        for start in range(0, len(images), BATCH_SIZE)
    ])


def scores_at(full_labels, probabilities, names, thresholds):
    report = classification_report(full_labels, probabilities, names, thresholds=thresholds)
    averages = report["at_model_thresholds"]
    return {
        "micro_f1": averages["micro"]["f1"], "macro_f1": averages["macro"]["f1"],
        "micro_precision": averages["micro"]["precision"], "micro_recall": averages["micro"]["recall"],
    }


@click.command()
@click.argument("run_dir")
@click.option("--validation", type=int, default=400, show_default=True,
              help="Validation mosaics after the run's training mosaics.")
@click.option("--shares", default="0.5,0.6,0.7,0.75,0.8,0.85,0.9,0.95,1.0", show_default=True,
              help="Shares of known positives kept, comma-separated.")
@click.option("--write-model", default=None,
              help="Save the model with the thresholds chosen from the single positives here (.keras).")
def main(run_dir, validation, shares, write_model):
    with open(os.path.join(run_dir, "report.json")) as file:
        config = json.load(file)["config"]
    num_trained = config["num_train"]
    mosaics = recipe_mosaics({**config, "num_train": num_trained + validation})
    validation_full = mosaics["train"]["full_labels"][num_trained:]
    validation_observed = observe(validation_full, "single_positive", seed=config["label_seed"])
    names = list(mosaics["class_names"])
    model = load_model(os.path.join(run_dir, "model.keras")).for_inference()
    validation_probabilities = probabilities_of(model, mosaics["train"]["images"][num_trained:])
    test_full = mosaics["test"]["full_labels"]
    test_probabilities = probabilities_of(model, mosaics["test"]["images"])

    rules = {"0.5 everywhere": np.full(len(names), 0.5)}
    chosen = choose_thresholds(validation_probabilities, full_labels=validation_full)
    rules["full labels, max F1"] = chosen.thresholds
    for share in (float(value) for value in shares.split(",")):
        chosen = choose_thresholds(validation_probabilities, observed_labels=validation_observed,
                                   positive_share=share)
        rules[f"single positives, share {share:g}"] = chosen.thresholds
    rules["test split's own best F1 (bound)"] = choose_thresholds(test_probabilities, full_labels=test_full).thresholds

    print(f"run {run_dir}: trained on {num_trained} mosaics; validation {validation} mosaics "
          f"({int(validation_observed.sum())} single positives of {int(validation_full.sum())} labels); "
          f"test {len(test_full)} mosaics")
    print(f"{'rule':40s} {'test micro F1':>13s} {'macro F1':>9s} {'micro P':>8s} {'micro R':>8s} "
          f"{'val micro F1':>12s} {'val macro F1':>12s}")
    results = {}
    for rule, thresholds in rules.items():
        test = scores_at(test_full, test_probabilities, names, thresholds)
        val = scores_at(validation_full, validation_probabilities, names, thresholds)
        results[rule] = {"thresholds": [float(t) for t in thresholds], "test": test, "validation": val}
        print(f"{rule:40s} {test['micro_f1']:13.3f} {test['macro_f1']:9.3f} {test['micro_precision']:8.3f} "
              f"{test['micro_recall']:8.3f} {val['micro_f1']:12.3f} {val['macro_f1']:12.3f}")
    print(json.dumps(results))
    if write_model:
        shipped = load_model(os.path.join(run_dir, "model.keras"))
        chosen = choose_thresholds(validation_probabilities, observed_labels=validation_observed)
        shipped.set_thresholds(chosen.thresholds)
        shipped.save(write_model)
        print(f"wrote {write_model} with thresholds {[round(float(t), 4) for t in chosen.thresholds]} "
              f"({', '.join(sorted(set(chosen.rules)))})")


if __name__ == "__main__":
    main()
