"""Why the patch model's attention stays diffuse: variants of eq. (1) trained on the demo recipe.

    python bench/attention_study.py train paper --seed 0
    python bench/attention_study.py train learned_temperature --seed 0
    python bench/attention_study.py train paper --seed 0 --set loss=full_bce --set regime=full
    python bench/attention_study.py table runs/attention_study/*

`train VARIANT` trains the demo recipe (`recipes/demo.py`, 750 steps) with the
attention arguments of `VARIANTS[VARIANT]` given to `PatchPUClassifier`, into
`runs/attention_study/VARIANT-seedS`, then measures it (`evaluate`). `evaluate
RUN_DIR` measures a finished run of the built-in mosaics, whatever its model
arguments: on its first `--images` training mosaics (their boxes and the drawn
single positives known) and as many test mosaics:

- pointing: share of (image, present label) pairs whose most-attended level-0
  patch overlaps one of that label's items, and the chance level (a uniformly
  drawn level-0 patch);
- attention entropy over all patches / log(num patches), present and absent labels;
- WN AUC: how well eq. (7)-(8)'s weight ranks hidden positives below true
  negatives among the unknown entries (1 is perfect, 0.5 is chance), and the
  same AUC for the model's probability;
- the scale of eq. (1): codebook row norm, patch embedding norm, the scores'
  standard deviation over patches (after any scale and temperature), the
  learned temperature.

Writes `attention_study.json` into the run directory. `table` prints one row per
run. `diagnose RUN_DIR` prints where the attention goes level by level and how
well other similarities than eq. (7)'s would separate. Results and their reading: docs/attention.md.
"""

import glob
import json
import os
import sys

import click
import keras
import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import recipes  # noqa: E402
from patchpu_keras import training  # noqa: E402
from patchpu_keras.data.mosaics import recipe_mosaics  # noqa: E402
from patchpu_keras.data.regimes import observe  # noqa: E402
from patchpu_keras.losses import weak_negative_targets  # noqa: E402
from patchpu_keras.metrics import (  # noqa: E402
    attention_entropy,
    attention_peak_boxes,
    normalized_attention_entropy,
    pointing_chance,
    pointing_score,
)
from patchpu_keras.models import PatchPUClassifier, load_model  # noqa: E402

# PatchPUClassifier's attention arguments of each variant. "paper" is eq. (1)
# as written (the arguments' values before the study).
VARIANTS = {
    "paper": dict(attention_score_scale=1.0, attention_learn_temperature=False, codebook_init_mode="fan_out"),
    "scaled_dot_product": dict(
        attention_score_scale=1 / 16, attention_learn_temperature=False, codebook_init_mode="fan_out"
    ),  # 1 / sqrt(F), F = 256
    "learned_temperature": dict(
        attention_score_scale=1.0, attention_learn_temperature=True, codebook_init_mode="fan_out"
    ),
    "fan_in_codebooks": dict(
        attention_score_scale=1.0, attention_learn_temperature=False, codebook_init_mode="fan_in"
    ),
    "fan_in_learned_temperature": dict(
        attention_score_scale=1.0, attention_learn_temperature=True, codebook_init_mode="fan_in"
    ),
}
OUT_ROOT = os.path.join("runs", "attention_study")


@click.group()
def main():
    pass


@main.command()
@click.argument("variant", type=click.Choice(sorted(VARIANTS)))
@click.option("--seed", default=0, show_default=True, help="The recipe's `seed` (model and shuffling).")
@click.option("--out", default=None, help="Run directory [default: runs/attention_study/VARIANT-seedS].")
@click.option("--images", default=400, show_default=True, help="Mosaics measured per split.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Override a demo recipe key, e.g. --set loss=full_bce --set regime=full.")
def train(variant, seed, out, images, assignments):
    """Train the demo recipe with VARIANT's attention, then measure it."""
    config = recipes.apply_overrides(recipes.load("demo"), list(assignments))
    config["seed"] = seed
    suffix = "".join(f"-{a.split('=')[1]}" for a in assignments if a.startswith("loss="))
    out = out or os.path.join(OUT_ROOT, f"{variant}{suffix}-seed{seed}")
    build_model = training.build_model

    def build_variant(config, num_labels, label_names=None):
        model = build_model(config, num_labels, label_names=label_names)
        return PatchPUClassifier.from_config({**model.get_config(), **VARIANTS[variant]})

    # `train` builds its model through the module's `build_model`.
    training.build_model = build_variant
    try:
        training.train(config, out, verbose=2)
    finally:
        training.build_model = build_model
    _evaluate(out, images, variant)


