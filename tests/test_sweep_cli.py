"""End to end through the real CLI: local grid + summary, a failing job, preemption by a real signal and
resume, the Optuna sweeper's samplers, storage and Pareto front, and bad input stopped before launch.

Each job is tiny (one epoch on a few hundred samples); the file takes about a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

TINY = ["max_epochs=1", "dataset.limit_train=256", "dataset.limit_test=128", "verbose=false"]


def _sweep_dir(cwd: Path) -> Path:
    dirs = sorted(p for p in (cwd / "multirun").glob("*/*") if p.is_dir())
    assert dirs, "no sweep directory"
    return dirs[-1]


def _summary(sweep: Path) -> dict[str, Any]:
    return json.loads((sweep / "sweep_summary.json").read_text())


def test_local_grid_writes_every_result_and_a_summary(cli: Callable[..., Any], tmp_path: Path) -> None:
    p = cli("-m", "optimizer=sgd,adam", "batch_size=32,256", *TINY, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    sweep = _sweep_dir(tmp_path)
    assert sorted(d.name for d in sweep.iterdir() if (d / "result.json").exists()) == ["0", "1", "2", "3"]
    s = _summary(sweep)
    assert [r["overrides"][:2] for r in s["rows"]] == [
        ["optimizer=sgd", "batch_size=32"], ["optimizer=sgd", "batch_size=256"],
        ["optimizer=adam", "batch_size=32"], ["optimizer=adam", "batch_size=256"]]
    assert all(r["status"] == "completed" and r["energy_j"] > 0 for r in s["rows"])
    assert s["campaign"]["total_energy_j"] == pytest.approx(sum(r["energy_j"] for r in s["rows"]))
    assert (sweep / "sweep_summary.csv").exists()
    # the table is printed, one line per job, showing what varies
    assert "job  status" in p.stdout and "optimizer=adam batch_size=256" in p.stdout


def test_a_sweep_with_a_bad_point_is_refused_whole_before_any_job(cli: Callable[..., Any], tmp_path: Path) -> None:
    # nesterov is valid for sgd (with momentum) but not for adam; conv_blocks=10 does not fit 8x8 digits
    # (found only by building the model on the data's shape): every bad point is listed, nothing runs
    p = cli("-m", "optimizer=sgd,adam", "model.conv_blocks=2,10", "optimizer.nesterov=true",
            "optimizer.momentum=0.9", *TINY, cwd=tmp_path)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert lines[0] == ("powertrain: error: 3 of 4 sweep points are not allowed; nothing was launched (each "
                        "reason below, with its jobs)")
    assert any("model.conv_blocks=10 is not allowed: at most 3 for 8×8 inputs" in ln and "[job 1:" in ln
               for ln in lines), p.stderr
    assert any("optimizer.nesterov=True is not allowed" in ln and "[jobs 2, 3:" in ln for ln in lines), p.stderr
    assert all(ln.startswith("powertrain: error: ") for ln in lines)
    assert not list((tmp_path / "multirun").glob("*/*/*"))  # no job directory, no sweep left behind


@pytest.mark.parametrize("grid, reason", [
    (["hardware.device=cpu,cuda"], "hardware.device='cuda' is not allowed: cpu or auto on a machine without a CUDA GPU"),
    (["dataset=digits,mnist", "dataset.root=/nonexistent"], "dataset.root='/nonexistent' is not allowed"),
    (["distributed.nproc_per_node=1,3"], "batch_size=64 is not allowed: a multiple of the world size 3"),
], ids=["no-gpu", "no-dataset-files", "ddp-divisibility"])
def test_checks_that_wait_for_a_job_are_made_before_the_first(cli: Callable[..., Any], tmp_path: Path,
                                                              grid: list[str], reason: str) -> None:
    import torch

    if "cuda" in grid[0] and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    p = cli("-m", *grid, *TINY, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert lines[0].startswith("powertrain: error: 1 of 2 sweep points are not allowed; nothing was launched")
    assert len(lines) == 2 and lines[1].startswith(f"powertrain: error: {reason}") and "[job 1:" in lines[1], p.stderr
    assert not list((tmp_path / "multirun").glob("*/*/*"))


def test_a_job_that_fails_is_a_row_and_the_sweep_exits_1(cli: Callable[..., Any], tmp_path: Path) -> None:
    # Hydra's own basic sweeper checks a job only when it starts: the failed job is a row, the others run
    p = cli("-m", "hydra/sweeper=basic", "optimizer=sgd,adam", "optimizer.nesterov=true",
            "optimizer.momentum=0.9", *TINY, cwd=tmp_path)
    assert p.returncode == 1, p.stderr  # a job gave no result: the sweep says so in its exit code
    rows = _summary(_sweep_dir(tmp_path))["rows"]
    assert [r["status"] for r in rows] == ["completed", "failed"]
    assert "nesterov" in rows[1]["error"]
    assert "jobs that gave no result: 1: job 1 failed (optimizer.nesterov" in p.stdout


def _result(d: Path) -> dict[str, Any]:
    return json.loads((d / "result.json").read_text())


def test_sigterm_preempts_and_the_same_command_resumes(cli: Callable[..., Any], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = ["dataset=synthetic", "dataset.train_size=2048", "dataset.test_size=256", "batch_size=32",
            "max_epochs=6", f"hydra.run.dir={run_dir}"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.Popen([sys.executable, "-m", "powertrain", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    for line in proc.stdout:  # wait for real training progress, then preempt as Slurm would
        if line.startswith("epoch") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 1
    first = _result(run_dir)
    assert first["status"] == "preempted" and "SIGTERM" in first["stop_reason"]
    assert 1 <= first["metrics"]["epochs"] < 6
    assert (run_dir / "checkpoint.pt").exists()

    p = cli(*args, cwd=tmp_path)  # the same command, the same directory: continues
    assert p.returncode == 0, p.stderr
    assert f"at epoch {first['metrics']['epochs']}" in p.stdout
    second = _result(run_dir)
    assert second["status"] == "completed" and second["metrics"]["epochs"] == 6
    assert [h["epoch"] for h in second["history"]] == [1, 2, 3, 4, 5, 6]
    assert second["run"]["attempts"] == 2
    assert [a["status"] for a in second["run"]["attempt_history"]] == ["preempted", "completed"]
    assert second["energy"]["total_j"] > first["energy"]["total_j"]  # the first attempt's joules are kept

    # a completed run has nothing to resume: one line, exit 2, result untouched
    p = cli(f"resume={run_dir}", cwd=tmp_path)
    assert p.returncode == 2 and "nothing to resume" in p.stderr
    assert _result(run_dir)["status"] == "completed"


OPTUNA = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.seed=0", *TINY]


@pytest.mark.parametrize("sampler, space", [
    ("random", ["optimizer.lr=tag(log,interval(1e-3,3e-1))", "hydra.sweeper.n_jobs=2"]),
    ("gp", ["optimizer.lr=tag(log,interval(1e-3,3e-1))"]),
    ("grid", ["optimizer=sgd,adam", "optimizer.lr=choice(0.01,0.1)"]),
])
def test_optuna_samplers_run_trials_and_account_the_campaign(cli: Callable[..., Any], tmp_path: Path,
                                                             sampler: str, space: list[str]) -> None:
    p = cli(*OPTUNA, f"hydra.sweeper.sampler={sampler}", "hydra.sweeper.n_trials=3", *space, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    sweep = _sweep_dir(tmp_path)
    s = _summary(sweep)
    assert len(s["rows"]) == 3 and [r["trial"] for r in s["rows"]] == [0, 1, 2]
    assert s["study"]["sampler"] == sampler
    c = s["campaign"]
    assert c["total_energy_j"] > 0 and 1 <= c["rounds_to_best"] <= 3
    assert c["energy_to_best_j"] <= c["total_energy_j"]
    if sampler == "grid":  # every trial a distinct grid point
        assert len({tuple(r["overrides"]) for r in s["rows"]}) == 3


def test_optuna_multi_objective_and_sqlite_resume(cli: Callable[..., Any], tmp_path: Path) -> None:
    common = [*OPTUNA, "hydra.sweeper.sampler=nsga2", "hydra.sweeper.n_trials=2",
              f"hydra.sweeper.storage={tmp_path / 'study.db'}", "hydra.sweeper.study_name=acc_vs_j",
              "hydra.sweeper.objective=[accuracy,energy]", "optimizer.lr=tag(log,interval(1e-3,3e-1))"]
    p = cli(*common, "hydra.sweep.dir=multirun/a/first", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    p = cli(*common, "hydra.sweep.dir=multirun/a/second", cwd=tmp_path)  # continues the stored study
    assert p.returncode == 0, p.stderr
    first, second = _summary(tmp_path / "multirun/a/first"), _summary(tmp_path / "multirun/a/second")
    assert [r["trial"] for r in second["rows"]] == [2, 3]  # trial numbers continue
    assert second["study"]["n_trials_in_study"] == 4
    assert second["study"]["study_energy_j"] == pytest.approx(
        first["campaign"]["total_energy_j"] + second["campaign"]["total_energy_j"])
    assert second["objectives"] == ["accuracy", "energy"]
    front = second["pareto_front"]
    assert front and all({"accuracy", "energy"} <= set(f) for f in front)
    assert "pareto front" in p.stdout


def test_optuna_tpe_reads_failed_trials_as_fail(cli: Callable[..., Any], tmp_path: Path) -> None:
    # adam + nesterov fails at validation: that trial is FAIL in the study and a failed row, not a crash
    p = cli(*OPTUNA, "hydra.sweeper.sampler=tpe", "hydra.sweeper.n_trials=3", "optimizer=sgd,adam",
            "optimizer.nesterov=true", "optimizer.momentum=0.9", cwd=tmp_path)
    assert p.returncode == 1, p.stderr  # the search went on; its exit code says some trials failed
    study = json.loads((_sweep_dir(tmp_path) / "optuna_study.json").read_text())
    assert len(study["trials"]) == 3
    assert {t["params"]["optimizer"] for t in study["trials"]} == {"sgd", "adam"}  # seed 0 tries both
    for t in study["trials"]:
        assert (t["state"] == "FAIL") == (t["params"]["optimizer"] == "adam"), t
        assert t["status"] == ("failed" if t["state"] == "FAIL" else "completed")


@pytest.mark.parametrize("args, match", [
    (["optimizer.lr=tag(log,interval(1e-3,1e-1)"], "optimizer.lr"),
    (["hydra.sweeper.sampler=grid", "optimizer.lr=interval(1e-3,1e-1)"], "sampler=grid"),
    (["hydra.sweeper.sampler=annealing"], "hydra.sweeper.sampler"),
    (["hydra.sweeper.trials=3"], "hydra.sweeper.trials"),
])
def test_bad_sweep_input_is_one_line_and_launches_nothing(cli: Callable[..., Any], tmp_path: Path,
                                                          args: list[str], match: str) -> None:
    p = cli("-m", "hydra/sweeper=optuna", *args, cwd=tmp_path)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], p.stderr
    assert not (tmp_path / "multirun").exists()
