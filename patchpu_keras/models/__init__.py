from patchpu_keras.models.patch_pu_classifier import PatchPUClassifier

__all__ = ["PatchPUClassifier"]