@main.command()
@click.argument("run_dir")
@click.option("--images", default=400, show_default=True, help="Mosaics measured per split.")
def evaluate(run_dir, images):
    """Measure a finished run of the built-in mosaics."""
    _evaluate(run_dir, images, None)


@main.command()
@click.argument("run_dirs", nargs=-1)
def table(run_dirs):
    """One markdown row per measured run."""
    columns = (
        "test_map", "train_pointing", "test_pointing", "pointing_chance", "entropy_present",
        "entropy_absent", "wn_auc", "probability_auc", "codebook_norm", "patch_norm",
        "score_std", "temperature",
    )
    click.echo("| run | " + " | ".join(columns) + " |")
    click.echo("|---" * (len(columns) + 1) + "|")
    for run_dir in sorted(d for pattern in run_dirs for d in glob.glob(pattern)):
        path = os.path.join(run_dir, "attention_study.json")
        if not os.path.exists(path):
            continue
        result = json.load(open(path))
        cells = [
            "-" if result.get(c) is None else f"{result[c]:.3f}" for c in columns
        ]
        click.echo(f"| {os.path.basename(run_dir)} | " + " | ".join(cells) + " |")


@main.command()
@click.argument("run_dir")
@click.option("--images", default=400, show_default=True, help="Training mosaics measured.")
def diagnose(run_dir, images):
    """Where a run's attention goes, level by level, and which similarities separate.

    Prints the attention mass of each level, pointing at each level, the
    normalised entropy of an ideal attention (uniform over the patches, of every
    level, that overlap the label's items), the share of a present label's
    level-0 attention on its own patches, and the AUC (hidden positives vs true
    negatives) of eq. (7)'s cosine computed on other representations.
    """
    config = json.load(open(os.path.join(run_dir, "report.json")))["config"]
    data = recipe_mosaics(config, num_test=1)["train"]
    observed = _single_positives(run_dir, config, data)[:images]
    full = data["full_labels"][:images]
    model = load_model(os.path.join(run_dir, "model.keras"))
    x = data["images"][:images, ..., None]
    outputs = model.predict(x, batch_size=16, verbose=0)
    attention = np.asarray(outputs["attention"])
    embeddings = np.asarray(outputs["label_embeddings"])
    boxes, levels = model.backbone.patches.patch_boxes(model.image_size, model.image_size)
    objects = (data["boxes"][:images], data["item_classes"][:images])
    for level in sorted(set(levels.tolist())):
        mass = attention[..., levels == level].sum(-1)
        pointing = pointing_score(attention_peak_boxes(attention, boxes, levels, level), *objects, full)
        click.echo(
            f"level {level} ({(levels == level).sum()} patches): attention mass {mass[full > 0].mean():.3f} "
            f"(present) {mass[full == 0].mean():.3f} (absent), pointing {pointing:.3f}"
        )
    ideal, own_share = [], []
    for image in range(images):
        for label in np.flatnonzero(full[image]):
            own = objects[0][image][objects[1][image] == label]
            on = np.array([
                any(min(b[2], o[2]) > max(b[0], o[0]) and min(b[3], o[3]) > max(b[1], o[1]) for o in own)
                for b in boxes
            ])
            ideal.append(normalized_attention_entropy(on / on.sum()))
            level0 = attention[image, label, levels == 0]
            own_share.append(level0[on[levels == 0]].sum() / level0.sum())
    click.echo(f"entropy of the ideal attention (uniform on the label's patches): {np.mean(ideal):.3f}")
    click.echo(f"share of a present label's level-0 attention on its own patches: {np.mean(own_share):.3f}")
    patch_embeddings = np.concatenate([
        keras.ops.convert_to_numpy(
            model.backbone(x[i:i + 50], training=False)
        )
        for i in range(0, images, 50)
    ])
    pooled = np.einsum("bln,bnf->blf", attention, patch_embeddings)
    positive = observed.argmax(-1)
    rows = np.arange(images)
    hidden = (observed == 0) & (full == 1)
    negative = (observed == 0) & (full == 0)

    def separation(similarity):
        truth = np.r_[np.ones(hidden.sum()), np.zeros(negative.sum())]
        return roc_auc_score(truth, -np.r_[similarity[hidden], similarity[negative]])

    def cosine_to_positive(vectors):
        vectors = vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)
        return np.einsum("blf,bf->bl", vectors, vectors[rows, positive])

    overlap = np.minimum(attention, attention[rows, positive][:, None, :]).sum(-1)
    for name, similarity in (
        ("cosine of label embeddings (eq. 7)", cosine_to_positive(embeddings)),
        ("cosine of pooled A E_patch (before the MLP)", cosine_to_positive(pooled)),
        ("cosine of label embeddings minus their mean", cosine_to_positive(embeddings - embeddings.mean((0, 1)))),
        ("attention overlap sum_i min(a_l, a_k)", overlap),
    ):
        click.echo(f"WN-style AUC, {name}: {separation(similarity):.3f}")


