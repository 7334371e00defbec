"""The example of docs/extending.md, "Train with a stateful loss in your own code", runs as written."""

import os
import re

import keras
import numpy as np

from tests.conftest import REPO_ROOT, to_numpy

SECTION = "## Train with a stateful loss in your own code"


def _example():
    text = open(os.path.join(REPO_ROOT, "docs", "extending.md")).read()
    section = text[text.index(SECTION):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_documented_example_trains_the_table_and_saves_the_model_without_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(_example(), "docs/extending.md", "exec"), namespace)
    state, model = namespace["state"], namespace["model"]
    table = to_numpy(state.table("label_estimate_logits"))
    start = to_numpy(namespace["loss"].make_state(namespace["observed_labels"]).table("label_estimate_logits"))
    assert np.all(table != start)  # every image was in a batch: every estimate trained
    assert int(to_numpy(state.epoch)) == 1  # the callback ran: the second epoch is epoch 1
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert [v.path for v in loaded.weights] == [v.path for v in model.weights]
    assert not any("label_estimate" in v.path for v in loaded.weights)
