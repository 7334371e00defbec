"""Test mAP against training steps for `custom_wn`'s schedule, on mosaic datasets of several sizes.

    python bench/schedule_study.py --out runs/schedule
    python bench/schedule_study.py --out runs/schedule --only n500-paper,n500-min3000 --table-only

`custom_wn` keeps the paper's schedule in epochs (25 epochs, LAMB lr 1e-3 halved
every 5). A dataset of a few hundred images then gets a few hundred steps. This
study trains the weak negative loss (seed 0) on the half-scale mosaics of
`bench/compare_methods.py` (56 px, items 14 px, 14 px patches) built with 500,
2,000 and 8,000 training images, under the paper's schedule and under the
candidate defaults: a step floor (`min_steps`, the learning-rate decay
following the steps) and the demo's larger learning rate. Each setting is one
`compare_methods.py --benchmark half_scale --only patch --losses weak_negative`
run in `OUT/SETTING` (finished runs are skipped, so the study resumes), with
the held-out mAP logged every epoch. The table gives the mAP at the end of the
epoch nearest each step count, and at the end of the run.

Measured results and the choice they support: docs/recipes.md.
"""

import json
import os
import subprocess
import sys

import click

HERE = os.path.dirname(os.path.abspath(__file__))
# The paper's schedule, as `custom_wn` has it; per-epoch diagnostics off (speed).
PAPER = {"epochs": 25, "lr_decay_epochs": 5, "learning_rate": 1e-3, "diagnostics_images": 0}
SETTINGS = {
    "n500-paper": {**PAPER, "num_train": 500},
    "n500-min3000": {**PAPER, "num_train": 500, "min_steps": 3000},
    "n2000-paper": {**PAPER, "num_train": 2000},
    "n500-lr5e-3": {**PAPER, "num_train": 500, "learning_rate": 5e-3},
    "n500-min3000-lr5e-3": {**PAPER, "num_train": 500, "learning_rate": 5e-3, "min_steps": 3000},
    "n2000-lr5e-3": {**PAPER, "num_train": 2000, "learning_rate": 5e-3},
    "n8000-paper": {**PAPER, "num_train": 8000},
    "n8000-lr5e-3": {**PAPER, "num_train": 8000, "learning_rate": 5e-3},
}
STEPS = (400, 800, 1600, 3000, 6000, 12000)


def run_setting(out, name, jobs):
    command = [sys.executable, os.path.join(HERE, "compare_methods.py"), "--benchmark", "half_scale",
               "--only", "patch", "--losses", "weak_negative", "--seeds", "0", "--jobs", str(jobs),
               "--out", os.path.join(out, name)]
    for key, value in SETTINGS[name].items():
        command += ["--set", f"{key}={value}"]
    print(f"=== {name}: {' '.join(command)}", flush=True)
    return subprocess.run(command).returncode


def trajectory(out, name):
    """`(steps, mAP)` after each epoch of a finished or interrupted run, or None."""
    path = os.path.join(out, name, "patch-weak_negative-seed0", "report.json")
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        report = json.load(handle)
    per_epoch = report["budget"]["steps_per_epoch"]
    maps = report["history"]["val_map"]
    return [((epoch + 1) * per_epoch, value) for epoch, value in enumerate(maps)], report["status"]


def table(out, names):
    header = "| setting | steps | " + " | ".join(f"{steps:,}" for steps in STEPS) + " | final |"
    lines = [header, "|" + "---|" * (len(STEPS) + 3)]
    for name in names:
        found = trajectory(out, name)
        if found is None:
            continue
        points, status = found
        cells = []
        for steps in STEPS:
            if steps > points[-1][0] * 1.05:
                cells.append("")
                continue
            nearest = min(points, key=lambda point: abs(point[0] - steps))
            cells.append(f"{100 * nearest[1]:.1f}")
        final = f"{100 * points[-1][1]:.1f}" + ("" if status == "completed" else f" ({status})")
        lines.append(f"| {name} | {points[-1][0]:,} | " + " | ".join(cells) + f" | {final} |")
    return "\n".join(lines)


@click.command()
@click.option("--out", default="runs/schedule", show_default=True)
@click.option("--only", default=None, help=f"Comma-separated settings, of: {', '.join(SETTINGS)}.")
@click.option("--jobs", default=1, show_default=True, help="Runs at a time within a setting.")
@click.option("--table-only", is_flag=True, help="Print the table of the runs found, train nothing.")
def main(out, only, jobs, table_only):
    out = os.path.abspath(out)
    names = only.split(",") if only else list(SETTINGS)
    unknown = sorted(set(names) - set(SETTINGS))
    if unknown:
        raise click.BadParameter(f"Expected settings of {list(SETTINGS)}. Received: {unknown}", param_hint="--only")
    failed = []
    if not table_only:
        for name in names:
            if run_setting(out, name, jobs) != 0:
                failed.append(name)
    print(table(out, names))
    if failed:
        raise SystemExit(f"settings that failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
