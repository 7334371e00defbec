"""Command line of patchpu-keras: `python cli.py --help`."""

import json
import os
import time

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


@cli.command()
@click.option("--recipe", required=True, help="Recipe name (see `python cli.py recipes`).")
@click.option("--epochs", type=int, default=None, help="Override the recipe's epochs.")
@click.option("--out", default=None, help="Run directory [default: runs/RECIPE-TIME].")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key, e.g. --set loss=assume_negative. Repeatable.")
def train(recipe, epochs, out, assignments):
    """Train a recipe, evaluate it on its held-out set and write a report."""
    try:
        config = recipes.apply_overrides(recipes.load(recipe), assignments)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    if epochs is not None:
        config["epochs"] = epochs
    out = out or os.path.join("runs", f"{recipe}-{time.strftime('%Y%m%d-%H%M%S')}")

    from patchpu_keras.training import train as run

    try:
        report = run(config, out)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"\nTest mAP: {report['map']:.4f} on {report['num_test_images']} held-out images")
    for name, ap in report["per_class_ap"].items():
        click.echo(f"  {name:12s} {'n/a' if ap is None else f'{ap:.4f}'}")
    click.echo(f"{report['epochs_completed']} epochs in {report['train_seconds']:.0f} s; wrote {out}/"
               "{model.keras,report.json,heatmaps/}")
    click.echo(json.dumps({"map": report["map"], "out": out}))


if __name__ == "__main__":
    cli()
