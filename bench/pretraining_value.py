"""What pretraining the embedder costs next to the training it saves, from finished runs.

    python bench/pretraining_value.py runs/beyond_paper \
        --pretrained contrastive runs/beyond_pretrained 208 --pretrained masked runs/beyond_pretrained_masked 49

The first folder holds the runs from scratch, each `--pretrained NAME FOLDER
SECONDS` the runs trained from a pretrained embedder and the seconds that
pretraining took (a chained run, `pretrain_steps` > 0, records them in its
`report.json`; pass 0 to read them there). Folders are `bench/beyond_paper.py`
or `bench/compare_methods.py` output: one `NAME-seedN/` per run.

Runs are paired by name and seed. For each pair, the target is the validation
mAP of the run from scratch after its last epoch; the pretrained run "reaches"
it at the first epoch whose validation mAP is at least that (`history.json`
has one value per epoch, so the steps needed are counted in whole epochs: an
upper bound). The steps saved are the run from scratch's steps less those,
and their seconds are the run from scratch's own seconds per training step
(`train_seconds` / steps). The last column sets the pretraining's seconds
against them: below 1, pretraining costs less than the training it saves.
"""

import json
import os

import click
import numpy as np


def _runs(folder):
    """`{(name without seed, seed): (report, history)}` of the completed runs in `folder`."""
    found = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not os.path.exists(os.path.join(path, "report.json")) or "-seed" not in name:
            continue
        with open(os.path.join(path, "report.json")) as handle:
            report = json.load(handle)
        if report.get("status", "completed") != "completed":
            continue
        with open(os.path.join(path, "history.json")) as handle:
            history = json.load(handle)["history"]
        method, seed = name.rsplit("-seed", 1)
        found[(method, int(seed))] = (report, history)
    return found


def _steps_per_epoch(report):
    return report["budget"]["steps_per_epoch"]


def _trained_steps(report, history):
    return len(history["val_map"]) * _steps_per_epoch(report)


def steps_to_reach(target, report, history):
    """Training steps (whole epochs) until the run's validation mAP is at least `target`; None if never."""
    for epoch, value in enumerate(history["val_map"], start=1):
        if value >= target:
            return epoch * _steps_per_epoch(report)
    return None


def _pretraining_seconds(given, report):
    if given:
        return given
    return (report.get("pretraining") or {}).get("seconds")


@click.command()
@click.argument("scratch_folder")
@click.option("--pretrained", "pretrained", multiple=True, required=True, nargs=3,
              metavar="NAME FOLDER SECONDS", help="Runs from a pretrained embedder and the pretraining's seconds.")
def main(scratch_folder, pretrained):
    scratch = _runs(scratch_folder)
    click.echo("| pretraining | seed | target val mAP (scratch, last epoch) | steps to reach it (of scratch's) | "
               "steps saved | s / step (scratch) | training s saved | pretraining s | pretraining / saved |")
    click.echo("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, folder, seconds in pretrained:
        rows = []
        for key, (report, history) in sorted(_runs(folder).items()):
            if key not in scratch:
                continue
            scratch_report, scratch_history = scratch[key]
            target = scratch_history["val_map"][-1]
            total = _trained_steps(scratch_report, scratch_history)
            per_step = scratch_report["train_seconds"] / total
            needed = steps_to_reach(target, report, history)
            cost = _pretraining_seconds(float(seconds), report)
            saved = None if needed is None else total - needed
            rows.append((saved, saved is not None and saved * per_step, cost))
            click.echo(
                f"| {name} | {key[1]} | {100 * target:.1f} | "
                + (f"{needed} of {total}" if needed is not None else f"not reached in {_trained_steps(report, history)}")
                + f" | {'-' if saved is None else saved} | {per_step:.2f} | "
                + ("-" if saved is None else f"{saved * per_step:.0f}") + f" | {cost:.0f} | "
                + ("-" if not saved else f"{cost / (saved * per_step):.2f}") + " |"
            )
        reached = [row for row in rows if row[0] is not None]
        if reached:
            steps, seconds_saved, costs = (np.array(column, dtype=float) for column in zip(*reached))
            click.echo(
                f"| {name}, mean of {len(reached)} of {len(rows)} | | | | {steps.mean():.0f} | | "
                f"{seconds_saved.mean():.0f} | {costs.mean():.0f} | {costs.mean() / seconds_saved.mean():.2f} |"
            )


if __name__ == "__main__":
    main()
