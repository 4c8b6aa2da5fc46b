"""``predict=true``: a sweep's cost from a few metered steps, checked against the same sweep run for real.

The end-to-end test predicts a tiny grid, checks that nothing trained (no result.json anywhere), then
runs the grid into the same directory and checks what does not depend on the machine's timing: each job
is predicted to train exactly the epochs and steps its run trains, every job is paired with its run, and
the report shows the comparison. How close the joules land is a timing figure (CPU estimates on shared
cores; CI once missed by 56 % where 8 runs here missed by at most 25 %), so it is measured by
benchmarks/bench_predict.py, not asserted here; the test only refuses an order-of-magnitude miss (a unit
or a per-epoch/per-run mix-up), which no scheduling noise produces. About 15 s on 2 cores.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from powertrain.config import RunConfig
from powertrain.launch.predict import assemble, cost_key, launcher_parallelism, makespan_s, predict_job
from powertrain.report.predicted import compare

# all of digits' 1,437 training images: each run trains about a second, long enough for its joules not to
# be step-time jitter (with 512 images, 0.1 s of training per run, the total missed by up to 54 %)
GRID = ["-m", "batch_size=32,64", "max_epochs=4", "dataset.limit_test=256",
        "hardware.cpu_threads=1", "hydra.sweep.dir=multirun/grid"]


@pytest.mark.slow
def test_prediction_trains_nothing_and_lands_near_the_measured_total(cli: Callable[..., Any],
                                                                     tmp_path: Path) -> None:
    p = cli(*GRID, "predict=true", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    sweep = tmp_path / "multirun/grid"
    assert not list(sweep.rglob("result.json"))  # nothing trained to an end, nothing claims it did
    assert not (sweep / "sweep_summary.json").exists()
    record = json.loads((sweep / "predict.json").read_text())
    jobs = record["jobs"]
    assert [j["overrides"][0] for j in jobs] == ["batch_size=32", "batch_size=64"]
    assert record["total"]["cost_configs"] == 2  # batch size changes the cost per step
    for j in jobs:
        assert j["energy_j"] > 0 and j["uncertainty_j"] > 0 and j["epochs"] == 4 and j["wall_s"] > 0
        profile = record["profiles"][j["cost_key"]]
        assert profile["profiled_steps"] < 4 * profile["steps_per_epoch"]  # less than the run would train
    assert record["total"]["energy_j"] == pytest.approx(sum(j["energy_j"] for j in jobs))
    assert record["total"]["wall_s_parallel"] == pytest.approx(record["total"]["wall_s_serial"])  # basic
    assert "predicted total:" in p.stdout and "kWh" in p.stdout and "serial" in p.stdout

    p = cli(*GRID, "verbose=false", cwd=tmp_path)  # the sweep itself, into the same directory
    assert p.returncode == 0, p.stderr
    results = [json.loads((sweep / str(i) / "result.json").read_text()) for i in range(2)]
    actual = [{"overrides": r["run"]["overrides"], "energy_j": r["energy"]["total_j"],
               "wall_s": r["time"]["wall_s"], "status": r["status"]} for r in results]
    for j, r in zip(jobs, results):  # the prediction's accounting is the run's, step for step
        assert r["run"]["overrides"][0] == j["overrides"][0] and r["status"] == "completed"
        assert (r["metrics"]["epochs"], r["metrics"]["steps"]) == (j["epochs"], j["steps"])
    c = compare(record, actual)
    assert [row["status"] for row in c["jobs"]] == ["completed", "completed"]  # each job met its run
    measured = sum(a["energy_j"] for a in actual)
    assert c["total"]["actual_j"] == pytest.approx(measured)
    assert c["total"]["predicted_j"] == pytest.approx(record["total"]["energy_j"])
    assert c["total"]["energy_error_pct"] == pytest.approx((record["total"]["energy_j"] - measured) / measured * 100)
    assert 0.1 < record["total"]["energy_j"] / measured < 10, c  # the order of magnitude, not the timing
    report = (sweep / "report.md").read_text()
    assert "## Predicted vs actual" in report and "| total |" in report


def _profile(**kw: float) -> dict[str, Any]:
    base = {"steps_per_epoch": 10, "step_j": 2.0, "step_s": 0.1, "step_j_spread": 0.0, "warm_extra_j": 5.0,
            "warm_extra_s": 0.5, "eval_j": 3.0, "eval_s": 0.2, "setup_j": 7.0, "setup_s": 1.0}
    return {**base, **kw}


def test_job_prediction_extrapolates_epochs_and_states_its_assumptions() -> None:
    cfg = RunConfig(max_epochs=4)
    job = predict_job(cfg, _profile())
    assert job["energy_j"] == pytest.approx(5.0 + 4 * (10 * 2.0 + 3.0))
    assert job["wall_s"] == pytest.approx(1.0 + 0.5 + 4 * (10 * 0.1 + 0.2))
    assert job["uncertainty_share"] == pytest.approx(0.15) and job["assumptions"] == []
    assert job["carbon_g"] is None  # no region, no carbon figure

    cfg.target_accuracy = 0.9
    cfg.budget.energy_j = 50.0  # 23 J per epoch: stops at the end of epoch 3
    cfg.carbon.intensity_g_per_kwh = 400.0
    job = predict_job(cfg, _profile())
    assert job["epochs"] == 3
    assert any("budget.energy_j" in a for a in job["assumptions"])
    assert any("target_accuracy=0.9" in a and "upper bound" in a for a in job["assumptions"])
    assert job["carbon_g"] == pytest.approx(job["energy_j"] / 3.6e6 * 400.0)


def test_cost_key_ignores_what_does_not_change_the_cost_per_step() -> None:
    a = {"model": {"family": "simple_cnn"}, "batch_size": 32, "optimizer": {"name": "sgd", "lr": 0.1}, "seed": 0}
    assert cost_key(a) == cost_key({**a, "seed": 1, "optimizer": {"name": "sgd", "lr": 0.01}, "max_epochs": 9})
    assert cost_key(a) != cost_key({**a, "batch_size": 256})
    assert cost_key(a) != cost_key({**a, "optimizer": {"name": "adam", "lr": 0.1}})


def test_wall_time_with_the_launchers_parallelism() -> None:
    assert makespan_s([3.0, 1.0, 1.0, 1.0], 1) == pytest.approx(6.0)
    assert makespan_s([3.0, 1.0, 1.0, 1.0], 2) == pytest.approx(3.0)
    assert launcher_parallelism({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 4)[0] == 1
    assert launcher_parallelism({"array_parallelism": 2}, 4)[0] == 2
    assert launcher_parallelism({"array_parallelism": 256}, 4)[0] == 4
    assert launcher_parallelism({"n_jobs": 3}, 4)[0] == 3


def test_predict_json_keeps_its_schema_name() -> None:
    # readers key on this string; a module move must not change it
    job = {**predict_job(RunConfig(max_epochs=1), _profile()), "cost_key": "k", "profile": {"profile_wall_s": 1.0}}
    assert assemble([job], (1, "basic"))["schema"] == "powertrain.predict/1"


def test_steps_per_epoch_is_the_tasks_own_count_or_an_epoch_counted() -> None:
    import torch

    from powertrain.data import DataSplits
    from powertrain.launch.predict import _steps_per_epoch
    from powertrain.paradigms.multitask import MultiTask
    from powertrain.train.tasks import ClassificationTask

    x, y = torch.randn(40, 3), torch.randint(0, 2, (40,))
    splits = DataSplits("toy", x, y, x[:8], y[:8], 2)
    task = ClassificationTask(splits, 8, 8, 0)
    assert _steps_per_epoch(task) == task.steps_per_epoch == 5
    # two tasks of 5 batches: 10 steps an epoch, not the 2 entries of its dict of batches
    multi = MultiTask({"a": splits, "b": splits}, 8, 8, 0, {"a": 1.0, "b": 1.0}, {"a": None, "b": None})
    assert _steps_per_epoch(multi) == len(list(multi.batches(0))) == 10
