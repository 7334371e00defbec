"""Every compared method on the built-in Fashion-MNIST mosaics, 3 seeds, one table.

    python bench/compare_methods.py --out runs/compare_methods
    python bench/compare_methods.py --benchmark demo --only patch \
        --losses full_bce,assume_negative,weak_negative --out runs/demo_table
    python bench/compare_methods.py --benchmark long --out runs/compare_long

Trains each method of the patch paper's Table 1 (and the BoostLU table's
ResNet-50 rows) with the same data, budget and seeds, then writes `table.md`
(test mAP mean ± std over the seeds, training time per epoch, parameter count)
and `results.json` into `--out`. The fully-labelled BCE rows are the upper
bounds.

Every run is one `python cli.py train --recipe demo --set ... --out RUN_DIR`
(the exact command is in `RUN_DIR/command.txt`, its output in `train.log`), so
any cell of the table can be re-run alone. Runs go `--jobs` at a time (2 by
default), each limited to one TensorFlow thread: this model's small kernels
keep a single process at about 115% of 2 cores, and one thread per run is
faster per step than two (51 vs 57 ms on the patch model, measured), so two
runs side by side get 1.7x the throughput. Finished runs are skipped when the
command is run again, so an interrupted table resumes where it stopped (a run cut
in the middle continues from its checkpoint with `--resume`); a
finished run made with other settings is refused, never overwritten; a run that
fails is reported and the others go on. `--only patch` and `--losses
ll_r,weak_negative` run a subset of the rows.

The benchmark is the demo's data and recipe (`recipes/demo.py`) at half scale
with more images: see `BENCHMARK` for what was changed to fit the whole table
(45 runs, 9 of them a 23.5M-parameter ResNet-50 from scratch) in under an hour
on 2 CPU cores. The ResNet-50 CAM model gets the BoostLU table's rows (BCE, AN,
LL-R + BoostLU) rather than every loss. `--set key=value` changes the benchmark
for every run. `--benchmark demo` trains the demo recipe unchanged instead (the
second command above is the README's demo table: BCE, AN and WN, 3 seeds).
`--benchmark long` is the half-scale benchmark at the paper's step count
(9,000 steps: `min_steps`, the learning-rate decay following the steps) for
the patch model's rows of the paper's Table 1 (BCE, AN, EPR, ROLE, WN) and LL-R
(`--only patch,cam` adds ResNet-50 rows, at about 45 minutes a run); the table
then adds WN / BCE and WN - AN, paired by seed, with their spread.
"""

import concurrent.futures
import json
import os
import shlex
import subprocess
import sys
import time

import click
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import recipes  # noqa: E402

# The demo recipe with these changes, for every run: half the demo's scale (56x56
# mosaics of 14x14 items, 14x14 patches, 3 levels: 16 + 4 + 1 patches), more
# images (2,400 training and 600 test mosaics), drawn from the full Fashion-MNIST
# (`apt-get install dataset-fashion-mnist`; `--set fashion_mnist_dir=none` takes
# the subset inside the package instead); 5 epochs (750 steps of 16, the demo's
# step count), lr 5e-3 halved every 2 epochs as in the demo, APL after 2 warm-up
# epochs. That is the most that fits 45 runs, 9 of them ResNet-50 at about 0.3 s
# a step, in an hour on 2 CPU cores; EPR / ROLE's k is measured on the mosaics.
HALF_SCALE = {
    "fashion_mnist_dir": "auto",
    "image_size": 56,
    "item_size": 14,
    "patch_size": 14,
    "stride": 14,
    "num_train": 2400,
    "num_test": 600,
    "epochs": 5,
    "lr_decay_epochs": 2,
    "apl_warmup_epochs": 2,
}
# The paper's step count on VOC (25 epochs of 358 steps, about 9,000), and its protocol: every
# training mosaic trains (no validation split) and the last epoch is the one tested.
LONG = {**HALF_SCALE, "min_steps": 9000, "val_fraction": 0.0}
LONG_LOSSES = "full_bce,assume_negative,expected_positive_regularization,role,weak_negative,ll_r"
# `--benchmark NAME`: the changes to the demo recipe each benchmark makes, its default losses and
# models (None: all). The long budget is the patch model's: ResNet-50 at 9,000 steps would take
# about 45 minutes a run on 2 CPU cores.
BENCHMARKS = {
    "half_scale": (HALF_SCALE, None, None),
    "demo": ({}, None, None),
    "long": (LONG, LONG_LOSSES, "patch"),
}
BENCHMARK = HALF_SCALE

