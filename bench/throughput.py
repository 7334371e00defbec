"""Training and inference images per second and peak step memory: patch model against ResNet-50 CAM.

    KERAS_BACKEND=tensorflow python bench/throughput.py
    KERAS_BACKEND=jax python bench/throughput.py
    KERAS_BACKEND=torch python bench/throughput.py
    # quick look: one policy, small batch, no memory runs
    python bench/throughput.py --batch-size 4 --steps 2 --policies float32 --no-memory

Models: `PatchPUClassifier` (the paper's: 64 px patches, 3 levels, F = 256) at
each `--patch-sizes` (448 px: 59 patches, 640 px: 129), its copy with batch
norms folded into the convolutions (`model.fold_batch_norm()`, what export,
`cli.py predict` and `cli.py evaluate` run; inference only, rows "patch ...
folded", unless `--no-folded`), its training with the embedder's activations
rematerialised (`rematerialize_embedder=True`: only the stem's and blocks'
inputs are kept for the backward pass, which recomputes the rest; rows "patch
... remat", unless `--no-remat`) and
`CAMClassifier.create(backbone="resnet50")` at `--resnet-size`, L = `--num-labels`,
LAMB (1e-3, weight decay 1e-4), weak negative loss for the patch model and
assume negative for CAM (the loss is a negligible part of a step). Inputs are
uniform random pixels with one observed positive per image.

Speed: one subprocess per dtype policy builds every model, runs `--warmup`
steps of each (tracing, compilation), then `--steps` rounds in which each model
takes one training step in turn (`train_on_batch`), then the same for
inference (`predict_on_batch`). Each model's speed is its best step (the
machines these run on are shared, so the fastest step is the one least
disturbed), and the ratios patch / ResNet-50 compare steps interleaved in one
process. `jit_compile` is per backend: `auto` is what `--jit-compile` says
below.

Memory: a fresh subprocess per model and policy (unless `--no-memory`) reads
its resident set size (RSS) once the model and the batch exist, runs two
inference steps, reads the peak RSS (`getrusage` `ru_maxrss`), then two
training steps and reads it again. "Peak memory" is that peak minus the RSS
before the steps: activations, gradients, optimizer slots, framework
workspaces and whatever the allocator kept, on CPU. The training peak includes
the first training step's tracing. It is a CPU number, the closest honest
proxy for what a GPU would need for the same step.

Prints a table and one JSON line.
"""

import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import click  # noqa: E402

# `auto`: what trains fastest on CPU. JAX runs op by op without `jit`, which is
# far slower than XLA; TensorFlow's XLA and `torch.compile` lose on CPU for this
# model (docs/performance.md).
# Models that only run inference (no training step, no training memory).
INFERENCE_ONLY = ("patch_folded",)
LABELS = {"patch": "patch {}", "patch_folded": "patch {} folded", "patch_remat": "patch {} remat",
          "resnet50": "ResNet-50 CAM {}"}


def build(name, image_size, num_labels):
    """A model and its loss, for `name` in `LABELS`."""
    from patchpu_keras import losses
    from patchpu_keras.models.cam_classifier import CAMClassifier
    from patchpu_keras.models.patch_pu_classifier import PatchPUClassifier

    if name in ("patch", "patch_folded", "patch_remat"):
        model = PatchPUClassifier.create(
            num_labels, image_size=image_size, seed=0, rematerialize_embedder=name == "patch_remat"
        )
        loss = losses.WeakNegative()
        if name == "patch_folded":
            model = model.fold_batch_norm()
    else:
        model = CAMClassifier.create(num_labels, backbone="resnet50", image_size=image_size)
        loss = losses.AssumeNegative()
    return model, loss


def compile_model(model, loss, jit_compile):
    import keras

    model.compile(
        optimizer=keras.optimizers.Lamb(1e-3, weight_decay=1e-4), loss=loss, jit_compile=jit_compile
    )


