"""Command line of patchpu-keras: `patchpu --help` (or `python cli.py --help` in a checkout)."""

import json
import os
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import click  # noqa: E402

from patchpu_keras.data.sources import SOURCE_CHOICES  # noqa: E402
from patchpu_keras.recipe_book import recipes  # noqa: E402


@click.group()
def cli():
    """Multi-label image classification from single positive labels."""


@cli.command("recipes")
def list_recipes():
    """List the recipes, one line each, and the losses `--set loss=NAME` accepts."""
    from patchpu_keras.losses.registry import LOSSES

    for name in recipes.names():
        click.echo(f"{name:24s} {recipes.summary(name)}")
    click.echo("\nLosses (--set loss=NAME):")
    for name, entry in sorted(LOSSES.items()):
        click.echo(f"{name:34s} {entry.summary}")


data_dir_option = click.option(
    "--data-dir", default=None, help="Dataset folder (VOCdevkit, COCO, TFDS data dir, label folders, manifest)."
)
source_option = click.option(
    "--source", type=click.Choice(SOURCE_CHOICES), default=None, help="Kind of data [default: detected from --data-dir]."
)
set_option = click.option(
    "--set", "assignments", multiple=True, metavar="KEY=VALUE",
    help="Override a recipe key, e.g. --set loss=assume_negative. Repeatable.",
)


def _config(recipe, assignments, data_dir=None, source=None):
    """The recipe with `--set`, `--data-dir` and `--source` applied, checked before any data is read.

    A bad recipe name or setting is one `Error: ...` line (`training.settings.check_settings`).
    """
    from patchpu_keras.training.settings import check_settings

    try:
        config = recipes.apply_overrides(recipes.load(recipe), assignments)
        if data_dir is not None:
            config["data_dir"] = data_dir
        if source is not None:
            config["source"] = source
        return check_settings(config)
    except ValueError as error:
        raise click.ClickException(str(error)) from None


@cli.command()
@click.option("--recipe", required=True, help="Recipe name (see `python cli.py recipes`).")
@data_dir_option
@source_option
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override the recipe's epochs.")
@click.option("--out", default=None, help="Run directory [default: runs/RECIPE-TIME].")
@click.option("--resume", is_flag=True,
              help="Continue the interrupted run in --out from its last checkpoint (same recipe and --set "
                   "options; --epochs may grow).")
@click.option("--force", is_flag=True,
              help="Replace the finished or interrupted run in --out (its files and eval-*/ are removed).")
@set_option
def train(recipe, data_dir, source, epochs, out, resume, force, assignments):
    """Train a recipe, evaluate it on its held-out set and write a report.

    Prints the run plan and a time estimate first. With a validation split
    (--set val_fraction=F), OUT/best_model.keras is the epoch with the best
    validation mAP, and the test split is scored with it, once. Checkpoints go
    to OUT/checkpoint/ after every epoch (and every N steps with --set
    checkpoint_every=N); TensorBoard event files to OUT/logs/. A finished run
    in OUT is not replaced without --force.
    """
    config = _config(recipe, assignments, data_dir, source)
    if epochs is not None:
        config["epochs"] = epochs
    if resume and out is None:
        raise click.BadParameter("--resume continues the run in --out: pass --out RUN_DIR.")
    out = out or os.path.join("runs", f"{recipe}-{time.strftime('%Y%m%d-%H%M%S')}")

    from patchpu_keras.reports import format_training_report, printed_warnings
    from patchpu_keras.training import NonFiniteLossError, train as run

    with printed_warnings() as warn:
        try:
            report = run(config, out, resume=resume, force=force, print_fn=click.echo)
        except (ValueError, FileNotFoundError, NonFiniteLossError) as error:
            raise click.ClickException(str(error)) from None
        click.echo(format_training_report(report, out))
        for message in report["warnings"]:
            warn(message)
        if warn.summary():
            click.echo(warn.summary(), err=True)


@cli.group()
def data():
    """Inspect datasets."""