def _single_positives(run_dir, config, data):
    if config["regime"] == "single_positive":
        return np.load(os.path.join(run_dir, "observed_labels.npz"))["observed_labels"]
    # A run trained on more labels (e.g. the full-label bound) is scored on the
    # demo's single-positive draw, to compare WN's weights across runs.
    return observe(data["full_labels"], "single_positive", seed=config["label_seed"])


def _evaluate(run_dir, images, variant):
    report = json.load(open(os.path.join(run_dir, "report.json")))
    config = report["config"]
    if config.get("data_dir") is not None or config["dataset"] != "fashion_mnist_mosaics":
        raise click.ClickException(f"Expected a run of the built-in mosaics. Received: {run_dir}")
    mosaics = recipe_mosaics(config, num_test=images)
    observed = _single_positives(run_dir, config, mosaics["train"])[:images]
    model = load_model(os.path.join(run_dir, "model.keras"))
    boxes, levels = model.backbone.patches.patch_boxes(model.image_size, model.image_size)
    result = {
        "run": run_dir, "variant": variant, "loss": config["loss"], "images": images,
        "test_map": report.get("map"),
    }
    for split in ("train", "test"):
        data = mosaics[split]
        full = data["full_labels"][:images]
        outputs = model.predict(data["images"][:images, ..., None], batch_size=16, verbose=0)
        attention = np.asarray(outputs["attention"])
        peaks = attention_peak_boxes(attention, boxes, levels, level=0)
        objects = (data["boxes"][:images], data["item_classes"][:images])
        result[f"{split}_pointing"] = pointing_score(peaks, *objects, full)
        if split == "train":
            result["pointing_chance"] = pointing_chance(boxes[levels == 0], *objects, full)
            entropy = attention_entropy(attention, full)
            result["entropy_present"], result["entropy_absent"] = entropy["present"], entropy["absent"]
            weights = keras.ops.convert_to_numpy(
                weak_negative_targets(observed, outputs["label_embeddings"])
            )
            probabilities = np.asarray(outputs["probabilities"])
            hidden = (observed == 0) & (full == 1)
            negative = (observed == 0) & (full == 0)
            truth = np.r_[np.ones(hidden.sum()), np.zeros(negative.sum())]
            # WN separates when a hidden positive's weight is lower than a true negative's.
            result["wn_auc"] = float(roc_auc_score(truth, -np.r_[weights[hidden], weights[negative]]))
            result["wn_weight_hidden_positive"] = float(weights[hidden].mean())
            result["wn_weight_true_negative"] = float(weights[negative].mean())
            result["probability_auc"] = float(
                roc_auc_score(truth, np.r_[probabilities[hidden], probabilities[negative]])
            )
            result.update(_score_scale(model, data["images"][:64, ..., None]))
    with open(os.path.join(run_dir, "attention_study.json"), "w") as f:
        json.dump(result, f, indent=2)
    click.echo(json.dumps(result, indent=2))


def _score_scale(model, images):
    """Codebook and patch embedding norms and the spread of eq. (1)'s scores."""
    layer = model.attention
    embeddings = keras.ops.convert_to_numpy(model.backbone(images, training=False))
    codebooks = keras.ops.convert_to_numpy(layer.label_codebooks)
    temperature = (
        float(keras.ops.convert_to_numpy(layer.temperature)) if layer.temperature is not None else None
    )
    scores = np.einsum("lf,bnf->bln", codebooks, embeddings) * layer.score_scale * (temperature or 1.0)
    return {
        "codebook_norm": float(np.linalg.norm(codebooks, axis=-1).mean()),
        "patch_norm": float(np.linalg.norm(embeddings, axis=-1).mean()),
        "score_std": float(scores.std(axis=-1).mean()),
        "temperature": temperature,
    }


if __name__ == "__main__":
    main()