def make_batch(batch_size, image_size, num_labels, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32")
    observed = np.zeros((batch_size, num_labels), "float32")
    observed[np.arange(batch_size), rng.integers(0, num_labels, batch_size)] = 1
    return images, observed


def resolve_jit(jit_compile):
    from patchpu_keras.training.builders import resolve_jit_compile

    return resolve_jit_compile("auto" if jit_compile == "auto" else jit_compile == "on")


def set_policy(policy):
    import keras

    keras.config.set_dtype_policy(policy)


def rss_kib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def max_rss_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def time_worker(args):
    """Interleaved best-of-N steps of every model in one process."""
    set_policy(args["policy"])
    jit_compile = resolve_jit(args["jit_compile"])
    runs = []
    for name, size in args["configs"]:
        model, loss = build(name, size, args["num_labels"])
        compile_model(model, loss, jit_compile)
        images, observed = make_batch(args["batch_size"], size, args["num_labels"])
        for _ in range(args["warmup"]):
            if name not in INFERENCE_ONLY:
                model.train_on_batch(images, observed)
            model.predict_on_batch(images)
        runs.append({"model": name, "image_size": size, "train": [], "infer": [],
                     "_objects": (model, images, observed)})
    for _ in range(args["steps"]):
        for run in runs:
            if run["model"] in INFERENCE_ONLY:
                continue
            model, images, observed = run["_objects"]
            start = time.perf_counter()
            model.train_on_batch(images, observed)  # returns host floats: the step has finished
            run["train"].append(time.perf_counter() - start)
    for _ in range(args["steps"]):
        for run in runs:
            model, images, _ = run["_objects"]
            start = time.perf_counter()
            model.predict_on_batch(images)  # returns numpy arrays
            run["infer"].append(time.perf_counter() - start)
    for run in runs:
        run.pop("_objects")
    return {"jit_compile": jit_compile, "runs": runs}


def memory_worker(args):
    """Peak RSS above the pre-step RSS of inference, then training, in a fresh process."""
    set_policy(args["policy"])
    (name, size), = args["configs"]
    model, loss = build(name, size, args["num_labels"])
    compile_model(model, loss, resolve_jit(args["jit_compile"]))
    images, observed = make_batch(args["batch_size"], size, args["num_labels"])
    before = rss_kib()
    for _ in range(2):
        model.predict_on_batch(images)
    inference_peak = max_rss_kib() - before
    if name in INFERENCE_ONLY:
        return {"rss_before_mib": before / 1024, "infer_peak_mib": inference_peak / 1024,
                "train_peak_mib": None}
    for _ in range(2):
        model.train_on_batch(images, observed)
    training_peak = max_rss_kib() - before
    return {"rss_before_mib": before / 1024, "infer_peak_mib": inference_peak / 1024,
            "train_peak_mib": training_peak / 1024}


def run_worker(kind, args):
    command = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--worker-args", json.dumps(args)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"{kind} worker failed for {args}:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def format_table(backend, batch_size, rows):
    header = (f"{'model':<22}{'policy':<16}{'train img/s':>12}{'infer img/s':>12}"
              f"{'train x':>9}{'infer x':>9}{'train peak MiB':>16}{'infer peak MiB':>16}")
    lines = [f"backend={backend} batch={batch_size} (best step of N; x = patch / ResNet-50 at "
             "the same policy, same process)", header, "-" * len(header)]
    for row in rows:
        memory = [f"{row[key]:>16.0f}" if row.get(key) is not None else f"{'-':>16}"
                  for key in ("train_peak_mib", "infer_peak_mib")]
        ratios = [f"{row[key]:>9.2f}" if row.get(key) is not None else f"{'-':>9}"
                  for key in ("train_ratio", "infer_ratio")]
        speeds = [f"{row[key]:>12.2f}" if row.get(key) is not None else f"{'-':>12}"
                  for key in ("train_img_s", "infer_img_s")]
        lines.append(f"{row['label']:<22}{row['policy']:<16}{''.join(speeds)}"
                     f"{''.join(ratios)}{''.join(memory)}")
    return "\n".join(lines)


@click.command()
@click.option("--batch-size", default=16, show_default=True)
@click.option("--steps", default=4, show_default=True, help="Timed steps per model (best one counts).")
@click.option("--warmup", default=1, show_default=True, help="Untimed steps per model first.")
@click.option("--patch-sizes", default="448,640", show_default=True, help="Image sizes of the patch model.")
@click.option("--resnet-size", default=448, show_default=True, help="Image size of ResNet-50 CAM; 0 skips it.")
@click.option("--num-labels", default=20, show_default=True)
@click.option("--policies", default="float32,mixed_bfloat16", show_default=True)
@click.option("--jit-compile", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="auto: the recipe key jit_compile=auto (patchpu_keras.training.builders.resolve_jit_compile).")
@click.option("--folded/--no-folded", default=True, show_default=True,
              help="Also time the patch model with batch norms folded (inference only).")
@click.option("--remat/--no-remat", default=True, show_default=True,
              help="Also time the patch model trained with rematerialised embedder activations.")
@click.option("--memory/--no-memory", default=True, show_default=True,
              help="Also measure peak memory, one fresh process per model and policy.")
@click.option("--worker", type=click.Choice(["time", "memory"]), default=None, hidden=True)
@click.option("--worker-args", default=None, hidden=True)
def main(batch_size, steps, warmup, patch_sizes, resnet_size, num_labels, policies, jit_compile,
         folded, remat, memory, worker, worker_args):
    if worker is not None:
        result = (time_worker if worker == "time" else memory_worker)(json.loads(worker_args))
        print(json.dumps(result))
        return
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    configs = []
    for size in (int(size) for size in patch_sizes.split(",") if size):
        configs += [("patch", size)] + ([("patch_folded", size)] if folded else [])
        configs += [("patch_remat", size)] if remat else []
    if resnet_size:
        configs.append(("resnet50", resnet_size))
    common = {"batch_size": batch_size, "num_labels": num_labels, "jit_compile": jit_compile}
    rows = []
    for policy in policies.split(","):
        timing = run_worker("time", {**common, "policy": policy, "configs": configs, "steps": steps,
                                     "warmup": warmup})
        runs = timing["runs"]
        resnet = next((r for r in runs if r["model"] == "resnet50"), None)
        for run in runs:
            trained = bool(run["train"])
            row = {
                "label": LABELS[run["model"]].format(run["image_size"]),
                "model": run["model"], "image_size": run["image_size"], "policy": policy,
                "jit_compile": timing["jit_compile"],
                "train_img_s": batch_size / min(run["train"]) if trained else None,
                "infer_img_s": batch_size / min(run["infer"]),
                "train_step_s": run["train"], "infer_step_s": run["infer"],
            }
            if resnet is not None:
                row["train_ratio"] = min(resnet["train"]) / min(run["train"]) if trained else None
                row["infer_ratio"] = min(resnet["infer"]) / min(run["infer"])
            if memory:
                row.update(run_worker("memory", {**common, "policy": policy,
                                                 "configs": [(run["model"], run["image_size"])]}))
            rows.append(row)
            # One line per finished configuration, so a long run that is stopped keeps its numbers.
            print(json.dumps({"partial": row}), file=sys.stderr, flush=True)
    print(format_table(backend, batch_size, rows))
    print(json.dumps({"backend": backend, "batch_size": batch_size, "steps": steps, "rows": rows}))


if __name__ == "__main__":
    main()
