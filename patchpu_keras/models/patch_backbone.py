import os

import keras

from patchpu_keras.layers import ImagePreprocessing, MultiResolutionPatches, PatchEmbedder
from patchpu_keras.layers.image_preprocessing import check_scaling
from patchpu_keras.models import pretrained
from patchpu_keras.models.multi_label_model import policy_scope


@keras.saving.register_keras_serializable(package="patchpu_keras")
class PatchBackbone(keras.Model):
    """Images to patch embeddings: preprocessing, multi-resolution patches, EfficientNet-B0 embedder.

    The feature extractor of the patch-based architecture, without its label
    head: images are made RGB of size `image_size` and scaled
    (`ImagePreprocessing`), cut into patches at several resolutions (sec.
    3.1.1) and embedded by an EfficientNet-B0 trunk (sec. 3.1.2). It saves,
    loads and runs alone; `PatchPUClassifier` is the task over it.

    Args:
        image_size: int, side of the square image the patches are cut from.
        patch_size: int, patch side (64 in the paper).
        stride: int, patch stride; None means `patch_size`.
        num_resolutions: int, resolution levels (3 in the paper).
        downsample_factor: size ratio between levels (2 in the paper).
        embedding_dim: int, F (256 in the paper).
        drop_connect_rate: float, EfficientNet drop-connect rate.
        max_patches_per_resolution: optional int, random patch subsampling
            per level during training (sec. 3.1.1).
        seed: optional int, seed of the patch subsampling.
        preprocessing: input scaling (`ImagePreprocessing(scaling=...)`);
            None means what the embedder's weights expect: `"torch"` for
            Keras' ImageNet EfficientNet-B0, `"unit"` ([0, 1]) from scratch.
        embedder_weights: `None` (from scratch, as in the paper), `"imagenet"`
            (Keras' ImageNet EfficientNet-B0, downloaded the first time;
            without network, an error says how to make a local file) or the
            path of a `.weights.h5` / `.h5` file of an EfficientNet-B0, loaded
            offline. Its stem and blocks up to `block3b_add` are copied into
            the embedder. Recorded in the config as provenance only: loading
            a saved backbone (or `from_config`) never downloads or reads it.
        folded_batch_norm: bool; True for the inference-only backbone that
            `fold_batch_norm()` returns (batch norms folded into the
            convolutions; refuses `training=True`).
        rematerialize_embedder: bool; True recomputes the embedder's
            activations in the backward pass (`PatchEmbedder(rematerialize=True)`):
            the same training with a lower peak memory (docs/performance.md).

    Call arguments:
        images: `(batch, height, width, channels)`, values in [0, 255], 1 to 4
            channels, any size (resized to `image_size`).
        training: bool.

    Returns:
        Patch embeddings `(batch, num_patches, embedding_dim)`.

    Example:
    ```python
    backbone = PatchBackbone(image_size=640)
    backbone(images).shape  # (batch, 129, 256)
    backbone.save("backbone.keras")
    ```

    Reference:
        Jouanneau, Bugeau, Palyart, Papadakis, Vézard, "A Patch-Based
        Architecture for Multi-Label Classification from Single Positive
        Annotations", VISAPP 2023, sec. 3.1.1-3.1.2.
    """

    def __init__(
        self,
        image_size=640,
        patch_size=64,
        stride=None,
        num_resolutions=3,
        downsample_factor=2,
        embedding_dim=256,
        drop_connect_rate=0.2,
        max_patches_per_resolution=None,
        seed=None,
        preprocessing=None,
        embedder_weights=None,
        folded_batch_norm=False,
        rematerialize_embedder=False,
        **kwargs,
    ):
        if folded_batch_norm and embedder_weights is not None:
            raise ValueError(
                "A backbone with folded batch norms is made from a built one by `fold_batch_norm()`; "
                "build it with `embedder_weights` unfolded, then fold it. "
                f"Received: folded_batch_norm=True, embedder_weights={embedder_weights!r}"
            )
        if embedder_weights is not None and embedder_weights != pretrained.IMAGENET:
            embedder_weights = os.fspath(embedder_weights)
        efficientnet = None
        if embedder_weights is not None:
            # Any input size holds the same weights; 32 is the smallest Keras accepts.
            efficientnet = pretrained.application(
                keras.applications.EfficientNetB0, embedder_weights, "embedder_weights", (32, 32, 3)
            )
            if preprocessing is None:
                preprocessing = pretrained.efficientnet_b0_preprocessing(efficientnet)
        super().__init__(**kwargs)
        self.image_size = int(image_size)
        self.patch_size = int(patch_size)
        self.stride = int(stride) if stride is not None else self.patch_size
        self.num_resolutions = num_resolutions
        self.downsample_factor = downsample_factor
        self.embedding_dim = embedding_dim
        self.drop_connect_rate = drop_connect_rate
        self.max_patches_per_resolution = max_patches_per_resolution
        self.seed = seed
        self.preprocessing = preprocessing or "unit"
        check_scaling(self.preprocessing, "preprocessing")
        self.embedder_weights = embedder_weights
        self.folded_batch_norm = bool(folded_batch_norm)
        self.rematerialize_embedder = bool(rematerialize_embedder)

        # === Layers ===
        with policy_scope(self):
            self.image_preprocessing = ImagePreprocessing(
                self.image_size, scaling=self.preprocessing, name="image_preprocessing"
            )
            self.patches = MultiResolutionPatches(
                patch_size=self.patch_size,
                stride=self.stride,
                num_resolutions=num_resolutions,
                downsample_factor=downsample_factor,
                max_patches_per_resolution=max_patches_per_resolution,
                seed=seed,
                name="patches",
            )
            self.patches._check_size(self.image_size, self.image_size)
            self.embedder = PatchEmbedder(
                embedding_dim=embedding_dim,
                drop_connect_rate=drop_connect_rate,
                folded_batch_norm=self.folded_batch_norm,
                rematerialize=self.rematerialize_embedder,
                name="embedder",
            )
            # Every shape is known from the config, so the weights exist as soon as
            # the backbone does (save, load and summary need no sample call).
            self.embedder.build((None, self.num_patches, self.patch_size, self.patch_size, 3))
            if efficientnet is not None:
                self.embedder.copy_efficientnet_b0_weights(efficientnet)
        self.built = True

    @property
    def num_patches(self):
        """Patches per image at inference."""
        return self.patches.num_patches(self.image_size, self.image_size)

    def call(self, images, training=None):
        patches = self.patches(self.image_preprocessing(images), training=training)
        return self.embedder(patches, training=training)

    def fold_batch_norm(self):
        """A copy of this backbone for inference, with the embedder's batch norms folded in.

        In inference each batch norm of the embedder is an affine map per
        channel, which folds into the bias-free convolution before it (see
        `patchpu_keras.layers.mb_conv_block.folded_convolution_weights`). The
        copy has the same config but `folded_batch_norm=True`, computes the
        same outputs up to float rounding with one pass less over each
        activation, saves and loads like any backbone, and refuses training.

        Returns:
            A new `PatchBackbone`; this one is unchanged.
        """
        if self.folded_batch_norm:
            raise ValueError(
                "The batch norms of this backbone are already folded. Received: folded_batch_norm=True"
            )
        folded = type(self).from_config({**self.get_config(), "folded_batch_norm": True})
        folded.embedder.copy_folded_weights(self.embedder)
        return folded

    # === Config ===

    def get_config(self):
        return {
            "name": self.name,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "stride": self.stride,
            "num_resolutions": self.num_resolutions,
            "downsample_factor": self.downsample_factor,
            "embedding_dim": self.embedding_dim,
            "drop_connect_rate": self.drop_connect_rate,
            "max_patches_per_resolution": self.max_patches_per_resolution,
            "seed": self.seed,
            "preprocessing": self.preprocessing,
            "embedder_weights": self.embedder_weights,
            "folded_batch_norm": self.folded_batch_norm,
            "rematerialize_embedder": self.rematerialize_embedder,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # The weights come from the saved file (or start fresh, for a clone): the
        # source is kept as a record only, never downloaded or read again.
        config = dict(config)
        source = config.pop("embedder_weights", None)
        backbone = cls(**config)
        backbone.embedder_weights = source
        return backbone