@data.command()
@click.option("--recipe", required=True, help="Recipe whose data settings apply (regime, seeds, source).")
@data_dir_option
@source_option
@set_option
@click.option("--max-files", type=int, default=20, show_default=True,
              help="Files listed per skip reason.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def summary(recipe, data_dir, source, assignments, max_files, as_json):
    """Images per split, labels per image and per class, observed labels per regime, skipped files."""
    config = _config(recipe, assignments, data_dir, source)

    from patchpu_keras.data.sources import load_recipe_index
    from patchpu_keras.data.summary import format_summary, summarize

    try:
        with warnings.catch_warnings():
            # Every skipped file is listed below, with its reason.
            warnings.simplefilter("ignore")
            index = load_recipe_index(config, warn=False)
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from None
    result = summarize(index, label_seed=config["label_seed"], partial_fraction=config["partial_fraction"])
    click.echo(json.dumps(result, indent=2) if as_json else format_summary(result, max_files=max_files))


def _load(model_path):
    """The saved model in its inference form (`MultiLabelModel.for_inference`: batch norms folded)."""
    from patchpu_keras.models import load_model

    try:
        return load_model(model_path).for_inference()
    except ValueError as error:
        raise click.ClickException(str(error)) from None


def _report_skipped(record):
    click.echo(f"skipped {record['path']}: {record['error']}", err=True)


def _finish(done, skipped, verb):
    click.echo(f"{verb} {done} image(s), skipped {skipped} unreadable", err=True)
    if done == 0 and skipped == 0:
        from patchpu_keras.data.image_reader import IMAGE_EXTENSIONS

        raise click.ClickException(
            "no image file among the inputs: folders are searched (with their subfolders) for files "
            f"ending in {', '.join(sorted(IMAGE_EXTENSIONS))}"
        )
    if done == 0:
        raise click.ClickException("no readable image among the inputs")


MODEL_OPTION = click.option(
    "--model", "model_path", required=True, type=click.Path(exists=True, dir_okay=False),
    help="A .keras file written by `train` (RUN/model.keras).",
)


@cli.command()
@MODEL_OPTION
@click.option("--recipe", default=None,
              help="The recipe whose data the model is evaluated on [default: the run's, from its report.json].")
@data_dir_option
@source_option
@click.option("--split", type=click.Choice(["test", "val", "validation"]), default="test", show_default=True,
              help="The held-out split (VOC's val, COCO's val2014, a test/ folder, or the "
                   "held-out part of the training images); val and test both name it. validation: the "
                   "run's validation split (val_fraction of the training images).")
@set_option
@click.option("--out", default=None, help="Report folder [default: MODEL_DIR/eval-SPLIT].")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--localization", is_flag=True,
              help="Also score where the model looks: pointing (mosaics, VOC, COCO: the data's object "
                   "boxes) and attention entropy.")
def evaluate(model_path, recipe, data_dir, source, split, assignments, out, batch_size, localization):
    """mAP, per-class AP and P/R/F1 of a saved model on a recipe's data.

    Writes metrics.json, per_class.csv and pr_curves.png (best and worst classes).
    A model of a run (RUN/model.keras, RUN/best_model.keras) is evaluated on the
    run's data with its settings, read from RUN/report.json; --recipe, --set,
    --data-dir and --source change them.
    """
    from patchpu_keras import evaluation
    from patchpu_keras.reports import format_evaluation_report, printed_warnings

    with printed_warnings() as warn:
        config = _evaluation_config(model_path, recipe, assignments, data_dir, source)
        for key, (trained, given) in evaluation.data_differences(model_path, config).items():
            option = (f"add --set {key}={trained!r}" if key != "data_dir" else
                      f"add --data-dir {trained}" if trained is not None else "leave out --data-dir")
            warn(f"the model was trained with {key}={trained!r}, the recipe gives {given!r}; "
                 f"{option} to evaluate on the same data")
        model = _load(model_path)
        try:
            report = evaluation.evaluate(
                model, config, out, split=split, batch_size=batch_size,
                model_path=model_path, recipe=recipe or "the run's (report.json)", localization=localization,
            )
        except (ValueError, FileNotFoundError) as error:
            raise click.ClickException(str(error)) from None
        click.echo(format_evaluation_report(report))
        small = evaluation.small_split_warning(report["num_images"], report["split"])
        if small:
            warn(small)
        if warn.summary():
            click.echo(warn.summary(), err=True)


def _evaluation_config(model_path, recipe, assignments, data_dir, source):
    """The recipe `evaluate` uses: `--recipe`'s, or the run's own from its report.json, then the options."""
    if recipe is not None:
        return _config(recipe, assignments, data_dir, source)
    from patchpu_keras.evaluation import trained_config

    trained = trained_config(model_path)
    if trained is None:
        raise click.BadParameter(
            f"{model_path} has no report.json beside it (a run's): pass --recipe NAME (and the --set "
            "options it was trained with)."
        )
    try:
        config = recipes.apply_overrides(trained, assignments)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    if data_dir is not None:
        config["data_dir"] = data_dir
    if source is not None:
        config["source"] = source
    return config


