import keras
import numpy as np
import pytest

import recipes
from patchpu_keras.optimizers import Adam
from patchpu_keras.training import build_model, build_optimizer
from tests.configs import TINY_PAPER, as_overrides


def _peers_cam(**changes):
    config = recipes.apply_overrides(
        recipes.load("voc_peers_ll_r"),
        as_overrides({**TINY_PAPER, "backbone": "tiny", "backbone_weights": None, **changes}),
    )
    return config, build_model(config, num_labels=3)


def test_the_head_trains_at_ten_times_the_backbones_rate_with_adam():
    config, model = _peers_cam()
    optimizer = build_optimizer(config, steps_per_epoch=10, model=model)
    assert isinstance(optimizer, Adam) and not optimizer.weight_decay
    assert set(optimizer.learning_rate_multipliers) == {"cam_head/kernel", "cam_head/bias"}
    variables = model.trainable_variables
    before = [keras.ops.convert_to_numpy(v) for v in variables]
    gradients = [np.full(v.shape, 0.3, "float32") for v in variables]
    optimizer.apply(gradients, variables)
    # Adam's first step moves every entry by lr (the gradient's scale cancels): 1e-5, the head 1e-4.
    for variable, old in zip(variables, before):
        step = np.abs(keras.ops.convert_to_numpy(variable) - old)
        expected = 1e-4 if variable.path.startswith("cam_head/") else 1e-5
        np.testing.assert_allclose(step, expected, rtol=0.02, err_msg=variable.path)  # float32 steps


def test_a_head_multiplier_needs_the_model_and_the_optimizer_must_exist():
    config, model = _peers_cam()
    with pytest.raises(ValueError, match="needs the model"):
        build_optimizer(config, 10)
    with pytest.raises(ValueError, match="Unknown optimizer.*Received: optimizer='sgd'"):
        build_optimizer({**config, "optimizer": "sgd"}, 10, model=model)
    # The paper's patch model: LAMB, every variable at the plain rate.
    demo = recipes.load("demo")
    assert build_optimizer(demo, 10, model=build_model({**demo, **TINY_PAPER}, 3)).learning_rate_multipliers == {}
