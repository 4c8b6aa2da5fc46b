"""SIGKILL (the OOM killer, a node crash) mid-run: the last save survives, reads ``lost``, and resumes.

The kill comes from ``os.kill`` on the real process, after a marker the run wrote itself: an epoch line,
or a result.json saved inside an epoch.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from faults.proc import SMALL, Run, result_json, temp_files, wait_for
from powertrain.results import load_result

pytestmark = pytest.mark.slow


def test_a_killed_run_keeps_its_epochs_reads_lost_and_resumes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [*SMALL, "max_epochs=6", f"hydra.run.dir={run_dir}"]
    run = Run(args, tmp_path)
    run.wait_line("epoch   2/6")
    # the save of an epoch is written in the background: the marker is its record in result.json
    wait_for(lambda: (result_json(run_dir) or {}).get("metrics", {}).get("epochs", 0) >= 1, "an epoch saved",
             proc=run.proc)
    os.kill(run.proc.pid, signal.SIGKILL)
    assert run.finish() == -signal.SIGKILL

    result, status, error = load_result(run_dir)
    assert status == "lost" and result is not None
    assert "no longer runs" in error and f"resume={run_dir}" in error
    epochs = result["metrics"]["epochs"]
    assert epochs >= 1 and [h["epoch"] for h in result["history"]] == list(range(1, epochs + 1))
    assert result["energy"]["total_j"] > 0 and result["energy"]["components"]  # the joules so far
    assert result["run"]["pid"] == run.proc.pid
    assert (run_dir / "checkpoint.pt").exists()

    again = Run([f"resume={run_dir}"], tmp_path)
    assert again.finish() == 0, again.stderr()
    assert f"at epoch {epochs}" in again.stdout() or f"at epoch {epochs + 1}" in again.stdout()
    final = result_json(run_dir)
    assert final["status"] == "completed" and final["metrics"]["epochs"] == 6
    assert [h["epoch"] for h in final["history"]] == [1, 2, 3, 4, 5, 6]
    assert [a["status"] for a in final["run"]["attempt_history"]] == ["lost", "completed"]
    assert final["energy"]["total_j"] > result["energy"]["total_j"]  # the lost attempt's joules stay
    assert temp_files(run_dir) == []


def test_a_run_killed_inside_a_long_epoch_kept_the_joules_of_that_epoch(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # one long epoch; checkpoint.every_s saves inside it
    args = ["dataset=synthetic", "dataset.train_size=16384", "dataset.test_size=256", "batch_size=8",
            "hardware.device=cpu", "hardware.cpu_threads=1", "max_epochs=2", "checkpoint.every_s=0.5",
            f"hydra.run.dir={run_dir}"]
    run = Run(args, tmp_path)
    saved = wait_for(lambda: (r := result_json(run_dir)) and (r.get("progress") or {}).get("steps_in_epoch") and r,
                     "a save inside the first epoch", proc=run.proc)
    os.kill(run.proc.pid, signal.SIGKILL)
    run.finish()
    result, status, _ = load_result(run_dir)
    assert status == "lost"
    assert result["metrics"]["epochs"] == 0 and result["progress"]["steps_in_epoch"] > 0
    assert result["energy"]["train_j"] > 0  # spent inside the unfinished epoch, not lost with it
    assert result["energy"]["train_j"] >= saved["energy"]["train_j"]

    again = Run([f"resume={run_dir}", "checkpoint.every_s=300"], tmp_path)
    assert again.finish() == 0, again.stderr()
    final = result_json(run_dir)
    assert final["status"] == "completed" and final["metrics"]["epochs"] == 2
    assert final["energy"]["train_j"] > result["energy"]["train_j"]


def test_a_distributed_run_whose_rank_0_is_killed_keeps_its_epochs(tmp_path: Path) -> None:
    from test_distributed import _children

    run_dir = tmp_path / "run"
    args = ["dataset=digits", "max_epochs=500", "batch_size=64", "hardware=cpu", "distributed.nproc_per_node=2",
            f"hydra.run.dir={run_dir}"]
    run = Run(args, tmp_path)
    run.wait_line("epoch   2/500")
    wait_for(lambda: (result_json(run_dir) or {}).get("metrics", {}).get("epochs", 0) >= 1, "an epoch saved",
             proc=run.proc)
    os.kill(_children(run.proc.pid)[0], signal.SIGKILL)  # rank 0: the one that writes for the run
    assert run.finish() == 1
    result = result_json(run_dir)  # the launcher, which outlives its ranks, names the dead one
    assert result["status"] == "failed" and result["error"].startswith("rank 0 died (signal SIGKILL)")
    epochs = result["metrics"]["epochs"]
    assert epochs >= 1 and [h["epoch"] for h in result["history"]] == list(range(1, epochs + 1))
    assert result["energy"]["total_j"] > 0
