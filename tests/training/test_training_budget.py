import keras
import numpy as np

import recipes
from patchpu_keras.training import build_optimizer, training_budget

PAPER = {"epochs": 25, "batch_size": 16, "lr_decay_epochs": 5, "learning_rate": 1e-3,
         "lr_decay_rate": 0.5, "weight_decay": 1e-4}


def test_the_papers_schedule_holds_exactly_without_min_steps():
    # VOC 2012 train: 5,717 images -> 358 steps an epoch, decays every 5 epochs.
    budget = training_budget(recipes.load("voc_wn"), 5717)
    assert recipes.load("voc_wn")["min_steps"] is None
    assert budget == (25, 358, 5 * 358) and budget.total_steps == 25 * 358


def test_min_steps_stretches_small_data_and_the_decay_follows_the_steps():
    # 500 images: 32 steps an epoch; 3,000 steps need 94 epochs, decays every fifth of the run.
    budget = training_budget({**PAPER, "min_steps": 3000}, 500)
    assert budget.steps_per_epoch == 32 and budget.epochs == 94
    assert budget.lr_decay_steps == round(94 * 32 / 5) == 602
    # Large data already has the steps: the recipe's own schedule.
    assert training_budget({**PAPER, "min_steps": 3000}, 8000) == (25, 500, 2500)


def test_the_optimizer_decays_at_the_budgets_steps():
    budget = training_budget({**PAPER, "min_steps": 3000}, 500)
    optimizer = build_optimizer(PAPER, budget.steps_per_epoch, lr_decay_steps=budget.lr_decay_steps)
    schedule = optimizer._learning_rate
    rates = [float(keras.ops.convert_to_numpy(schedule(step))) for step in (0, 601, 602, 1204, 3007)]
    np.testing.assert_allclose(rates, [1e-3, 1e-3, 5e-4, 2.5e-4, 1e-3 / 2**4], rtol=1e-6)
