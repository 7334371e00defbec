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

It also scores two variants of eq. (7)'s similarity on the same images, from
the attention over patches instead of the label embeddings (what sec. 3.3.1
argues about: a hidden positive's label attends to its own patches, not to the
observed positive's): the overlap of two labels' attention distributions,
`sum_p min(a_l(p), a_k(p))`, and their cosine; an unknown label's weight is,
as in eq. (8), the max over the observed positives. These are measured here
only; the loss computes the paper's similarity.
"""

import json
import os
import sys

import click
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from patchpu_keras.data.mosaics import recipe_mosaics  # noqa: E402
from patchpu_keras.diagnostics import weak_negative_diagnostics  # noqa: E402
from patchpu_keras.metrics.weak_negative_separation import weak_negative_separation  # noqa: E402
from patchpu_keras.models import load_model  # noqa: E402


def attention_similarity_weights(attention, observed, kind):
    """Eq. (8)'s weights with eq. (7)'s similarity taken between attention maps (`kind`: overlap, cosine)."""
    attention = np.asarray(attention, "float64")  # (n, L, P), each row sums to 1
    if kind == "overlap":
        similarity = np.minimum(attention[:, :, None, :], attention[:, None, :, :]).sum(-1)
    else:
        unit = attention / np.linalg.norm(attention, axis=-1, keepdims=True)
        similarity = np.einsum("nlp,nkp->nlk", unit, unit)
    positives = observed > 0
    weights = np.where(positives[:, None, :], similarity, 0.0).max(-1)
    return np.where(observed < 0, 1.0, np.where(positives, 0.0, weights))


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
    found = weak_negative_diagnostics(outputs, observed, full, theta=config["theta"])
    probabilities = np.asarray(outputs["probabilities"])
    unknown = observed == 0
    click.echo(
        f"{run_dir}: {images} training mosaics; mean weight {found['wn_weight_true_negative']:.3f} on "
        f"{(unknown & (full == 0)).sum()} true negatives, {found['wn_weight_hidden_positive']:.3f} on "
        f"{(unknown & (full == 1)).sum()} hidden positives (AUC {found['wn_weight_auc']:.3f}); mean "
        f"probability {probabilities[unknown & (full == 0)].mean():.3f} and "
        f"{probabilities[unknown & (full == 1)].mean():.3f} (AUC {found['probability_auc']:.3f})"
    )
    for kind in ("overlap", "cosine"):
        weights = attention_similarity_weights(outputs["attention"], observed, kind)
        variant = weak_negative_separation(observed, full, weights, probabilities)
        click.echo(
            f"  attention {kind} as the similarity: mean weight {variant['wn_weight_true_negative']:.3f} "
            f"on true negatives, {variant['wn_weight_hidden_positive']:.3f} on hidden positives "
            f"(AUC {variant['wn_weight_auc']:.3f})"
        )


if __name__ == "__main__":
    main()
