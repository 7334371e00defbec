"""Test mAP and the last epoch's diagnostics of finished runs, one row per method, as docs/benchmarks.md shows them.

    python bench/run_diagnostics.py runs/beyond_paper

Groups the runs of each output folder of `bench/compare_methods.py` (or
`bench/beyond_paper.py`) by folder and name without the seed, and prints a Markdown row
per group: seeds, test mAP (mean ± population std, %), per seed, and the
last epoch's pointing, WN AUC (eq. 7-8's weights ranking true negatives above
hidden positives) and prob. AUC (the same ranking by the model's probability),
averaged over the seeds; `history.json` holds them (256 training mosaics).
"""

import collections
import json
import os
import sys

import click
import numpy as np


@click.command()
@click.argument("folders", nargs=-1, required=True)
def main(folders):
    groups = collections.defaultdict(list)
    for folder in folders:
        for name in sorted(os.listdir(folder)):
            report = os.path.join(folder, name, "report.json")
            if not os.path.exists(report) or json.load(open(report)).get("status") != "completed":
                continue
            history = json.load(open(os.path.join(folder, name, "history.json")))["history"]
            groups[f"{os.path.basename(os.path.normpath(folder))}/{name.rsplit('-seed', 1)[0]}"].append((json.load(open(report))["map"] * 100, history))
    click.echo("| run | seeds | test mAP | per seed | pointing | WN AUC | prob. AUC |")
    click.echo("|---|---|---|---|---:|---:|---:|")
    for name, runs in groups.items():
        maps = np.array([value for value, _ in runs])
        last = {key: np.mean([history[key][-1] for _, history in runs])
                for key in ("diagnostics_pointing", "diagnostics_wn_weight_auc", "diagnostics_probability_auc")}
        click.echo(
            f"| {name} | {len(runs)} | {maps.mean():.1f} ± {maps.std():.1f} | "
            f"{', '.join(f'{value:.1f}' for value in maps)} | {last['diagnostics_pointing']:.2f} | "
            f"{last['diagnostics_wn_weight_auc']:.2f} | {last['diagnostics_probability_auc']:.2f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
