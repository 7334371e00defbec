"""Demo mAP of full_bce, assume_negative and weak_negative, mean of 3 seeds.

    python bench/demo_table.py --out runs/demo_table

Runs `cli.py train --recipe demo` (same budget for every loss) for each loss and
training seed, one process per run, and writes `table.md` and `results.json`
into `--out`. full_bce trains on full labels (`regime=full`), the others on the
demo's single positive labels. About 9 x 4 minutes on 2 CPU cores.
"""

import json
import os
import subprocess
import sys

import click
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOSSES = {
    "full_bce": ["loss=full_bce", "regime=full"],
    "assume_negative": ["loss=assume_negative"],
    "weak_negative": ["loss=weak_negative"],
}


@click.command()
@click.option("--out", default="runs/demo_table")
@click.option("--seeds", default="0,1,2")
@click.option("--set", "assignments", multiple=True, help="Extra recipe overrides for every run.")
def main(out, seeds, assignments):
    os.makedirs(out, exist_ok=True)
    results = {}
    for loss, overrides in LOSSES.items():
        for seed in [int(s) for s in seeds.split(",")]:
            run_dir = os.path.join(out, f"{loss}-seed{seed}")
            report_path = os.path.join(run_dir, "report.json")
            if not (os.path.exists(report_path) and json.load(open(report_path))["status"] == "completed"):
                sets = sum((["--set", s] for s in overrides + [f"seed={seed}"] + list(assignments)), [])
                subprocess.run(
                    [sys.executable, os.path.join(ROOT, "cli.py"), "train", "--recipe", "demo",
                     "--out", run_dir, *sets],
                    check=True, stdout=subprocess.DEVNULL,
                )
            report = json.load(open(report_path))
            results.setdefault(loss, []).append(
                {"seed": seed, "map": report["map"], "train_seconds": report["train_seconds"],
                 "epochs": report["epochs_completed"], "num_parameters": report["num_parameters"]}
            )
            print(f"{loss} seed {seed}: mAP {report['map']:.4f} ({report['train_seconds']:.0f} s)", flush=True)
    lines = [
        "| loss | labels used in training | test mAP (mean ± std, 3 seeds) | train time per run |",
        "|---|---|---|---|",
    ]
    for loss, runs in results.items():
        maps = np.array([r["map"] for r in runs]) * 100
        seconds = np.mean([r["train_seconds"] for r in runs])
        labels = "all (upper bound)" if loss == "full_bce" else "one positive per image"
        lines.append(f"| `{loss}` | {labels} | {maps.mean():.1f} ± {maps.std():.1f} | {seconds:.0f} s |")
    table = "\n".join(lines) + "\n"
    open(os.path.join(out, "table.md"), "w").write(table)
    json.dump(results, open(os.path.join(out, "results.json"), "w"), indent=2)
    print(table)


if __name__ == "__main__":
    main()
