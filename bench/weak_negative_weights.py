"""How well the weak negative weights of a trained run tell hidden positives from true negatives.

    python bench/weak_negative_weights.py runs/compare_methods/patch-weak_negative-seed0 [--images 400]

For a finished run of the built-in mosaics (`cli.py train --recipe demo ...`),
rebuilds its training mosaics from the run's `report.json`, reads the drawn
single positives from `observed_labels.npz`, and computes eq. (7)-(8)'s weights
(`patchpu_keras.losses.weak_negative_targets`) from the trained model's label
embeddings on the first `--images` training mosaics. Prints the mean weight of
the unknown entries that are true negatives and of those that are hidden
positives (the full labels know which), and the mean probability of each: a
weight that is much lower on hidden positives is what WN needs to beat AN.
"""

import json
import os
import sys

import click
import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from patchpu_keras.data.mosaics import recipe_mosaics  # noqa: E402
from patchpu_keras.losses import weak_negative_targets  # noqa: E402
from patchpu_keras.models import load_model  # noqa: E402


@click.command()
@click.argument("run_dir")
@click.option("--images", default=400, show_default=True, help="Training mosaics to score.")
def main(run_dir, images):
    config = json.load(open(os.path.join(run_dir, "report.json")))["config"]
    if config.get("data_dir") is not None or config["dataset"] != "fashion_mnist_mosaics":
        raise click.ClickException(f"Expected a run of the built-in mosaics. Received: {run_dir}")
    mosaics = recipe_mosaics(config, num_test=1)
    observed = np.load(os.path.join(run_dir, "observed_labels.npz"))["observed_labels"][:images]
    full = mosaics["train"]["full_labels"][:images]
    model = load_model(os.path.join(run_dir, "model.keras"))
    outputs = model.predict(mosaics["train"]["images"][:images, ..., None], batch_size=16, verbose=0)
    weights = keras.ops.convert_to_numpy(weak_negative_targets(observed, outputs["label_embeddings"]))
    probabilities = np.asarray(outputs["probabilities"])
    true_negative = (observed == 0) & (full == 0)
    hidden_positive = (observed == 0) & (full == 1)
    click.echo(
        f"{run_dir}: {images} training mosaics; mean weight {weights[true_negative].mean():.3f} on "
        f"{true_negative.sum()} true negatives, {weights[hidden_positive].mean():.3f} on "
        f"{hidden_positive.sum()} hidden positives; mean probability "
        f"{probabilities[true_negative].mean():.3f} and {probabilities[hidden_positive].mean():.3f}"
    )


if __name__ == "__main__":
    main()
