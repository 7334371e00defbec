"""`build_optimizer` and `build_model`: what a recipe's keys become."""

import keras
import numpy as np
import pytest

import recipes
from patchpu_keras import CAMClassifier, TrainingModel, losses
from patchpu_keras.losses.role import ESTIMATES
from patchpu_keras.training import build_model, build_optimizer
from patchpu_keras.training.builders import method_defaults
from tests.conftest import to_numpy
from tests.configs import TINY

CONFIG = {"learning_rate": 1e-3, "lr_decay_epochs": 2, "lr_decay_rate": 0.5, "weight_decay": 1e-4}


def _variables(rng, **shapes):
    return {
        name: keras.Variable(rng.normal(size=shape).astype("float32"), name=name)
        for name, shape in shapes.items()
    }


def test_learning_rate_halves_every_lr_decay_epochs_times_steps_per_epoch():
    optimizer = build_optimizer(CONFIG, steps_per_epoch=3)  # decays every 2 x 3 = 6 steps
    expected = {0: 1e-3, 5: 1e-3, 6: 5e-4, 11: 5e-4, 12: 2.5e-4, 30: 1e-3 / 32}
    for iterations, learning_rate in expected.items():
        optimizer.iterations.assign(iterations)
        assert float(to_numpy(optimizer.learning_rate)) == pytest.approx(learning_rate, rel=1e-6), iterations
    # Fractional epochs count in steps, and a decay never comes sooner than every step.
    optimizer = build_optimizer({**CONFIG, "lr_decay_epochs": 0.5}, steps_per_epoch=4)
    optimizer.iterations.assign(2)
    assert float(to_numpy(optimizer.learning_rate)) == pytest.approx(5e-4, rel=1e-6)
    optimizer = build_optimizer({**CONFIG, "lr_decay_epochs": 0.1}, steps_per_epoch=4)
    optimizer.iterations.assign(1)
    assert float(to_numpy(optimizer.learning_rate)) == pytest.approx(5e-4, rel=1e-6)


def test_roles_table_gets_no_weight_decay(rng):
    optimizer = build_optimizer({**CONFIG, "weight_decay": 0.5}, steps_per_epoch=1, loss=losses.ROLE(1.38))
    variables = _variables(rng, **{ESTIMATES: (4, 3), "kernel": (3, 2)})
    before = {name: to_numpy(variable).copy() for name, variable in variables.items()}
    # A zero gradient makes LAMB's own step zero: only weight decay can move a variable.
    optimizer.apply_gradients([(keras.ops.zeros(v.shape), v) for v in variables.values()])
    np.testing.assert_array_equal(to_numpy(variables[ESTIMATES]), before[ESTIMATES])
    np.testing.assert_allclose(to_numpy(variables["kernel"]), before["kernel"] * (1 - 0.5 * 1e-3), rtol=1e-6)
    # Without a stateful loss nothing is excluded: the same name decays too.
    plain = build_optimizer({**CONFIG, "weight_decay": 0.5}, steps_per_epoch=1)
    table = _variables(rng, **{ESTIMATES: (4, 3)})[ESTIMATES]
    start = to_numpy(table).copy()
    plain.apply_gradients([(keras.ops.zeros(table.shape), table)])
    np.testing.assert_allclose(to_numpy(table), start * (1 - 0.5 * 1e-3), rtol=1e-6)


def test_roles_learning_rate_multiplier_gives_ten_times_keras_lambs_update(rng):
    config = {**CONFIG, "weight_decay": 1e-4}
    ours = build_optimizer(config, steps_per_epoch=1, loss=losses.ROLE(1.38))
    start = {ESTIMATES: rng.normal(size=(4, 3)).astype("float32"), "kernel": rng.normal(size=(3, 2)).astype("float32")}
    gradients = {name: rng.normal(size=value.shape).astype("float32") for name, value in start.items()}

    def step(optimizer, names):
        variables = {name: keras.Variable(start[name], name=name) for name in names}
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(gradients[name]), variables[name]) for name in names])
        return {name: to_numpy(variables[name]) - start[name] for name in names}

    got = step(ours, [ESTIMATES, "kernel"])
    # The table takes Adam's step (no trust ratio, no decay) at 10x the learning rate;
    # Adam's step is linear in the learning rate. The model's kernel takes Keras' LAMB step.
    # (Keras' Adam adds epsilon before the bias correction of the first step, LAMB's 1e-6 after it.)
    table = step(keras.optimizers.Adam(1e-3, epsilon=1e-6 * np.sqrt(1 - 0.999)), [ESTIMATES])[ESTIMATES]
    kernel = step(keras.optimizers.Lamb(1e-3, weight_decay=1e-4), ["kernel"])["kernel"]
    assert np.abs(table).min() > 0
    # Steps of ~1e-2 on float32 values of ~1: rounding is ~1e-7 per step.
    np.testing.assert_allclose(got[ESTIMATES], 10 * table, rtol=0, atol=2e-6)
    np.testing.assert_allclose(got["kernel"], kernel, rtol=0, atol=2e-7)


