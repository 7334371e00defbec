import keras
import numpy as np
from keras import ops

INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5")


@keras.saving.register_keras_serializable(package="patchpu_keras")
class MultiResolutionPatches(keras.layers.Layer):
    """Cuts an image into square patches at several resolutions.

    Level 0 is the input; level r is level r-1 resized by `1 / downsample_factor`
    (so level r is the input resized by `1 / downsample_factor**r`). Each level is
    cut into a grid of `patch_size x patch_size` windows moved by `stride`;
    windows that would cross the border are dropped. Patches of all levels are
    concatenated along one axis, level 0 first, row-major within a level.

    Resizing level by level (rather than the input straight to each size) makes a
    factor-2 bilinear resize an exact 2x2 average, so coarse levels are not
    aliased.

    Args:
        patch_size: int, side of a square patch in pixels.
        stride: int, distance between two neighbouring windows. `stride ==
            patch_size` gives non-overlapping patches.
        num_resolutions: int, number of levels (>= 1).
        downsample_factor: number > 1, size ratio between two consecutive levels.
        interpolation: resize method, one of `"bilinear"`, `"nearest"`,
            `"bicubic"`, `"area"`, `"lanczos3"`, `"lanczos5"`.
        max_patches_per_resolution: optional int. During training only, each
            level keeps this many of its patches, drawn at random (the same
            subset for every image of the batch). Inference uses every patch.
        seed: optional int seed for that draw.

    Call arguments:
        images: float tensor `(batch, height, width, channels)`.
        training: bool, whether patches are subsampled.

    Returns:
        Tensor `(batch, num_patches, patch_size, patch_size, channels)`.

    Example:
    >>> layer = MultiResolutionPatches(patch_size=64, stride=64, num_resolutions=3)
    >>> layer(np.zeros((1, 640, 640, 3))).shape
    (1, 129, 64, 64, 3)

    Reference:
        Jouanneau et al., "A Patch-Based Architecture for Multi-Label
        Classification from Single Positive Annotations", VISAPP 2023, sec. 3.1.1.
    """

    def __init__(
        self,
        patch_size=64,
        stride=64,
        num_resolutions=3,
        downsample_factor=2,
        interpolation="bilinear",
        max_patches_per_resolution=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(patch_size) != patch_size or patch_size < 1:
            raise ValueError(
                f"`patch_size` must be a positive integer. Received: patch_size={patch_size}"
            )
        if int(stride) != stride or stride < 1:
            raise ValueError(f"`stride` must be a positive integer. Received: stride={stride}")
        if int(num_resolutions) != num_resolutions or num_resolutions < 1:
            raise ValueError(
                "`num_resolutions` must be an integer >= 1. "
                f"Received: num_resolutions={num_resolutions}"
            )
        if num_resolutions > 1 and not downsample_factor > 1:
            raise ValueError(
                "`downsample_factor` must be > 1. "
                f"Received: downsample_factor={downsample_factor}"
            )
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"`interpolation` must be one of {INTERPOLATIONS}. "
                f"Received: interpolation={interpolation!r}"
            )
        if max_patches_per_resolution is not None and max_patches_per_resolution < 1:
            raise ValueError(
                "`max_patches_per_resolution` must be None or >= 1. "
                f"Received: max_patches_per_resolution={max_patches_per_resolution}"
            )
        self.patch_size = int(patch_size)
        self.stride = int(stride)
        self.num_resolutions = int(num_resolutions)
        self.downsample_factor = downsample_factor
        self.interpolation = interpolation
        self.max_patches_per_resolution = max_patches_per_resolution
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    # --- Geometry (pure Python, used by the model and by explanations) ---

    def level_sizes(self, height, width):
        """Returns the `(height, width)` of every level for an input size."""
        sizes = [(int(height), int(width))]
        for _ in range(1, self.num_resolutions):
            h, w = sizes[-1]
            sizes.append((int(h / self.downsample_factor), int(w / self.downsample_factor)))
        return sizes

    def level_grids(self, height, width):
        """Returns the `(rows, columns)` of the patch grid of every level."""
        grids = []
        for h, w in self.level_sizes(height, width):
            rows = (h - self.patch_size) // self.stride + 1 if h >= self.patch_size else 0
            cols = (w - self.patch_size) // self.stride + 1 if w >= self.patch_size else 0
            grids.append((rows, cols))
        return grids

    def num_patches(self, height, width, training=False):
        """Number of patches produced for an input of this size."""
        total = 0
        for rows, cols in self.level_grids(height, width):
            count = rows * cols
            if training and self.max_patches_per_resolution is not None:
                count = min(count, self.max_patches_per_resolution)
            total += count
        return total

    def patch_boxes(self, height, width):
        """Boxes of the inference-time patches in input pixel coordinates.

        Returns:
            A tuple `(boxes, levels)`: float array `(num_patches, 4)` of
            `(top, left, bottom, right)` and int array `(num_patches,)` of level
            indices, in the order of the layer's output.
        """
        boxes, levels = [], []
        sizes = self.level_sizes(height, width)
        for level, ((h, w), (rows, cols)) in enumerate(
            zip(sizes, self.level_grids(height, width))
        ):
            scale_y, scale_x = height / h, width / w
            for i in range(rows):
                for j in range(cols):
                    top, left = i * self.stride, j * self.stride
                    boxes.append(
                        (
                            top * scale_y,
                            left * scale_x,
                            (top + self.patch_size) * scale_y,
                            (left + self.patch_size) * scale_x,
                        )
                    )
                    levels.append(level)
        return np.asarray(boxes, dtype="float32").reshape(-1, 4), np.asarray(levels, "int32")

    def _check_size(self, height, width):
        grids = self.level_grids(height, width)
        if any(rows == 0 or cols == 0 for rows, cols in grids):
            raise ValueError(
                f"Every level must hold at least one {self.patch_size}x{self.patch_size} "
                f"patch, but levels of a {height}x{width} input have sizes "
                f"{self.level_sizes(height, width)}. Use a larger image, a smaller "
                "patch_size or fewer resolutions. Received: "
                f"image size=({height}, {width}), patch_size={self.patch_size}, "
                f"num_resolutions={self.num_resolutions}, "
                f"downsample_factor={self.downsample_factor}"
            )
        return grids

    # --- Computation ---

    def _cut(self, images, rows, cols):
        channels = images.shape[-1]
        p = self.patch_size
        if self.stride == p:
            # Non-overlapping windows tile the cropped image: a reshape (free)
            # and one transpose, instead of two gathers that build index
            # tensors and a gather gradient (a scatter) in training.
            x = images[:, : rows * p, : cols * p, :]
            x = ops.reshape(x, (-1, rows, p, cols, p, channels))
        else:
            # Gathering rows then columns with static index grids is exact for
            # any stride and needs nothing backend-specific.
            offsets = np.arange(p)
            row_index = (np.arange(rows)[:, None] * self.stride + offsets[None, :]).astype("int32")
            col_index = (np.arange(cols)[:, None] * self.stride + offsets[None, :]).astype("int32")
            x = ops.take(images, row_index, axis=1)  # (B, rows, p, W, C)
            x = ops.take(x, col_index, axis=3)  # (B, rows, p, cols, p, C)
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (-1, rows * cols, p, p, channels))

    def call(self, images, training=None):
        height, width = images.shape[1], images.shape[2]
        if height is None or width is None:
            raise ValueError(
                "MultiResolutionPatches needs a static image size. "
                f"Received: images.shape={images.shape}"
            )
        grids = self._check_size(height, width)
        sizes = self.level_sizes(height, width)
        level = images
        outputs = []
        for index, ((h, w), (rows, cols)) in enumerate(zip(sizes, grids)):
            if index > 0:
                level = ops.image.resize(level, (h, w), interpolation=self.interpolation)
            patches = self._cut(level, rows, cols)
            count = rows * cols
            keep = self.max_patches_per_resolution
            if training and keep is not None and keep < count:
                scores = keras.random.uniform((count,), seed=self.seed_generator)
                chosen = ops.argsort(scores)[:keep]
                patches = ops.take(patches, chosen, axis=1)
            outputs.append(patches)
        return ops.concatenate(outputs, axis=1) if len(outputs) > 1 else outputs[0]

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        count = self.num_patches(height, width) if height and width else None
        return (batch, count, self.patch_size, self.patch_size, channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "patch_size": self.patch_size,
                "stride": self.stride,
                "num_resolutions": self.num_resolutions,
                "downsample_factor": self.downsample_factor,
                "interpolation": self.interpolation,
                "max_patches_per_resolution": self.max_patches_per_resolution,
                "seed": self.seed,
            }
        )
        return config
