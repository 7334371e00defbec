"""How well the validation split picks the epoch: per-epoch validation and test mAP of one run.

    nice python bench/validation_choice.py --out runs/validation_choice [--set epochs=10]
    nice python bench/validation_choice.py --out runs/validation_choice_half \
        --set image_size=56 --set item_size=14 --set patch_size=14 --set stride=14

Trains a recipe (the demo by default) with `train`, and after every epoch also
scores the validation split against its observed labels (what own data would
give) and the test split against its full labels, which the run itself only
scores once, at the end. Writes `validation_choice.json` with the three curves,
the epoch each validation choice keeps and the test mAP of that epoch against
the last and the best epoch's.
"""

import json
import os
import sys

import click
import keras
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import recipes  # noqa: E402


def _map(labels, scores):
    from patchpu_keras.metrics import per_class_average_precision

    return float(np.nanmean(per_class_average_precision(labels, scores)))


class EpochScores(keras.callbacks.Callback):
    """Validation mAP on observed labels and test mAP, every epoch (a measurement, not a protocol)."""

    def __init__(self, val, test, batch_size):
        super().__init__()
        self.val, self.test, self.batch_size = val, test, batch_size
        self.val_map_observed, self.test_map = [], []

    def on_epoch_end(self, epoch, logs=None):
        from patchpu_keras.inference import predict_labelled

        val = predict_labelled(self.model, self.val, self.batch_size)
        self.val_map_observed.append(_map((val["observed_labels"] > 0).astype("float32"), val["probabilities"]))
        test = predict_labelled(self.model, self.test, self.batch_size)
        self.test_map.append(_map(test["full_labels"], test["probabilities"]))
        print(f"epoch {epoch + 1}: val_map (full labels) {logs.get('val_map', float('nan')):.4f}, "
              f"val mAP (observed labels) {self.val_map_observed[-1]:.4f}, test mAP {self.test_map[-1]:.4f}",
              flush=True)


def _kept(values):
    return int(np.argmax(values)) + 1  # ties: the earlier epoch, as BestEpoch keeps


@click.command()
@click.option("--recipe", default="demo", show_default=True)
@click.option("--out", required=True)
@click.option("--set", "assignments", multiple=True)
def main(recipe, out, assignments):
    from patchpu_keras.training import plan_run, run_plan

    config = recipes.apply_overrides(recipes.load(recipe), assignments)
    plan = plan_run(config, out, force=True)
    scores = EpochScores(plan.data.val, plan.data.test, config["batch_size"])
    report = run_plan(plan, verbose=2, callbacks=[scores])
    val_full = report["history"]["val_map"]
    result = {
        "recipe": recipe, "assignments": list(assignments), "validated_on": report["validated_on"],
        "val_map_full": val_full, "val_map_observed": scores.val_map_observed, "test_map": scores.test_map,
        "epoch_kept_full": _kept(val_full), "epoch_kept_observed": _kept(scores.val_map_observed),
        "test_map_kept_full": scores.test_map[_kept(val_full) - 1],
        "test_map_kept_observed": scores.test_map[_kept(scores.val_map_observed) - 1],
        "test_map_last": scores.test_map[-1], "test_map_best": max(scores.test_map),
        "reported_map": report["map"],
        "spearman_val_observed_test": float(_spearman(scores.val_map_observed, scores.test_map)),
    }
    with open(os.path.join(out, "validation_choice.json"), "w") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps(result, indent=2))


def _spearman(a, b):
    ranks = [np.argsort(np.argsort(values)) for values in (a, b)]
    return np.corrcoef(*ranks)[0, 1]


if __name__ == "__main__":
    main()
