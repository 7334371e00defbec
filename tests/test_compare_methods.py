"""bench/compare_methods.py: its runs are valid `cli.py train` commands, and a tiny table runs."""

import json
import os
import subprocess
import sys

import keras
import pytest

import recipes
from tests.conftest import REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, "bench"))
import compare_methods  # noqa: E402
import schedule_study  # noqa: E402


@pytest.mark.parametrize("method, model, overrides", compare_methods.RUNS)
def test_every_run_is_a_cli_command_that_sets_what_it_means(method, model, overrides, tmp_path):
    settings = {
        **compare_methods.BENCHMARK, "expected_positives": 2.27,
        **compare_methods.MODELS[model][1], **overrides, "seed": 2,
    }
    command = compare_methods.train_command(settings, str(tmp_path))
    assert command[1:5] == [os.path.join(REPO_ROOT, "cli.py"), "train", "--recipe", "demo"]
    assignments = [command[i + 1] for i, word in enumerate(command) if word == "--set"]
    # What cli.py does with them: the demo recipe with every setting, of the right type.
    config = recipes.apply_overrides(recipes.load("demo"), assignments)
    assert {key: config[key] for key in settings} == settings
    assert len(assignments) == len(settings)


@pytest.mark.large
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the benchmark only orchestrates `cli.py train` runs (tested on every backend); "
    "checked once, on TensorFlow",
)
def test_a_tiny_table_runs_resumes_and_reports(tmp_path):
    out = tmp_path / "table"
    command = [
        sys.executable, os.path.join(REPO_ROOT, "bench", "compare_methods.py"), "--out", str(out),
        "--only", "patch", "--losses", "full_bce,role", "--seeds", "0",
        "--set", "fashion_mnist_dir=none", "--set", "num_train=32", "--set", "num_test=16",
        "--set", "epochs=1", "--set", "embedding_dim=16", "--set", "mlp_units=16",
    ]
    first = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    results = json.load(open(out / "results.json"))
    assert [row["method"] for row in results["rows"]] == ["BCE, full labels (upper bound)", "ROLE"]
    assert results["runs_trained"] == 2 and results["failures"] == []
    # k measured on the 32 training mosaics of the vendored subset: 1 to 4 items each.
    assert 1.0 <= results["changed_from_demo"]["expected_positives"] <= 4.0
    for row in results["rows"]:
        (run,) = row["runs"]
        report = json.load(open(out / compare_methods.run_name("patch", row["overrides"], 0) / "report.json"))
        assert run["map"] == report["map"] and 0 < run["map"] <= 1
        assert report["config"]["embedding_dim"] == 16 and report["config"]["epochs"] == 1
        assert report["config"]["loss"] == row["overrides"]["loss"]
    table = (out / "table.md").read_text()
    role = json.load(open(out / "patch-role-seed0" / "report.json"))
    assert f"| patch model | ROLE | 1 positive | {100 * role['map']:.1f} ± 0.0 |" in table
    assert f"{role['num_parameters']:,} |" in table

    # A second call trains nothing: every run's report is complete.
    log = out / "patch-role-seed0" / "train.log"
    before = log.stat().st_mtime_ns
    second = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
    assert second.returncode == 0, second.stderr[-3000:]
    assert log.stat().st_mtime_ns == before
    assert (out / "table.md").read_text() == table
    assert json.load(open(out / "results.json"))["runs_trained"] == 0

    # Other settings into the same folder: refused before anything is trained or lost.
    third = subprocess.run(command + ["--set", "epochs=2"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert third.returncode != 0
    assert "holds a completed run made with other settings" in third.stderr
    assert "--set epochs=2" in third.stderr and log.stat().st_mtime_ns == before
    assert json.load(open(out / "patch-role-seed0" / "report.json")) == role


def test_the_long_benchmark_trains_the_papers_step_count_and_reports_paired_gaps():
    from patchpu_keras.training import training_budget

    changes, losses, models = compare_methods.BENCHMARKS["long"]
    assert models == "patch"  # the patch model's budget: ResNet-50 rows only with --only patch,cam
    config = recipes.apply_overrides(recipes.load("demo"), [f"{k}={v}" for k, v in changes.items()])
    budget = training_budget(config, config["num_train"])
    assert budget.total_steps >= 9000 and budget.epochs == 60 and budget.lr_decay_steps == 3600
    assert not config["val_fraction"]  # the paper's protocol: all 2,400 mosaics train, the last epoch is tested
    assert set(losses.split(",")) == {"full_bce", "assume_negative", "expected_positive_regularization",
                                      "role", "weak_negative", "ll_r"}
    rows = [
        {"model": "patch", "overrides": {"loss": "weak_negative"}, "runs": [{"seed": 0, "map": 0.5}, {"seed": 1, "map": 0.6}]},
        {"model": "patch", "overrides": {"loss": "full_bce", "regime": "full"},
         "runs": [{"seed": 0, "map": 0.6}, {"seed": 1, "map": 0.6}, {"seed": 2, "map": 0.9}]},
        {"model": "patch", "overrides": {"loss": "assume_negative"}, "runs": [{"seed": 0, "map": 0.45}, {"seed": 1, "map": 0.5}]},
        {"model": "cam", "overrides": {"loss": "weak_negative"}, "runs": [{"seed": 0, "map": 0.1}]},
    ]
    # Paired by seed: seed 2 has no WN run; the CAM row is another model.
    assert compare_methods.paired_gaps(rows).split("\n")[1:3] == [
        "WN / BCE: 0.917 ± 0.083 (2 seeds paired)", "WN - AN: 7.500 ± 2.500 (2 seeds paired)"]


def test_the_schedule_study_trains_the_budgets_it_names_and_tabulates_map_against_steps(tmp_path):
    from patchpu_keras.training import training_budget

    changes, _, _ = compare_methods.BENCHMARKS["half_scale"]
    totals = {}
    for name, settings in schedule_study.SETTINGS.items():
        config = recipes.apply_overrides(
            recipes.load("demo"), [f"{k}={v}" for k, v in {**changes, **settings}.items()]
        )
        totals[name] = training_budget(config, config["num_train"]).total_steps
    # The paper's 25 epochs of batch 16: 800, 3,125 and 12,500 steps; the floor lifts 500 images to 3,008.
    assert totals["n500-paper"] == 800 and totals["n2000-paper"] == 3125 and totals["n8000-paper"] == 12500
    assert totals["n500-min3000"] == totals["n500-min3000-lr5e-3"] == 94 * 32
    run = tmp_path / "n500-paper" / "patch-weak_negative-seed0"
    run.mkdir(parents=True)
    maps = [0.01 * epoch for epoch in range(1, 26)]
    (run / "report.json").write_text(json.dumps({
        "budget": {"steps_per_epoch": 32}, "history": {"val_map": maps}, "status": "completed"}))
    row = schedule_study.table(str(tmp_path), ["n500-paper", "n2000-paper"]).split("\n")[2:]
    # 400 steps: epoch 12 ends at 384 (nearest); 800: epoch 25; no 1,600 for an 800-step run.
    assert row == ["| n500-paper | 800 | 12.0 | 25.0 |  |  |  |  | 25.0 |"]
