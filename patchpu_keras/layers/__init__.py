"""Layers of the patch-based architecture (Jouanneau et al., VISAPP 2023)."""

from patchpu_keras.layers.image_preprocessing import ImagePreprocessing
from patchpu_keras.layers.label_codebook_attention import LabelCodebookAttention
from patchpu_keras.layers.mb_conv_block import MBConvBlock
from patchpu_keras.layers.multi_resolution_patches import MultiResolutionPatches
from patchpu_keras.layers.patch_embedder import PatchEmbedder
from patchpu_keras.layers.softmax_label_classifier import SoftmaxLabelClassifier

__all__ = [
    "ImagePreprocessing",
    "LabelCodebookAttention",
    "MBConvBlock",
    "MultiResolutionPatches",
    "PatchEmbedder",
    "SoftmaxLabelClassifier",
]
