"""Data: the built-in Fashion-MNIST mosaics, annotation regimes and tf.data pipelines."""

from patchpu_keras.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist
from patchpu_keras.data.mosaics import compose_mosaics, fashion_mnist_mosaics
from patchpu_keras.data.regimes import observe, single_positive

__all__ = [
    "CLASS_NAMES",
    "compose_mosaics",
    "fashion_mnist_mosaics",
    "load_fashion_mnist",
    "observe",
    "single_positive",
]