def test_roles_table_steps_do_not_grow_with_its_norm(rng):
    """Under LAMB's trust ratio a table's step is proportional to its norm, so logits pushed one way grow
    geometrically; ROLE's table takes Adam's step, whatever its scale."""
    gradient = rng.normal(size=(50, 3)).astype("float32")
    gradient[4:] = 0.0  # a batch touches a few rows of the table

    def first_rows_step(optimizer, scale):
        table = keras.Variable(scale * rng.normal(size=(50, 3)).astype("float32"), name=ESTIMATES)
        start = to_numpy(table).copy()
        optimizer.apply_gradients([(gradient, table)])
        return np.abs(to_numpy(table) - start)[:4].max()

    config = {**CONFIG, "weight_decay": 0}  # (PyTorch's Keras cannot decay an empty list of variables)
    role = lambda: build_optimizer(config, steps_per_epoch=1, loss=losses.ROLE(1.38))  # noqa: E731
    small, large = first_rows_step(role(), 1.0), first_rows_step(role(), 1000.0)
    np.testing.assert_allclose(large, small, rtol=1e-3)
    np.testing.assert_allclose(small, 10 * 1e-3, rtol=1e-3)  # Adam's first step: lr x sign(gradient)
    # Plain LAMB (the same table, no exclusion) steps 1,000 times further on a 1,000 times larger table.
    lamb = lambda: build_optimizer(config, steps_per_epoch=1)  # noqa: E731
    np.testing.assert_allclose(first_rows_step(lamb(), 1000.0) / first_rows_step(lamb(), 1.0), 1000.0, rtol=0.2)


def test_a_reloaded_model_keeps_the_multiplier_and_the_tables_exclusion_from_weight_decay(rng, tmp_path):
    loss = losses.ROLE(1.38)
    observed = np.eye(4, 3, dtype="float32")
    model = TrainingModel(CAMClassifier.create(3, backbone="tiny", image_size=16), loss.make_state(observed))
    model.compile(optimizer=build_optimizer({**CONFIG, "weight_decay": 0.5}, 1, loss), loss=loss)
    model.optimizer.build(model.trainable_variables)
    # The optimizer's config round trip, as a resumed run rebuilds it (the checkpoint holds its variables).
    loaded = TrainingModel(CAMClassifier.create(3, backbone="tiny", image_size=16), loss.make_state(observed))
    loaded.compile(optimizer=keras.optimizers.deserialize(keras.optimizers.serialize(model.optimizer)), loss=loss)
    assert loaded.optimizer.learning_rate_multipliers == {ESTIMATES: 10.0}
    assert loaded.optimizer.layer_adaptation_excluded_names == [ESTIMATES]
    # The table and the head's kernel (each step of JAX's eager LAMB compiles per shape).
    variables = [v for v in loaded.trainable_variables if v.name == ESTIMATES or v.path == "cam_head/kernel"]
    assert len(variables) == 2
    before = [to_numpy(v).copy() for v in variables]
    loaded.optimizer.apply_gradients([(keras.ops.zeros(v.shape), v) for v in variables])
    for variable, start in zip(variables, before):
        if variable.name == ESTIMATES:
            np.testing.assert_array_equal(to_numpy(variable), start)
        else:
            np.testing.assert_allclose(to_numpy(variable), start * (1 - 0.5 * 1e-3), rtol=1e-6, atol=1e-12)


def test_jit_compile_auto_is_the_fastest_measured_choice_and_set_takes_bools():
    from patchpu_keras.training.builders import resolve_jit_compile

    # No GPU in the test suite: XLA only where Keras would otherwise run op by op (JAX).
    assert resolve_jit_compile("auto") is (keras.backend.backend() == "jax")
    assert resolve_jit_compile(True) is True and resolve_jit_compile(False) is False
    with pytest.raises(ValueError, match=r"True, False or 'auto'. Received: jit_compile='xla'"):
        resolve_jit_compile("xla")
    config = recipes.load("demo")
    assert config["jit_compile"] == "auto"
    for text, value in (("true", True), ("false", False), ("auto", "auto")):
        assert recipes.apply_overrides(config, [f"jit_compile={text}"])["jit_compile"] == value
    with pytest.raises(ValueError, match="expects a number"):
        recipes.apply_overrides(config, ["learning_rate=true"])


def test_the_attention_keys_reach_eq_1():
    """`attention_score_scale`, `attention_learn_temperature` and `codebook_init_mode` act on eq. (1)."""
    config = {**method_defaults(), **TINY, "stride": None, "downsample_factor": 2, "seed": 0}
    assert (config["attention_score_scale"], config["attention_learn_temperature"]) == (1.0, False)
    assert config["codebook_init_mode"] == "fan_out"
    patch_embeddings = np.random.default_rng(0).normal(size=(2, 5, 16)).astype("float32")
    paper = build_model(config, num_labels=3)
    halved = build_model({**config, "attention_score_scale": 0.5}, num_labels=3)
    halved.attention.set_weights(paper.attention.get_weights())
    # Same codebooks: halving the scores halves the log-attention around its mean over patches.
    log_paper = np.log(to_numpy(paper.attention(patch_embeddings)[1]))
    log_halved = np.log(to_numpy(halved.attention(patch_embeddings)[1]))
    centred = lambda x: x - x.mean(axis=-1, keepdims=True)  # noqa: E731
    assert np.abs(centred(log_paper)).max() > 1e-2  # not uniform, so the check can fail
    np.testing.assert_allclose(centred(log_halved), 0.5 * centred(log_paper), atol=1e-4)
    assert halved.get_config()["attention_score_scale"] == 0.5

    learned = build_model({**config, "attention_learn_temperature": True}, num_labels=3)
    assert learned.attention.temperature is not None and paper.attention.temperature is None
    assert any("temperature" in v.path for v in learned.trainable_variables)

    def codebook_norm(model):
        return np.linalg.norm(to_numpy(model.attention.label_codebooks), axis=-1).mean()

    fan_in = build_model({**config, "codebook_init_mode": "fan_in"}, num_labels=3)
    # (L, F) = (3, 16) codebooks: rows of norm ~1 under fan_out, ~sqrt(F / L) = 2.3 under fan_in.
    assert codebook_norm(fan_in) > 1.5 * codebook_norm(paper)
    with pytest.raises(ValueError, match="codebook_init_mode"):
        build_model({**config, "codebook_init_mode": "uniform"}, num_labels=3)
