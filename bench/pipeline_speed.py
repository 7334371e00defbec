"""Images per second of the file pipeline alone, on VOC-sized JPEGs, against what training consumes.

    python bench/pipeline_speed.py --images 400 --epochs 3 --train-steps 3

Writes `--images` JPEGs of 500x375 (VOC's most common size; every fourth one
375x500), cut from the photos scikit-image ships, with mild noise (sigma 6)
and quality 95 so that files weigh about 95 KB like VOC's, into a temporary
folder (or reads `--data-dir`, any dataset `load_index` reads, e.g. a
VOCdevkit). Then times `image_dataset` as training uses it with the paper's
recipes (read, decode, resize to 640x640, shuffle, flip, batch 16, prefetch,
AUTOTUNE maps): one warm-up epoch, then `--epochs` timed epochs, no model.
With `--train-steps N`, also times N training steps of the voc_wn model
(640x640, 129 patches, batch 16) on the backend in `KERAS_BACKEND`, after one
warm-up step, to compare with what training consumes. Prints a table and one
JSON line.
"""

import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import click  # noqa: E402
import numpy as np  # noqa: E402


def write_voc_sized_jpegs(folder, count, seed=0):
    """`count` JPEGs of 500x375 (or 375x500) cut from scikit-image's photos, in `folder/train/photo/`."""
    import skimage.data
    from PIL import Image

    photo_dir = os.path.dirname(skimage.data.__file__)
    names = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
             "hubble_deep_field.jpg", "retina.jpg", "color.png")
    photos = [Image.open(os.path.join(photo_dir, name)).convert("RGB") for name in names]
    rng = np.random.default_rng(seed)
    target = os.path.join(folder, "train", "photo")
    os.makedirs(target, exist_ok=True)
    for number in range(count):
        photo = photos[number % len(photos)]
        width, height = photo.size
        scale = rng.uniform(0.5, 1.0)
        left = int(rng.uniform(0, 1 - scale) * width)
        top = int(rng.uniform(0, 1 - scale) * height)
        size = (375, 500) if number % 4 == 3 else (500, 375)
        crop = photo.crop((left, top, left + int(scale * width), top + int(scale * height))).resize(size)
        # Upscaled crops are smoother than photos; noise brings the file size to a real photo's.
        pixels = np.asarray(crop, dtype="float32") + rng.normal(0.0, 6.0, (size[1], size[0], 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).save(
            os.path.join(target, f"{number:05d}.jpg"), quality=95
        )
    return folder


def time_pipeline(split, epochs, image_size, batch_size, cache):
    from patchpu_keras.data import image_dataset

    dataset = image_dataset(
        split, observed_labels=np.ones((len(split), 1), "float32"), image_size=image_size,
        batch_size=batch_size, shuffle=True, flip=True, cache=cache,
    )
    for _ in dataset:  # warm-up epoch: graph building, AUTOTUNE settling, the cache filled
        pass
    start = time.perf_counter()
    count = 0
    for _ in range(epochs):
        for images, _ in dataset:
            count += int(images.shape[0])
    return count / (time.perf_counter() - start)


def time_training(steps, image_size, batch_size):
    import keras

    import recipes
    from patchpu_keras.training import build_loss, build_model, build_optimizer

    config = recipes.load("voc_wn")
    model = build_model(config, 20)
    model.compile(optimizer=build_optimizer(config, 100), loss=build_loss(config),
                  jit_compile=keras.backend.backend() == "jax")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32")
    observed = np.zeros((batch_size, 20), "float32")
    observed[np.arange(batch_size), rng.integers(0, 20, batch_size)] = 1
    model.train_on_batch(images, observed)  # warm-up: compilation
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, observed)
    return steps * batch_size / (time.perf_counter() - start)


@click.command()
@click.option("--images", default=400, show_default=True, help="JPEGs to generate.")
@click.option("--data-dir", default=None, help="Time a dataset on disk instead (its training split).")
@click.option("--epochs", default=3, show_default=True, help="Timed epochs after one warm-up epoch.")
@click.option("--image-size", default=640, show_default=True)
@click.option("--batch-size", default=16, show_default=True)
@click.option("--cache/--no-cache", default=False, show_default=True, help="Cache resized images in memory.")
@click.option("--train-steps", default=0, show_default=True, help="Also time this many voc_wn training steps.")
def main(images, data_dir, epochs, image_size, batch_size, cache, train_steps):
    import keras

    from patchpu_keras.data import load_index

    folder = None
    if data_dir is None:
        folder = write_voc_sized_jpegs(tempfile.mkdtemp(prefix="pipeline_speed-"), images)
        data_dir = folder
    try:
        split = load_index(data_dir, holdout_fraction=0.01, warn=False).splits["train"]
        sizes = [os.path.getsize(f) for f in split.files[:200]] if split.files else [0]
        pipeline = time_pipeline(split, epochs, image_size, batch_size, cache)
    finally:
        if folder is not None:
            shutil.rmtree(folder)
    result = {
        "images": len(split), "mean_jpeg_kb": round(float(np.mean(sizes)) / 1024, 1),
        "image_size": image_size, "batch_size": batch_size, "cache": cache, "cpus": os.cpu_count(),
        "pipeline_images_per_second": round(pipeline, 1),
    }
    print(f"pipeline: {pipeline:.1f} images/s ({len(split)} JPEGs of ~{result['mean_jpeg_kb']} KB -> "
          f"{image_size}x{image_size}, batch {batch_size}, {epochs} epochs, {os.cpu_count()} CPUs)")
    if train_steps:
        consumed = time_training(train_steps, image_size, batch_size)
        result.update(backend=keras.backend.backend(), training_images_per_second=round(consumed, 2))
        print(f"training (voc_wn, {keras.backend.backend()}): {consumed:.2f} images/s consumed")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
