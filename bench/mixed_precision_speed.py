"""Training and inference images per second of the demo model for each dtype policy.

    KERAS_BACKEND=tensorflow python bench/mixed_precision_speed.py --steps 8
    KERAS_BACKEND=jax python bench/mixed_precision_speed.py --steps 8

For each policy (float32, mixed_bfloat16, mixed_float16), builds the demo
recipe's model (112x112 mosaics, 28x28 patches, 3 levels, F = 256) with that
`dtype`, compiles it as `train` does (LAMB, weak negative loss; Keras adds loss
scaling for float16), takes one warm-up step (compilation), then times
`--steps` training steps on a fixed batch of 16 random images
(`train_on_batch`) and `--steps` inference calls (`predict_on_batch`). Prints a
table and one JSON line.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import click  # noqa: E402
import numpy as np  # noqa: E402

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


def measure(policy, steps, batch_size=16):
    import keras

    import recipes
    from patchpu_keras import losses
    from patchpu_keras.training import build_model, build_optimizer

    config = {**recipes.load("demo"), "dtype_policy": policy}
    keras.utils.set_random_seed(0)
    model = build_model(config, num_labels=10)
    loss = losses.WeakNegative()
    model.compile(optimizer=build_optimizer(config, 125, loss), loss=loss, jit_compile=keras.backend.backend() == "jax")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch_size, 112, 112, 3)).astype("float32")
    observed = np.zeros((batch_size, 10), "float32")
    observed[np.arange(batch_size), np.arange(batch_size) % 10] = 1
    model.train_on_batch(images, observed)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, observed)
    train_rate = steps * batch_size / (time.perf_counter() - start)
    model.predict_on_batch(images)
    start = time.perf_counter()
    for _ in range(steps):
        model.predict_on_batch(images)
    predict_rate = steps * batch_size / (time.perf_counter() - start)
    return {"policy": policy, "train_images_per_s": train_rate, "predict_images_per_s": predict_rate}


@click.command()
@click.option("--steps", type=int, default=8, show_default=True, help="Timed steps per policy and mode.")
@click.option("--policies", default=",".join(POLICIES), show_default=True)
def main(steps, policies):
    import keras

    rows = [measure(policy, steps) for policy in policies.split(",")]
    click.echo(f"backend {keras.backend.backend()}, demo model, batch 16, {steps} timed steps")
    click.echo(f"{'policy':16s} {'train img/s':>12s} {'predict img/s':>14s}")
    for row in rows:
        click.echo(f"{row['policy']:16s} {row['train_images_per_s']:12.1f} {row['predict_images_per_s']:14.1f}")
    click.echo(json.dumps({"backend": keras.backend.backend(), "steps": steps, "rows": rows}))


if __name__ == "__main__":
    main()
