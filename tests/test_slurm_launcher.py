"""powertrain's Slurm launcher without a cluster: what a task that ended without a result leaves behind.

A fake submitit job stands in for a finished array task whose ``results()`` raises, as submitit's does when
the task wrote no result pickle. The real thing runs in tests/test_slurm_sweep.py (``-m slurm``).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("submitit")

from hydra_plugins.powertrain_slurm_launcher.launcher import PowertrainSlurmLauncher  # noqa: E402
from powertrain.report import row_from_job  # noqa: E402
from powertrain.results import skeleton, write_result  # noqa: E402

OVERRIDES = ["max_epochs=100", "seed=0"]
START_LINE = ("submitit INFO (2026-11-22 13:51:15,100) - Starting with JobEnvironment(job_id=7_0, hostname=vm, "
              "local_rank=0(1), node=0(1), global_rank=0(1))\n")


class FakeJob:
    """What ``_collect`` reads of a submitit job: id, final Slurm state, log paths, results()."""

    def __init__(self, folder: Path, state: str, starts: int) -> None:
        self.job_id, self.state = "7_0", state
        folder.mkdir(parents=True, exist_ok=True)
        self.paths = SimpleNamespace(stdout=folder / "7_0_0_log.out", stderr=folder / "7_0_0_log.err")
        self.paths.stdout.write_text(START_LINE * starts + "epoch   1/100 ...\n")

    def results(self) -> list[Any]:
        from submitit.core.utils import UncompletedJobError

        raise UncompletedJobError(f"Job {self.job_id} (task: 0) with path ... has not produced any output "
                                  f"(state: {self.state})")


def _collect(tmp_path: Path, job: FakeJob) -> tuple[dict[str, Any], Path]:
    job_dir = tmp_path / "sweep" / "0"
    launcher = PowertrainSlurmLauncher()
    launcher._job_dir = lambda *_: job_dir  # type: ignore[method-assign]  # Hydra's sweep config is not set up here
    ret = launcher._collect(job, list(OVERRIDES), 0)
    return ret.return_value, job_dir


def _preempted_first_attempt(job_dir: Path, checkpoint: bool = True) -> dict[str, Any]:
    result = skeleton(job_dir, OVERRIDES, {"max_epochs": 100})
    result["status"] = "preempted"
    result["stop_reason"] = "signal SIGUSR2: checkpointed for resume"
    result["metrics"]["epochs"] = 3
    result["energy"]["total_j"] = 123.4
    result["run"]["attempt_history"] = [{"started_at": "t0", "wall_s": 9.0, "status": "preempted"}]
    write_result(job_dir, result)
    if checkpoint:
        (job_dir / "checkpoint.pt").write_bytes(b"ck")
    return result


def test_task_without_any_result_gets_a_failed_one(tmp_path: Path) -> None:
    value, job_dir = _collect(tmp_path, FakeJob(tmp_path / "log", "OUT_OF_MEMORY", starts=1))
    assert value["status"] == "failed"
    assert value["error"] == "Slurm job 7_0 ended OUT_OF_MEMORY without a result"
    r = json.loads((job_dir / "result.json").read_text())
    assert r["status"] == "failed" and r["error"] == value["error"] and r["energy"]["total_j"] is None
    assert r["run"]["slurm_job_id"] == "7_0"
    assert (job_dir / ".hydra" / "overrides.yaml").exists()  # so the summary has a row with its overrides


def test_requeued_attempt_that_never_started_is_not_a_plain_preemption(tmp_path: Path) -> None:
    job_dir = tmp_path / "sweep" / "0"
    first = _preempted_first_attempt(job_dir)
    # one start in the log: the first attempt's; Slurm killed the requeued one before Python ran
    value, _ = _collect(tmp_path, FakeJob(tmp_path / "log", "FAILED", starts=1))
    want = (f"requeued attempt failed to start (Slurm state: FAILED); result of attempt 1 (preempted) kept, "
            f"resume it with resume={job_dir}")
    assert value == {"status": "preempted", "error": want, "dir": str(job_dir)}
    r = json.loads((job_dir / "result.json").read_text())
    assert r["status"] == "preempted" and r["error"] == want
    # the first attempt's record is kept: its joules and epochs were real
    assert r["metrics"]["epochs"] == 3 and r["energy"]["total_j"] == 123.4
    assert r["run"]["attempt_history"] == first["run"]["attempt_history"]
    row = row_from_job(job_dir, tmp_path / "sweep")
    assert (row["status"], row["error"], row["energy_j"]) == ("preempted", want, 123.4)


@pytest.mark.parametrize("starts, checkpoint, want", [
    (2, True, "requeued attempt ended without a result (Slurm state: CANCELLED by 0); result of attempt 1 "
              "(preempted) kept, resume it with resume="),
    (0, False, "requeued attempt left no result (Slurm state: CANCELLED by 0); result of attempt 1 "
               "(preempted) kept"),
], ids=["started-then-killed", "no-log-no-checkpoint"])
def test_requeued_attempt_error_says_what_is_known(tmp_path: Path, starts: int, checkpoint: bool,
                                                   want: str) -> None:
    job_dir = tmp_path / "sweep" / "0"
    _preempted_first_attempt(job_dir, checkpoint=checkpoint)
    value, _ = _collect(tmp_path, FakeJob(tmp_path / "log", "CANCELLED by 0", starts=starts))
    assert value["status"] == "preempted"
    assert value["error"] == (want + str(job_dir) if checkpoint else want)


def test_result_of_the_last_attempt_is_left_alone(tmp_path: Path) -> None:
    """A task killed after writing its own result (e.g. before submitit pickled it): the result stands."""
    job_dir = tmp_path / "sweep" / "0"
    result = skeleton(job_dir, OVERRIDES, None)
    result["status"] = "completed"
    write_result(job_dir, result)
    before = (job_dir / "result.json").read_bytes()
    value, _ = _collect(tmp_path, FakeJob(tmp_path / "log", "CANCELLED by 0", starts=1))
    assert value["status"] == "completed"
    assert (job_dir / "result.json").read_bytes() == before


def test_a_task_killed_while_training_keeps_its_last_save_as_lost(tmp_path: Path) -> None:
    job_dir = tmp_path / "sweep" / "0"
    result = skeleton(job_dir, OVERRIDES, {"max_epochs": 100})
    result["status"] = "running"  # the progress save of epoch 4, then the OOM killer
    result["metrics"]["epochs"], result["energy"]["total_j"] = 4, 55.5
    result["history"] = [{"epoch": e} for e in range(1, 5)]
    write_result(job_dir, result)
    (job_dir / "checkpoint.pt").write_bytes(b"ck")
    value, _ = _collect(tmp_path, FakeJob(tmp_path / "log", "OUT_OF_MEMORY", starts=1))
    want = (f"lost: Slurm job 7_0 ended OUT_OF_MEMORY without a result; its last save (after epoch 4) is kept, "
            f"resume it with resume={job_dir}")
    assert value == {"status": "lost", "error": want, "dir": str(job_dir)}
    r = json.loads((job_dir / "result.json").read_text())
    assert r["status"] == "lost" and r["error"] == want and len(r["history"]) == 4
    row = row_from_job(job_dir, tmp_path / "sweep")
    assert (row["status"], row["energy_j"]) == ("lost", 55.5)  # its joules count in the campaign
