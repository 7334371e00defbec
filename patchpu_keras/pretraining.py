"""A patch embedder pretrained without labels on a recipe's own training images.

    python cli.py pretrain --recipe demo --out runs/embedder.weights.h5
    python cli.py train --recipe demo --set embedder_weights=runs/embedder.weights.h5

The objective is contrastive (SimCLR's NT-Xent, Chen et al., ICML 2020) on the
patches the model itself cuts (`MultiResolutionPatches` with the recipe's
patch size, stride and levels): two random views of each patch (a random crop
resized back, a horizontal flip, brightness and contrast jitter) must find each
other among the other patches of the batch. It needs no decoder and no labels,
and the embedder it trains is the classifier's own `PatchEmbedder`, so the
weights carry over unchanged.

The result is an EfficientNet-B0 weights file (`keras.applications`'
layer names, `weights=None` normalisation), the format `embedder_weights=PATH`
reads: the stem and the first five blocks are copied into the classifier's
embedder; the projection, attention and classifier start from scratch, and the
model's preprocessing stays "unit" ([0, 1]), as the pretraining saw it.
"""

import os

import keras
import numpy as np
from keras import layers, ops

from patchpu_keras.layers import PatchEmbedder


def contrastive_patch_loss(projections, temperature=0.2):
    """NT-Xent loss of two views per patch (SimCLR, eq. 1).

    With `z` the L2-normalised projections of the `2B` views and
    `s(i, j) = z_i . z_j / temperature`, each view `i` has its other view
    `j(i)` as the one positive among the other `2B - 1`:

        L = 1 / (2B) sum_i -log( exp s(i, j(i)) / sum_{k != i} exp s(i, k) ).

    Args:
        projections: `(batch, 2, dim)` projections of the two views of each patch.
        temperature: positive float.

    Returns:
        Scalar loss.

    Reference:
        Chen et al., "A Simple Framework for Contrastive Learning of Visual
        Representations", ICML 2020, eq. (1).
    """
    projections = ops.convert_to_tensor(projections)
    norms = ops.sqrt(ops.sum(ops.square(projections), axis=-1, keepdims=True))
    unit = projections / ops.maximum(norms, 1e-12)
    views = ops.concatenate([unit[:, 0], unit[:, 1]], axis=0)
    count = ops.shape(views)[0]
    half = count // 2
    logits = ops.matmul(views, ops.transpose(views)) / temperature
    # A view is not its own candidate.
    logits = logits - 1e9 * ops.eye(count, dtype=logits.dtype)
    targets = ops.concatenate([ops.arange(half) + half, ops.arange(half)], axis=0)
    return ops.mean(ops.sparse_categorical_crossentropy(targets, logits, from_logits=True))


@keras.saving.register_keras_serializable(package="patchpu_keras")
class ContrastivePatchPretrainer(keras.Model):
    """A `PatchEmbedder` with a projection head, trained with `contrastive_patch_loss`.

    Args:
        embedding_dim: int, the embedder's output size F (the classifier's).
        projection_dim: int, the head's output size.
        temperature: positive float of the NT-Xent loss.
        drop_connect_rate: float, the embedder's drop-connect rate.

    Call arguments:
        views: `(batch, 2, p, p, 3)` two views of each patch, values in [0, 1].
        training: bool.

    Returns:
        `(batch, 2, projection_dim)` projections.

    Example:
    ```python
    pretrainer = ContrastivePatchPretrainer(embedding_dim=256)
    pretrainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    pretrainer.fit(view_pairs, epochs=1)  # no targets
    ```

    Reference:
        Chen et al., ICML 2020 (SimCLR); Jouanneau et al., VISAPP 2023, sec. 5
        (pretraining the patch embedder, named as future work).
    """

    def __init__(self, embedding_dim=256, projection_dim=128, temperature=0.2, drop_connect_rate=0.2, **kwargs):
        super().__init__(**kwargs)
        if not temperature > 0:
            raise ValueError(f"`temperature` must be > 0. Received: temperature={temperature!r}")
        self.embedding_dim = embedding_dim
        self.projection_dim = projection_dim
        self.temperature = temperature
        self.drop_connect_rate = drop_connect_rate
        # === Layers ===
        self.embedder = PatchEmbedder(embedding_dim=embedding_dim, drop_connect_rate=drop_connect_rate,
                                      name="embedder")
        self.hidden = layers.Dense(embedding_dim, activation="relu", name="head_hidden")
        self.head = layers.Dense(projection_dim, name="head_output")

    def call(self, views, training=None):
        return self.head(self.hidden(self.embedder(views, training=training)))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return contrastive_patch_loss(y_pred, self.temperature)

    def get_config(self):
        return {
            **super().get_config(),
            "embedding_dim": self.embedding_dim,
            "projection_dim": self.projection_dim,
            "temperature": self.temperature,
            "drop_connect_rate": self.drop_connect_rate,
        }


