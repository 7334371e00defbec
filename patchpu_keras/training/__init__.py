"""Training: builders (recipe dict -> model, optimizer, loss) and the run (`train`)."""

from patchpu_keras.training.builders import (
    MODEL_DEFAULTS,
    RUN_DEFAULTS,
    TRAINING_DEFAULTS,
    TrainingBudget,
    build_loss,
    build_model,
    build_optimizer,
    method_defaults,
    training_budget,
)
from patchpu_keras.training.best_epoch import BestEpoch
from patchpu_keras.training.plan import RunPlan, describe_plan, plan_run
from patchpu_keras.training.run import run_plan, train
from patchpu_keras.training.run_progress import RunProgress
from patchpu_keras.training.non_finite_loss import StopOnNonFiniteLoss
from patchpu_keras.training.run_checkpoint import NonFiniteLossError, RunCheckpoint, read_checkpoint

__all__ = [
    "BestEpoch",
    "RunPlan",
    "RunProgress",
    "describe_plan",
    "plan_run",
    "run_plan",
    "MODEL_DEFAULTS",
    "NonFiniteLossError",
    "RUN_DEFAULTS",
    "RunCheckpoint",
    "StopOnNonFiniteLoss",
    "TRAINING_DEFAULTS",
    "TrainingBudget",
    "build_loss",
    "build_model",
    "build_optimizer",
    "method_defaults",
    "read_checkpoint",
    "train",
    "training_budget",
]
