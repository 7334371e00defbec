"""Optimizers with per-variable learning-rate multipliers: LAMB (the paper's) and Adam (the peers')."""

from patchpu_keras.optimizers.adam import Adam
from patchpu_keras.optimizers.lamb import Lamb
from patchpu_keras.optimizers.learning_rate_multipliers import LearningRateMultipliers

__all__ = ["Adam", "Lamb", "LearningRateMultipliers"]
