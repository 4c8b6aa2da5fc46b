"""Pruning in the Optuna sweeper, end to end: real Optuna, a real sqlite study, trials as Hydra jobs.

A hopeless learning rate (1e-5: chance accuracy after an epoch) beside a working one (0.05); the seeded
grid sampler puts a working trial before the later hopeless ones, so the median pruner (one start-up
trial) stops them after their first epoch. About 20 s on 2 cores.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from powertrain.launch.search import check_argv, check_conf
from powertrain.run.prune import PrunerSpec, TrialReporter, env_overrides, trial_env

pytestmark = pytest.mark.slow

SEARCH = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.sampler=grid", "hydra.sweeper.seed=0",
          "hydra.sweeper.n_trials=6", "hydra.sweeper.pruner=median", "hydra.sweeper.pruner_startup_trials=1",
          "optimizer.lr=choice(0.05,0.00001)", "seed=0,1,2", "max_epochs=3", "dataset.limit_train=512",
          "dataset.limit_test=256", "batch_size=32", "verbose=false", "hydra.sweep.dir=multirun/pruned"]


def test_median_pruner_stops_hopeless_trials_and_their_energy_is_counted(cli: Callable[..., Any],
                                                                          tmp_path: Path) -> None:
    p = cli(*SEARCH, cwd=tmp_path)
    assert p.returncode == 0, p.stderr  # pruning is the search working: the sweep exits 0
    sweep = tmp_path / "multirun/pruned"
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    rows = summary["rows"]
    pruned = [r for r in rows if r["status"] == "pruned"]
    assert pruned, [r["status"] for r in rows]
    assert any("optimizer.lr=1e-05" in r["overrides"] for r in pruned)  # a hopeless trial was stopped
    for r in pruned:
        result = json.loads((Path(r["dir"]) / "result.json").read_text())
        assert result["metrics"]["epochs"] < 3  # stopped early ...
        assert result["energy"]["total_j"] > 0 and r["energy_j"] == result["energy"]["total_j"]  # ... not free
        assert "pruned by the median pruner" in result["stop_reason"]
        assert not any("env_set" in o for o in result["run"]["overrides"])  # plumbing stays out of the record
    assert summary["status_counts"]["pruned"] == len(pruned)
    assert summary["campaign"]["total_energy_j"] == pytest.approx(sum(r["energy_j"] for r in rows))
    # the study saw the same: PRUNED trials, and the best trial is a completed one
    study = json.loads((sweep / "optuna_study.json").read_text())
    assert study["pruner"] == "median" and (sweep / "optuna_study.db").exists()
    states = {t["job"]: t["state"] for t in study["trials"]}
    assert {r["job"] for r in pruned} == {j for j, s in states.items() if s == "PRUNED"}
    assert study["best_trials"][0]["job"] not in {r["job"] for r in pruned}
    assert "pruned" in p.stdout  # the table shows the status


def test_a_trial_reports_to_its_study_through_the_environment(tmp_path: Path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=url, direction="minimize")
    trial = study.ask()
    spec = PrunerSpec("median", startup_trials=0, warmup_epochs=0, direction="minimize")
    env = trial_env(url, "s", trial.number, spec)
    assert all(o.startswith("++hydra.job.env_set.") for o in env_overrides(env))
    reporter = TrialReporter.from_env(env)
    assert reporter is not None and reporter.report(1, 0.75) is None  # nobody to compare with yet
    # a minimized objective gets the error rate, so the pruner compares in the study's direction
    assert optuna.load_study(study_name="s", storage=url).trials[0].intermediate_values == {1: 0.25}
    assert TrialReporter.from_env({}) is None
    assert TrialReporter.from_env({**env, "POWERTRAIN_OPTUNA_PRUNER": "none:3:1:maximize"}) is None


@pytest.mark.parametrize("conf, match", [
    ({"pruner": "medain"}, "did you mean 'median'"),
    ({"pruner": "hyperband", "objective": ["accuracy", "energy"]}, "several objectives"),
    ({"pruner_warmup_epochs": -1}, "hydra.sweeper.pruner_warmup_epochs"),
])
def test_bad_pruner_settings_are_one_line(conf: dict[str, Any], match: str) -> None:
    with pytest.raises(Exception, match=match):
        check_conf(conf)


def test_predict_with_the_optuna_sweeper_is_refused_before_launch() -> None:
    with pytest.raises(Exception, match="predict"):
        check_argv(["hydra/sweeper=optuna", "predict=true"])


def test_energy_to_target_counts_a_missed_target_as_twice_its_energy() -> None:
    from hydra_plugins.powertrain_optuna_sweeper.optuna_sweeper import MISSED_TARGET_FACTOR, _objective

    hit = {"metrics": {"reached_target": True, "energy_to_target_j": 40.0}, "energy": {"total_j": 55.0}}
    miss = {"metrics": {"reached_target": False, "energy_to_target_j": None}, "energy": {"total_j": 30.0}}
    assert _objective(hit, "energy_to_target") == 40.0
    assert _objective(miss, "energy_to_target") == MISSED_TARGET_FACTOR * 30.0 == 60.0  # ranks below the hit
    assert _objective(miss, "accuracy") is None  # other objectives unchanged
