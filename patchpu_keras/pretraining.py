"""A patch embedder pretrained without labels on a recipe's own training images.

    python cli.py pretrain --recipe demo --out runs/embedder.weights.h5
    python cli.py train --recipe demo --set embedder_weights=runs/embedder.weights.h5

Two objectives, both on the patches the model itself cuts
(`MultiResolutionPatches` with the recipe's patch size, stride and levels) and
both training the classifier's own `PatchEmbedder`, so the weights carry over
unchanged:

- `"contrastive"` (SimCLR's NT-Xent, Chen et al., ICML 2020): two random views
  of each patch (a random crop resized back, a horizontal flip, brightness and
  contrast jitter) must find each other among the other patches of the batch.
- `"masked"` (masked patch prediction, as MAE, He et al., CVPR 2022, with the
  patch as the image): random blocks of a patch are hidden, and a small decoder
  head must redraw the hidden pixels from the embedder's feature vector of what
  is left; the loss counts the hidden pixels only.

docs/benchmarks.md compares them downstream.

The result is an EfficientNet-B0 weights file (`keras.applications`'
layer names, `weights=None` normalisation), the format `embedder_weights=PATH`
reads: the stem and the first five blocks are copied into the classifier's
embedder; the projection, attention and classifier start from scratch, and the
model's preprocessing stays "unit" ([0, 1]), as the pretraining saw it.

A run can chain both steps: with the recipe key `pretrain_steps` > 0, `train`
first pretrains on the run's own training images (`pretrain_objective` picks
the objective), writes `RUN/pretrained_embedder.weights.h5` and trains from it
(`chained_pretraining`, `pretrain_for_run`).
"""

import os

import keras
import numpy as np
from keras import layers, ops

from patchpu_keras.configured import Configured
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


def masked_patch_loss(reconstructions, patches, mask):
    """Mean squared error on the hidden pixels only.

    With `x` the patch, `x_hat` its reconstruction and `m` the mask (1 on the
    hidden pixels), over the batch's pixels `i` and `C` channels `c`:

        L = sum_{i,c} m_i (x_hat_ic - x_ic)^2 / (C sum_i m_i).

    Args:
        reconstructions: `(batch, p, p, C)` predicted pixels.
        patches: `(batch, p, p, C)` the original pixels.
        mask: `(batch, p, p, 1)`, 1 where a pixel was hidden, else 0.

    Returns:
        Scalar loss.

    Reference:
        He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022,
        sec. 3 (the loss on masked patches only).
    """
    reconstructions = ops.convert_to_tensor(reconstructions)
    patches = ops.cast(patches, reconstructions.dtype)
    mask = ops.cast(mask, reconstructions.dtype)
    channels = ops.cast(ops.shape(patches)[-1], reconstructions.dtype)
    squared = ops.sum(mask * ops.square(reconstructions - patches))
    return squared / ops.maximum(channels * ops.sum(mask), 1.0)