# (row, model, recipe overrides): the patch model with every loss, then ResNet-50 CAM.
RUNS = [
    ("BCE, full labels (upper bound)", "patch", {"loss": "full_bce", "regime": "full"}),
    ("AN", "patch", {"loss": "assume_negative"}),
    ("AN-LS", "patch", {"loss": "assume_negative_ls"}),
    ("WAN", "patch", {"loss": "weak_assume_negative"}),
    ("EPR", "patch", {"loss": "expected_positive_regularization"}),
    ("ROLE", "patch", {"loss": "role"}),
    ("EN + CL (reconstructed)", "patch", {"loss": "en_cl"}),
    ("LL-R", "patch", {"loss": "ll_r"}),
    ("LL-Ct", "patch", {"loss": "ll_ct"}),
    ("LL-Cp", "patch", {"loss": "ll_cp"}),
    ("EM + APL", "patch", {"loss": "em_apl"}),
    ("WN (the patch paper)", "patch", {"loss": "weak_negative"}),
    ("GR-Loss", "patch", {"loss": "generalized_robust"}),
    ("WN, ImageNet patch embedder", "patch", {"loss": "weak_negative", "embedder_weights": "imagenet"}),
    ("BCE, full labels (upper bound)", "cam", {"loss": "full_bce", "regime": "full"}),
    ("AN", "cam", {"loss": "assume_negative"}),
    ("LL-R + BoostLU", "cam", {"loss": "ll_r", "boost_lu_alpha": 5.0}),
]
MODELS = {
    "patch": ("patch model", {"model": "patch"}),
    "cam": ("ResNet-50 CAM", {"model": "cam", "backbone": "resnet50"}),
}
# One TensorFlow thread per run (see the module docstring).
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}


def run_name(model, overrides, seed):
    parts = [model, overrides["loss"]] + (["boostlu"] if overrides.get("boost_lu_alpha") else [])
    parts += ["pretrained"] if overrides.get("embedder_weights") else []
    return "-".join(parts) + f"-seed{seed}"


def pretrained_weights_missing(weights):
    """Why a row initialised from `weights` cannot run here, or None when it can."""
    from patchpu_keras.models import pretrained

    if weights != pretrained.IMAGENET:
        return None if os.path.isfile(weights) else f"no weights file {weights}"
    if pretrained._in_keras_cache(pretrained.CACHED_FILES["EfficientNetB0"]) or pretrained.weights_host_reachable():
        return None
    return ("Keras' ImageNet EfficientNet-B0 weights are not cached and cannot be downloaded; "
            "pass --embedder-weights PATH (a file saved with "
            "keras.applications.EfficientNetB0(weights='imagenet').save_weights)")


def mean_labels_per_image(config):
    """EPR / ROLE's k: the mean number of labels of the benchmark's training mosaics."""
    from patchpu_keras.data.mosaics import recipe_mosaics

    mosaics = recipe_mosaics(config, num_test=1)
    return round(float(mosaics["train"]["full_labels"].sum(axis=1).mean()), 2)


def _assignment(key, value):
    text = "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return f"{key}={text}"


def train_command(settings, run_dir):
    """The `cli.py train` command of one run: the demo recipe with `settings` set."""
    command = [sys.executable, os.path.join(ROOT, "cli.py"), "train", "--recipe", "demo", "--out", run_dir]
    for key, value in settings.items():
        command += ["--set", _assignment(key, value)]
    return command


def command_line(command):
    """What `command.txt` records: the command as typed in the repository's folder."""
    return shlex.join(["python", "cli.py"] + command[2:])


def _what_it_trains(line):
    """A recorded command's arguments after `train`, without `--out` (the folder may move)."""
    words = shlex.split(line)
    words = words[words.index("train") + 1:]
    out = words.index("--out")
    return words[:out] + words[out + 2:]