def save_embedder_weights(embedder, path):
    """Writes `embedder`'s stem and blocks as an EfficientNet-B0 weights file (`embedder_weights=PATH`).

    Args:
        embedder: a built `PatchEmbedder` (not folded).
        path: file name ending in `.weights.h5`.
    """
    if not os.fspath(path).endswith(".weights.h5"):
        raise ValueError(f"The weights file must end in .weights.h5. Received: path={path!r}")
    efficientnet = keras.applications.EfficientNetB0(weights=None, include_top=False, input_shape=(32, 32, 3))
    for sublayer, name in embedder.efficientnet_b0_layer_names():
        efficientnet.get_layer(name).set_weights(sublayer.get_weights())
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    efficientnet.save_weights(path)


def training_patches(config, max_patches=None, min_std=0.02):
    """The patches the recipe's model cuts from its training images, `(n, p, p, 3)` in [0, 1].

    Patches whose pixels barely vary (standard deviation below `min_std`, e.g.
    the empty background of the mosaics) are left out: every one of them looks
    like every other, so no view could find its own.
    """
    from patchpu_keras.data.recipe_data import load_data
    from patchpu_keras.training.builders import build_model

    data = load_data({**config, "regime": "single_positive", "redraw_each_epoch": False}, splits=("train",))
    model = build_model({**config, "model": "patch", "embedder_weights": None}, len(data.class_names))
    found, total = [], 0
    for images, _ in data.train:
        patches = model.backbone.patches(model.backbone.image_preprocessing(images), training=False)
        patches = np.asarray(ops.convert_to_numpy(patches), "float32")
        patches = patches.reshape((-1,) + patches.shape[-3:])
        patches = patches[patches.std(axis=(1, 2, 3)) >= min_std]
        found.append(patches)
        total += len(patches)
        if max_patches is not None and total >= max_patches:
            break
    patches = np.concatenate(found)[:max_patches]
    if not len(patches):
        raise ValueError(
            f"No training patch varies enough to pretrain on (pixel std >= {min_std}). "
            f"Received: {config.get('data_dir') or config.get('dataset')!r}"
        )
    return patches


def view_pairs(patches, batch_size, seed):
    """A `tf.data.Dataset` of batches `(batch, 2, p, p, 3)`: two random views of each patch."""
    import tensorflow as tf

    size = patches.shape[1]

    def view(patch, view_seed):
        seeds = tf.random.experimental.stateless_split(view_seed, 5)
        side = tf.cast(tf.round(size * tf.random.stateless_uniform([], seeds[0], 0.6, 1.0)), tf.int32)
        crop = tf.image.stateless_random_crop(patch, [side, side, 3], seeds[1])
        crop = tf.image.resize(crop, (size, size))
        crop = tf.image.stateless_random_flip_left_right(crop, seeds[2])
        crop = tf.image.stateless_random_brightness(crop, 0.2, seeds[3])
        crop = tf.image.stateless_random_contrast(crop, 0.6, 1.4, seeds[4])
        return tf.clip_by_value(crop, 0.0, 1.0)

    def pair(index, patch):
        pair_seed = tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)])
        seeds = tf.random.experimental.stateless_split(pair_seed, 2)
        return tf.stack([view(patch, seeds[0]), view(patch, seeds[1])])

    dataset = tf.data.Dataset.from_tensor_slices(patches).enumerate()
    dataset = dataset.shuffle(min(len(patches), 10000), seed=seed, reshuffle_each_iteration=True).repeat()
    # The index grows over the repeats, so every epoch draws new views.
    dataset = dataset.enumerate().map(lambda step, item: pair(step, item[1]), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def pretrain_embedder(config, out, steps=1000, batch_size=128, learning_rate=1e-3, temperature=0.2,
                      max_patches=50000, seed=0, verbose="auto"):
    """Pretrains the recipe's patch embedder on its training images' patches; writes `out`.

    Args:
        config: a recipe dict: its data (`data_dir` or the built-in mosaics),
            patch size, stride, levels and `embedding_dim` apply.
        out: the weights file to write (`.weights.h5`), for `embedder_weights=out`.
        steps: training steps.
        batch_size: patches per step (each gives two views).
        learning_rate: Adam's learning rate.
        temperature: NT-Xent's temperature.
        max_patches: at most this many training patches are read.
        seed: seed of the views, the order and the initial weights.
        verbose: `fit`'s verbosity.

    Returns:
        A dict: `num_patches`, `steps`, `final_loss`, `seconds`.
    """
    import time

    keras.utils.set_random_seed(seed)
    start = time.time()
    patches = training_patches(config, max_patches=max_patches)
    pretrainer = ContrastivePatchPretrainer(embedding_dim=config["embedding_dim"], temperature=temperature)
    pretrainer.compile(optimizer=keras.optimizers.Adam(learning_rate))
    history = pretrainer.fit(view_pairs(patches, batch_size, seed), steps_per_epoch=steps, epochs=1, shuffle=False,
                             verbose=verbose)
    save_embedder_weights(pretrainer.embedder, out)
    return {"num_patches": int(len(patches)), "steps": steps, "final_loss": float(history.history["loss"][-1]),
            "seconds": time.time() - start}
