"""Data: datasets on disk (VOC, COCO, TFDS, your folders), annotation regimes, tf.data pipelines."""

from patchpu_keras.data.dataset_index import DatasetIndex
from patchpu_keras.data.file_problem import FileProblem
from patchpu_keras.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist
from patchpu_keras.data.image_split import ImageSplit
from patchpu_keras.data.mosaics import compose_mosaics, fashion_mnist_mosaics
from patchpu_keras.data.pipeline import array_dataset, image_dataset
from patchpu_keras.data.recipe_data import EVALUATED_ON, RecipeData, load_data
from patchpu_keras.data.regimes import REGIMES, observe, partial, single_positive
from patchpu_keras.data.sources import SOURCES, detect_source, load_index

__all__ = [
    "CLASS_NAMES",
    "DatasetIndex",
    "EVALUATED_ON",
    "FileProblem",
    "ImageSplit",
    "REGIMES",
    "RecipeData",
    "SOURCES",
    "array_dataset",
    "compose_mosaics",
    "detect_source",
    "fashion_mnist_mosaics",
    "image_dataset",
    "load_fashion_mnist",
    "load_data",
    "load_index",
    "observe",
    "partial",
    "single_positive",
]