@keras.saving.register_keras_serializable(package="patchpu_keras")
class MaskedPatchPretrainer(keras.Model):
    """A `PatchEmbedder` with a pixel decoder head, trained with `masked_patch_loss`.

    Args:
        patch_size: int, the side of the patches it redraws.
        embedding_dim: int, the embedder's output size F (the classifier's).
        decoder_units: int, the decoder's hidden size.
        drop_connect_rate: float, the embedder's drop-connect rate.

    Call arguments:
        masked_patches: `(batch, 1, p, p, 3)` patches with their hidden blocks
            filled with 0.5, values in [0, 1].
        training: bool.

    Returns:
        `(batch, p, p, 3)` reconstructed patches in [0, 1].

    Example:
    ```python
    pretrainer = MaskedPatchPretrainer(patch_size=14, embedding_dim=256)
    pretrainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    pretrainer.fit(masked_views(patches, 128, seed=0), steps_per_epoch=300)
    ```

    Reference:
        He et al., CVPR 2022 (MAE); Jouanneau et al., VISAPP 2023, sec. 5
        (pretraining the patch embedder, named as future work).
    """

    def __init__(self, patch_size, embedding_dim=256, decoder_units=256, drop_connect_rate=0.2, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = patch_size
        self.embedding_dim = embedding_dim
        self.decoder_units = decoder_units
        self.drop_connect_rate = drop_connect_rate
        # === Layers ===
        self.embedder = PatchEmbedder(embedding_dim=embedding_dim, drop_connect_rate=drop_connect_rate,
                                      name="embedder")
        self.hidden = layers.Dense(decoder_units, activation="relu", name="decoder_hidden")
        self.decoder = layers.Dense(patch_size * patch_size * 3, activation="sigmoid", name="decoder_output")

    def call(self, masked_patches, training=None):
        features = self.embedder(masked_patches, training=training)[:, 0]
        pixels = self.decoder(self.hidden(features))
        return ops.reshape(pixels, (-1, self.patch_size, self.patch_size, 3))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        # y holds the original patch and, as a fourth channel, the mask.
        return masked_patch_loss(y_pred, y[..., :3], y[..., 3:])

    def get_config(self):
        return {
            **super().get_config(),
            "patch_size": self.patch_size,
            "embedding_dim": self.embedding_dim,
            "decoder_units": self.decoder_units,
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
    # Written beside, then renamed: a crash never leaves a half-written file under `path`.
    partial = os.fspath(path)[: -len(".weights.h5")] + ".partial.weights.h5"
    efficientnet.save_weights(partial)
    os.replace(partial, path)


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


def block_mask(size, seed, grid=4, mask_ratio=0.5):
    """A `(size, size, 1)` float mask hiding `round(mask_ratio * grid**2)` random blocks of a `grid x grid` split."""
    import tensorflow as tf

    hidden = int(round(mask_ratio * grid * grid))
    scores = tf.random.stateless_uniform([grid * grid], seed)
    ranks = tf.argsort(tf.argsort(scores))  # each block's rank, a random permutation
    blocks = tf.cast(ranks < hidden, tf.float32)
    blocks = tf.reshape(blocks, (grid, grid, 1))
    # Nearest-neighbour upsampling: each pixel takes its block's value (blocks differ by a pixel when grid ∤ size).
    return tf.image.resize(blocks, (size, size), method="nearest")


def masked_views(patches, batch_size, seed, grid=4, mask_ratio=0.5):
    """A `tf.data.Dataset` of `(masked, target)` batches for `MaskedPatchPretrainer`.

    `masked` is `(batch, 1, p, p, 3)`: each patch, randomly flipped, with the
    blocks of `block_mask` filled with 0.5; `target` is `(batch, p, p, 4)`: the
    flipped patch and, as a fourth channel, the mask.
    """
    import tensorflow as tf

    if not 0 < mask_ratio < 1:
        raise ValueError(f"`mask_ratio` must be in (0, 1). Received: mask_ratio={mask_ratio!r}")
    size = patches.shape[1]

    def example(index, patch):
        item_seed = tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)])
        seeds = tf.random.experimental.stateless_split(item_seed, 2)
        patch = tf.image.stateless_random_flip_left_right(patch, seeds[0])
        mask = block_mask(size, seeds[1], grid, mask_ratio)
        masked = patch * (1.0 - mask) + 0.5 * mask
        return masked[None], tf.concat([patch, mask], axis=-1)

    dataset = tf.data.Dataset.from_tensor_slices(patches)
    dataset = dataset.shuffle(min(len(patches), 10000), seed=seed, reshuffle_each_iteration=True).repeat()
    # The index grows over the repeats, so every epoch draws new masks.
    dataset = dataset.enumerate().map(example, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


OBJECTIVES = ("contrastive", "masked")


def pretrain_embedder(config, out, objective="contrastive", steps=1000, batch_size=128, learning_rate=1e-3,
                      temperature=0.2, mask_ratio=0.5, max_patches=50000, seed=0, verbose="auto"):
    """Pretrains the recipe's patch embedder on its training images' patches; writes `out`.

    Args:
        config: a recipe dict: its data (`data_dir` or the built-in mosaics),
            patch size, stride, levels and `embedding_dim` apply.
        out: the weights file to write (`.weights.h5`), for `embedder_weights=out`.
        objective: `"contrastive"` (two views of each patch find each other)
            or `"masked"` (redraw hidden blocks of each patch).
        steps: training steps.
        batch_size: patches per step (each gives two views when contrastive).
        learning_rate: Adam's learning rate.
        temperature: NT-Xent's temperature (contrastive).
        mask_ratio: the share of a patch's 4 x 4 blocks hidden (masked).
        max_patches: at most this many training patches are read.
        seed: seed of the views or masks, the order and the initial weights.
        verbose: `fit`'s verbosity.

    Returns:
        A dict: `objective`, `num_patches`, `steps`, `final_loss`, `seconds`.
    """
    import time

    if objective not in OBJECTIVES:
        raise ValueError(f"`objective` must be one of {', '.join(OBJECTIVES)}. Received: objective={objective!r}")
    keras.utils.set_random_seed(seed)
    start = time.time()
    patches = training_patches(config, max_patches=max_patches)
    if objective == "masked":
        pretrainer = MaskedPatchPretrainer(patch_size=patches.shape[1], embedding_dim=config["embedding_dim"])
        dataset = masked_views(patches, batch_size, seed, mask_ratio=mask_ratio)
    else:
        pretrainer = ContrastivePatchPretrainer(embedding_dim=config["embedding_dim"], temperature=temperature)
        dataset = view_pairs(patches, batch_size, seed)
    pretrainer.compile(optimizer=keras.optimizers.Adam(learning_rate))
    history = pretrainer.fit(dataset, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=verbose)
    save_embedder_weights(pretrainer.embedder, out)
    return {"objective": objective, "num_patches": int(len(patches)), "steps": steps,
            "final_loss": float(history.history["loss"][-1]), "seconds": time.time() - start}


# The file a run with `pretrain_steps` > 0 pretrains into, inside its folder.
PRETRAINED_EMBEDDER = "pretrained_embedder.weights.h5"


def pretrain_for_run(config, out, pretrain_steps=0, verbose="auto", **pretrain_arguments):
    """`pretrain_embedder` for `pretrain_steps` steps, seeded by the run's `seed`; `pretrain_steps=0` is off."""
    return pretrain_embedder(config, out, steps=pretrain_steps, seed=config["seed"], verbose=verbose,
                             **pretrain_arguments)


# The recipe keys that chain pretraining and training, and the arguments they set: `pretrain_steps`
# defaults to `pretrain_for_run`'s 0 (off), `pretrain_objective` to `pretrain_embedder`'s objective.
PRETRAINING = Configured(pretrain_for_run, {"pretrain_steps": "pretrain_steps", "pretrain_objective": "objective"},
                         declared_in=(pretrain_embedder,))


def chained_pretraining(config, out_dir, resume=False):
    """What a run pretrains before it trains, checked before any data is read; None when `pretrain_steps` is 0.

    Args:
        config: the run's recipe dict.
        out_dir: the run folder; the weights go to `out_dir/PRETRAINED_EMBEDDER`.
        resume: bool, the run resumes: an existing weights file is reused, not retrained.

    Returns:
        None, or a dict: `weights` (the file), `steps`, `objective`, `reuse`
        (True when resuming and the file exists).
    """
    settings = {**PRETRAINING.defaults(), **{key: config[key] for key in PRETRAINING.keys if key in config}}
    steps, objective = settings["pretrain_steps"], settings["pretrain_objective"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"pretrain_steps: expected a whole number >= 0 (0: no pretraining), e.g. "
                         f"--set pretrain_steps=300. Received: pretrain_steps={steps!r}")
    if not steps:
        return None
    if objective not in OBJECTIVES:
        raise ValueError(f"pretrain_objective must be one of {', '.join(OBJECTIVES)}. "
                         f"Received: pretrain_objective={objective!r}")
    if config.get("embedder_weights") is not None:
        raise ValueError(
            "pretrain_steps > 0 pretrains the embedder the run starts from, embedder_weights loads one: "
            "set one of them (--set pretrain_steps=0 or --set embedder_weights=none). "
            f"Received: pretrain_steps={steps}, embedder_weights={config['embedder_weights']!r}"
        )
    from patchpu_keras.training.builders import DEFAULT_MODEL

    if config.get("model", DEFAULT_MODEL) != "patch":
        raise ValueError(f"pretrain_steps pretrains the patch model's embedder; use model=patch or "
                         f"pretrain_steps=0. Received: model={config['model']!r}, pretrain_steps={steps}")
    weights = os.path.join(out_dir, PRETRAINED_EMBEDDER)
    return {"weights": weights, "steps": steps, "objective": objective,
            "reuse": bool(resume and os.path.exists(weights))}
