"""Command line of patchpu-keras: `python cli.py --help`."""

import contextlib
import json
import os
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import click  # noqa: E402

import recipes  # noqa: E402


@click.group()
def cli():
    """Multi-label image classification from single positive labels."""


@cli.command("recipes")
def list_recipes():
    """List the recipes, one line each."""
    for name in recipes.names():
        click.echo(f"{name:24s} {recipes.summary(name)}")


SOURCES = ("auto", "voc", "coco", "tfds", "folders", "manifest")
data_dir_option = click.option(
    "--data-dir", default=None, help="Dataset folder (VOCdevkit, COCO, TFDS data dir, label folders, manifest)."
)
source_option = click.option(
    "--source", type=click.Choice(SOURCES), default=None, help="Kind of data [default: detected from --data-dir]."
)
set_option = click.option(
    "--set", "assignments", multiple=True, metavar="KEY=VALUE",
    help="Override a recipe key, e.g. --set loss=assume_negative. Repeatable.",
)


@contextlib.contextmanager
def _plain_warnings():
    """Warnings (e.g. each skipped image file) as one `Warning: ...` line, without source lines."""
    original = warnings.formatwarning
    warnings.formatwarning = lambda message, category, filename, lineno, line=None: f"Warning: {message}\n"
    try:
        yield
    finally:
        warnings.formatwarning = original


def _config(recipe, assignments, data_dir=None, source=None):
    try:
        config = recipes.apply_overrides(recipes.load(recipe), assignments)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    if data_dir is not None:
        config["data_dir"] = data_dir
    if source is not None:
        config["source"] = source
    return config


@cli.command()
@click.option("--recipe", required=True, help="Recipe name (see `python cli.py recipes`).")
@data_dir_option
@source_option
@click.option("--epochs", type=int, default=None, help="Override the recipe's epochs.")
@click.option("--out", default=None, help="Run directory [default: runs/RECIPE-TIME].")
@set_option
def train(recipe, data_dir, source, epochs, out, assignments):
    """Train a recipe, evaluate it on its held-out set and write a report."""
    config = _config(recipe, assignments, data_dir, source)
    if epochs is not None:
        config["epochs"] = epochs
    out = out or os.path.join("runs", f"{recipe}-{time.strftime('%Y%m%d-%H%M%S')}")

    from patchpu_keras.training import train as run

    try:
        with _plain_warnings():
            report = run(config, out)
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from None
    labels = "full labels" if report["evaluated_on"] == "full_labels" else (
        "observed labels (held out of the training data: an estimate)")
    click.echo(f"\nTest mAP: {report['map']:.4f} on {report['num_test_images']} held-out images, "
               f"against their {labels}")
    for name, ap in report["per_class_ap"].items():
        click.echo(f"  {name:12s} {'n/a' if ap is None else f'{ap:.4f}'}")
    for action, by_reason in report.get("files_skipped", {}).items():
        click.echo(f"Files {action}: " + ", ".join(f"{count} {reason}" for reason, count in by_reason.items())
                   + " (`python cli.py data summary` lists them)")
    click.echo(f"{report['epochs_completed']} epochs in {report['train_seconds']:.0f} s; wrote {out}/"
               "{model.keras,report.json,heatmaps/}")
    click.echo(json.dumps({"map": report["map"], "out": out}))


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

    from patchpu_keras.data.sources import load_index
    from patchpu_keras.data.summary import format_summary, summarize

    try:
        with warnings.catch_warnings():
            # Every skipped file is listed below, with its reason.
            warnings.simplefilter("ignore")
            index = load_index(
                config.get("data_dir"),
                source=config.get("source", "auto"),
                dataset=config.get("dataset"),
                holdout_fraction=config.get("holdout_fraction", 0.1),
                holdout_seed=config.get("holdout_seed", 0),
                warn=False,
            )
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from None
    result = summarize(index, label_seed=config["label_seed"], partial_fraction=config.get("partial_fraction", 0.1))
    click.echo(json.dumps(result, indent=2) if as_json else format_summary(result, max_files=max_files))


if __name__ == "__main__":
    cli()