def _report(run_dir):
    """A run's `report.json`, or {} before it has one."""
    path = os.path.join(run_dir, "report.json")
    return json.load(open(path)) if os.path.exists(path) else {}


def finished_report(command, run_dir):
    """The report of a completed run of this very command, or None if it must (re)run.

    A completed run made with other settings is an error, not overwritten: it
    is somebody's result.
    """
    report = _report(run_dir)
    if report.get("status") != "completed":
        return None
    recorded = open(os.path.join(run_dir, "command.txt")).read().strip()
    if _what_it_trains(recorded) != _what_it_trains(command_line(command)):
        raise click.ClickException(
            f"{run_dir} holds a completed run made with other settings; pass another --out, or "
            f"remove that folder to re-run it. Expected: {command_line(command)}. Received: {recorded}"
        )
    return report


def run_once(command, run_dir, env):
    """Runs one training command; returns its report, or raises.

    A folder with a checkpoint is continued with `train --resume`, which
    checks that the checkpoint was made with the same recipe and refuses it
    otherwise (the error is reported like any failed run).
    """
    os.makedirs(run_dir, exist_ok=True)
    resume = os.path.exists(os.path.join(run_dir, "checkpoint", "state.json"))
    with open(os.path.join(run_dir, "command.txt"), "w") as handle:
        handle.write(command_line(command) + "\n")
    with open(os.path.join(run_dir, "train.log"), "a" if resume else "w") as log:
        code = subprocess.call(
            command + (["--resume"] if resume else []), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
    report = _report(run_dir)
    if code != 0 or report.get("status") != "completed":
        tail = open(os.path.join(run_dir, "train.log")).read()[-2000:]
        raise RuntimeError(f"{command_line(command)} exited with {code}:\n{tail}")
    return report


def table(results):
    num_seeds = max((row["num_seeds"] for row in results), default=0)
    lines = [
        f"| model | method | labels | test mAP (mean ± std, {num_seeds} seeds) | train s / epoch | parameters |",
        "|---|---|---|---|---|---|",
    ]
    for row in results:
        if not row["runs"]:
            continue
        maps = np.array([run["map"] for run in row["runs"]]) * 100
        per_epoch = np.mean([run["train_seconds"] / run["epochs"] for run in row["runs"]])
        labels = "all" if row["overrides"].get("regime") == "full" else "1 positive"
        missing = "" if len(maps) == row["num_seeds"] else f" ({len(maps)} of {row['num_seeds']} seeds)"
        lines.append(
            f"| {MODELS[row['model']][0]} | {row['method']} | {labels} | "
            f"{maps.mean():.1f} ± {maps.std():.1f}{missing} | {per_epoch:.1f} | {row['num_parameters']:,} |"
        )
    return "\n".join(lines) + "\n"


def paired_gaps(rows, model="patch"):
    """WN / BCE and WN - AN of `model`, paired by seed (mean ± std), as table lines; "" without them."""
    by_loss = {
        (row["overrides"]["loss"], row["overrides"].get("regime")): {run["seed"]: run["map"] for run in row["runs"]}
        for row in rows if row["model"] == model and not row["overrides"].get("boost_lu_alpha")
    }
    wn, bce, an = (by_loss.get(key, {}) for key in (
        ("weak_negative", None), ("full_bce", "full"), ("assume_negative", None)))
    lines = []
    for name, other, combine in (("WN / BCE", bce, lambda a, b: a / b), ("WN - AN", an, lambda a, b: 100 * (a - b))):
        seeds = sorted(set(wn) & set(other))
        if seeds:
            values = np.array([combine(wn[seed], other[seed]) for seed in seeds])
            lines.append(f"{name}: {values.mean():.3f} ± {values.std():.3f} ({len(seeds)} seeds paired)")
    return ("\n" + "\n".join(lines) + "\n") if lines else ""


@click.command()
@click.option("--out", default="runs/compare_methods", show_default=True)
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--only", default=None, help="Comma-separated models to run: patch, cam.")
@click.option("--losses", "loss_names", default=None, help="Comma-separated `loss` values of the rows to run.")
@click.option("--jobs", default=2, show_default=True, help="Runs at a time, one TensorFlow thread each.")
@click.option("--set", "assignments", multiple=True, help="Extra recipe overrides for every run.")
@click.option("--benchmark", "benchmark_name", type=click.Choice(sorted(BENCHMARKS)), default="half_scale",
              show_default=True, help="The demo recipe's changes: see BENCHMARKS.")
@click.option("--embedder-weights", default="imagenet", show_default=True,
              help="Weights of the pretrained patch embedder row: imagenet or a local file.")
def main(out, seeds, only, loss_names, jobs, assignments, benchmark_name, embedder_weights):
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    demo = recipes.load("demo")
    changes, default_losses, default_models = BENCHMARKS[benchmark_name]
    benchmark = recipes.apply_overrides({**demo, **changes}, assignments)
    loss_names = loss_names or default_losses
    changed = {key: value for key, value in benchmark.items() if value != demo[key]}
    if not any(a.split("=", 1)[0].strip() == "expected_positives" for a in assignments):
        changed["expected_positives"] = mean_labels_per_image(benchmark)
    only = only or default_models
    models = only.split(",") if only else list(MODELS)
    seed_list = [int(s) for s in seeds.split(",")]
    env = {**os.environ, **(ONE_THREAD if jobs > 1 else {})}

    rows = []
    for method, model, overrides in RUNS:
        if model not in models or (loss_names is not None and overrides["loss"] not in loss_names.split(",")):
            continue
        if overrides.get("embedder_weights"):
            overrides = {**overrides, "embedder_weights": embedder_weights}
            missing = pretrained_weights_missing(embedder_weights)
            if missing:
                print(f"skipped {method}: {missing}", flush=True)
                continue
        rows.append({"method": method, "model": model, "overrides": overrides, "runs": [],
                     "num_seeds": len(seed_list), "num_parameters": None})
    jobs_to_run, start = [], time.time()
    for row in rows:
        for seed in seed_list:
            run_dir = os.path.join(out, run_name(row["model"], row["overrides"], seed))
            settings = {**changed, **MODELS[row["model"]][1], **row["overrides"], "seed": seed}
            jobs_to_run.append((row, seed, run_dir, train_command(settings, run_dir)))
    # Longest runs first (ResNet-50), so the last minutes are not one run alone.
    jobs_to_run.sort(key=lambda job: job[0]["model"] != "cam")

    def finish(row, seed, report):
        row["num_parameters"] = report["num_parameters"]
        row["runs"].append({
            "seed": seed, "map": report["map"], "train_seconds": report["train_seconds"],
            "epochs": report["epochs_completed"],
        })
        print(
            f"{MODELS[row['model']][0]} {row['method']} seed {seed}: mAP {report['map']:.4f}, "
            f"{report['train_seconds']:.0f} s ({time.time() - start:.0f} s so far)",
            flush=True,
        )

    failures = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        pending = {}
        finished = [finished_report(command, run_dir) for _, _, run_dir, command in jobs_to_run]
        for (row, seed, run_dir, command), report in zip(jobs_to_run, finished):
            if report is not None:
                finish(row, seed, report)
            else:
                pending[pool.submit(run_once, command, run_dir, env)] = (row, seed)
        for future in concurrent.futures.as_completed(pending):
            row, seed = pending[future]
            try:
                finish(row, seed, future.result())
            except RuntimeError as error:
                failures.append(str(error))
                print(f"FAILED: {error}", flush=True)
    for row in rows:
        row["runs"].sort(key=lambda run: run["seed"])

    text = table(rows) + paired_gaps(rows)
    with open(os.path.join(out, "table.md"), "w") as handle:
        handle.write(text)
    with open(os.path.join(out, "results.json"), "w") as handle:
        json.dump(
            {"benchmark": {**demo, **changed}, "benchmark_name": benchmark_name,
             "changed_from_demo": changed, "jobs": jobs,
             "rows": rows, "failures": failures,
             # This call's time: a call that resumes an interrupted table trains only the rest.
             "wall_seconds": time.time() - start, "runs_trained": len(pending)},
            handle, indent=2,
        )
    print(text)
    print(f"wall time: {time.time() - start:.0f} s for {len(pending)} run(s) trained, "
          f"{len(failures)} failed")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
