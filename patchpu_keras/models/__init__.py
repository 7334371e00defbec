from patchpu_keras.models.cam_backbone import CAMBackbone
from patchpu_keras.models.cam_classifier import CAMClassifier
from patchpu_keras.models.loading import SUPPORTED_MODELS, load_model
from patchpu_keras.models.multi_label_model import MultiLabelModel
from patchpu_keras.models.patch_backbone import PatchBackbone
from patchpu_keras.models.patch_pu_classifier import PatchPUClassifier
from patchpu_keras.models.training_model import TrainingModel

__all__ = [
    "CAMBackbone",
    "CAMClassifier",
    "MultiLabelModel",
    "PatchBackbone",
    "PatchPUClassifier",
    "SUPPORTED_MODELS",
    "TrainingModel",
    "load_model",
]
