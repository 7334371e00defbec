from patchpu_keras.models.cam_classifier import CAMClassifier
from patchpu_keras.models.loading import SUPPORTED_MODELS, load_model
from patchpu_keras.models.multi_label_model import MultiLabelModel
from patchpu_keras.models.patch_pu_classifier import PatchPUClassifier

__all__ = ["CAMClassifier", "MultiLabelModel", "PatchPUClassifier", "SUPPORTED_MODELS", "load_model"]
