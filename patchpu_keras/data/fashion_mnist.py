"""Fashion-MNIST, from the package's vendored subset or a full copy on disk.

Fashion-MNIST is (c) 2017 Zalando SE, MIT licence; see FASHION_MNIST_LICENSE.txt.
"""

import gzip
import os
from importlib import resources

import numpy as np

CLASS_NAMES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
)
# Where Debian's `dataset-fashion-mnist` puts it, then Keras' download cache.
DEFAULT_DIRECTORIES = (
    "/usr/share/datasets/fashion-mnist",
    os.path.expanduser("~/.keras/datasets/fashion-mnist"),
)
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SUBSET_FILE = "fashion_mnist_subset.npz"


def _read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 8:
        raise ValueError(f"{path}: not an IDX file (only {len(data)} bytes).")
    magic = int.from_bytes(data[:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08 or ndim not in (1, 3):
        raise ValueError(
            f"{path}: not an unsigned-byte IDX file of 1 or 3 dimensions. "
            f"Received: magic number 0x{magic:08x}"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape))
    if len(data) - offset != expected:
        raise ValueError(
            f"{path}: header announces shape {shape} ({expected} bytes) but the file "
            f"holds {len(data) - offset} bytes of data."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _find(directory, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}.gz (or {stem}) not found in {directory}. "
        "Install it with `apt-get install dataset-fashion-mnist` (into "
        "/usr/share/datasets/fashion-mnist) or point to a directory holding the "
        "four IDX files, such as Keras' ~/.keras/datasets/fashion-mnist."
    )


def load_fashion_mnist(directory=None):
    """Loads Fashion-MNIST.

    Args:
        directory: `None` for the seeded subset that ships inside the package
            (400 training and 100 test images per class), `"auto"` for the first
            full copy found in `DEFAULT_DIRECTORIES`, or a directory holding the
            four IDX files (gzipped or not), as Debian's package and Keras'
            download both do.

    Returns:
        A dict with `train_images` `(n, 28, 28)` uint8, `train_labels` `(n,)`,
        `test_images`, `test_labels` and `class_names`.
    """
    if directory is None:
        with resources.files(__package__).joinpath(SUBSET_FILE).open("rb") as handle:
            with np.load(handle) as data:
                arrays = {key: data[key] for key in FILES}
    else:
        if directory == "auto":
            found = [d for d in DEFAULT_DIRECTORIES if os.path.isdir(d)]
            if not found:
                raise FileNotFoundError(
                    f"No full Fashion-MNIST copy in {list(DEFAULT_DIRECTORIES)}. "
                    "Install it with `apt-get install dataset-fashion-mnist`."
                )
            directory = found[0]
        if not os.path.isdir(directory):
            raise FileNotFoundError(
                f"Fashion-MNIST directory {directory} does not exist. "
                "Install it with `apt-get install dataset-fashion-mnist`."
            )
        arrays = {key: _read_idx(_find(directory, stem)) for key, stem in FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels) or images.shape[1:] != (28, 28):
            raise ValueError(
                f"Fashion-MNIST {split} split is inconsistent. Received: "
                f"images.shape={images.shape}, labels.shape={labels.shape}"
            )
        if labels.size and labels.max() >= len(CLASS_NAMES):
            raise ValueError(
                f"Fashion-MNIST {split} labels must be in 0..9. Received: max={labels.max()}"
            )
    return {**arrays, "class_names": list(CLASS_NAMES)}


def make_subset(directory, path, train_per_class=400, test_per_class=100, seed=0):
    """Writes the seeded, class-balanced subset that ships in the package."""
    full = load_fashion_mnist(directory)
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = full[f"{split}_labels"]
        chosen = np.sort(
            np.concatenate(
                [
                    rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
                    for c in range(len(CLASS_NAMES))
                ]
            )
        )
        arrays[f"{split}_images"] = full[f"{split}_images"][chosen]
        arrays[f"{split}_labels"] = labels[chosen]
    np.savez_compressed(path, **arrays)
    return arrays