@cli.command()
@MODEL_OPTION
@click.argument("paths", nargs=-1, required=True)
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="Keep labels scoring at least this, for every label (0 keeps all) "
                   "[default: the model's per-class thresholds].")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
def predict(model_path, paths, threshold, batch_size):
    """The labels of image files or folders, one JSON line per image.

    Each line is {"path": ..., "labels": {name: score}}: the labels the model's
    per-class thresholds select (saved with it; 0.5 where unset), or those
    scoring at least --threshold, by decreasing score. Unreadable files are
    reported on stderr and skipped.
    """
    from patchpu_keras.inference import predict_files

    model = _load(model_path)
    done = skipped = 0
    for record in predict_files(model, paths, threshold=threshold, batch_size=batch_size):
        if "error" in record:
            _report_skipped(record)
            skipped += 1
            continue
        click.echo(json.dumps(record, ensure_ascii=False))
        done += 1
    _finish(done, skipped, "predicted")


@cli.command()
@MODEL_OPTION
@click.argument("paths", nargs=-1, required=True)
@click.option("--out", required=True, help="Folder for the PNGs (one per image).")
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True,
              help="Labels shown, one panel each.")
@click.option("--level", type=click.IntRange(min=0), default=0, show_default=True,
              help="Resolution level drawn (0 is the finest; patch models).")
def explain(model_path, paths, out, top_k, level):
    """Attention maps of image files, one PNG per image, as in the paper's Figure 3.

    Each panel is one of the top-k labels: the image with every patch of the
    chosen level tinted by its attention for that label (for a CAM model: its
    class activation map upsampled over the image), the score underneath.
    Unreadable files are reported on stderr and skipped.
    """
    from patchpu_keras.inference import explain_files

    model = _load(model_path)
    done = skipped = 0
    try:
        for record in explain_files(model, paths, out, top_k=top_k, level=level):
            if "error" in record:
                _report_skipped(record)
                skipped += 1
                continue
            scores = ", ".join(f"{name} {score:.3f}" for name, score in record["labels"].items())
            click.echo(f"{record['figure']}  <- {record['path']}  ({scores})")
            done += 1
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    _finish(done, skipped, "explained")


@cli.command()
@MODEL_OPTION
@click.option("--out", required=True, help="Model folder; the export goes to OUT/VERSION/.")
@click.option("--version", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--format", "export_format", type=click.Choice(["tf_saved_model", "onnx"]),
              default="tf_saved_model", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing OUT/VERSION.")
def export(model_path, out, version, export_format, force):
    """Export for serving: TF SavedModel in TF Serving's layout (OUT/VERSION/), or ONNX.

    The SavedModel's serving_default takes encoded JPEG/PNG bytes (any size) and
    returns probabilities, labels (probabilities >= the model's thresholds) and
    label_names; serve_images takes float images.
    """
    from patchpu_keras.export import export_model

    try:
        written = export_model(model_path, out, version=version, format=export_format, force=force)
    except (ValueError, FileExistsError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"wrote {written}")


@cli.command()
@click.option("--recipe", required=True, help="Recipe whose data and patches apply.")
@click.option("--data-dir", default=None, help="Folder of your images (as `train --data-dir`).")
@click.option("--out", required=True, help="Weights file to write, ending in .weights.h5.")
@click.option("--objective", default=None,
              help="contrastive (views of patches) or masked (patch prediction) [default: contrastive].")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Training steps [default: 1000].")
@click.option("--batch-size", type=click.IntRange(min=2), default=None, help="Patches per step [default: 128].")
@click.option("--seed", type=int, default=None, help="Seed [default: 0].")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Override a recipe key.")
def pretrain(recipe, data_dir, out, objective, steps, batch_size, seed, assignments):
    """Pretrain the patch embedder without labels on the recipe's training images.

    Then train with `--set embedder_weights=OUT` (docs/benchmarks.md measures it).
    """
    from patchpu_keras.pretraining import pretrain_embedder

    config = _config(recipe, assignments, data_dir)
    given = {"objective": objective, "steps": steps, "batch_size": batch_size, "seed": seed}
    try:
        found = pretrain_embedder(config, out, **{key: value for key, value in given.items() if value is not None})
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"Pretrained the patch embedder ({found['objective']}) on {found['num_patches']} patches, "
        f"{found['steps']} steps in "
        f"{found['seconds']:.0f} s (final loss {found['final_loss']:.3f}); weights in {out}. "
        f"Train with --set embedder_weights={out}"
    )


def main():
    """Entry point of the `patchpu` command and of `python cli.py`."""
    cli()


if __name__ == "__main__":
    main()
