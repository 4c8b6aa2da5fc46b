"""Hydra multiruns through the REAL local Slurm cluster (slurm/cluster.sh), end to end.

``python -m powertrain -m hydra/launcher=slurm_local ...`` as a subprocess: every sweep point is a task
of one ``sbatch --array`` job, run by the submitting venv's interpreter on the (local) compute node, and
the job directories, result.json files and the sweep summary look exactly as for a local sweep. Also: a
task killed mid-run is a row, not a hang or a lost summary; impossible requests fail before anything is
submitted. Every subprocess and wait is bounded; every test cancels its jobs on the way out.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slurm_fixtures import job_state, known_job_ids, run, scancel_quietly, wait_for

pytestmark = pytest.mark.slurm

# The mission's grid, kept small: one epoch on 256 digits is ~3 s of training per job.
GRID = ["optimizer=sgd,adam", "batch_size=32,256", "max_epochs=1", "dataset.limit_train=256"]


def _env() -> dict[str, str]:
    # No HYDRA_FULL_ERROR: the one-line error path is what users see. No leaked SLURM_* of an
    # enclosing job (a test run inside sbatch): submitit would read them as its own job environment.
    return {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR" and not k.startswith("SLURM_")}


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "powertrain", "-m", "hydra/launcher=slurm_local", *args]


def _sweep(tmp_path: Path, *args: str, timeout: float) -> tuple[subprocess.CompletedProcess, Path]:
    sweep = tmp_path / "sweep"
    try:
        proc = subprocess.run(_cmd(*args, f"hydra.sweep.dir={sweep}"), cwd=tmp_path, env=_env(),
                              capture_output=True, text=True, timeout=timeout)
    finally:
        scancel_quietly(*_array_ids(sweep))  # a timeout or a failed assert must not leave tasks queued
    return proc, sweep


@contextlib.contextmanager
def _sweep_in_background(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen, Path, str]]:
    """Start a sweep without waiting for it; yield (process, sweep dir, id of array task 0) once the array
    is submitted. On the way out, a process still running is killed and the sweep's tasks are cancelled."""
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen(_cmd(*args, f"hydra.sweep.dir={sweep}"), cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        arrays = wait_for(lambda: _array_ids(sweep), 60, "the array to be submitted")
        yield proc, sweep, f"{arrays[0]}_0"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        scancel_quietly(*_array_ids(sweep))


def _array_ids(sweep: Path) -> list[str]:
    """The Slurm array job ids of a sweep, from submitit's folders ``.submitit/<array>_<task>/``."""
    folder = sweep / ".submitit"
    if not folder.is_dir():
        return []
    return sorted({m.group(1) for d in folder.iterdir() if (m := re.fullmatch(r"(\d+)_\d+", d.name))})


def _result(job_dir: Path) -> dict[str, Any]:
    return json.loads((job_dir / "result.json").read_text())


def _summary_rows(sweep: Path) -> list[dict[str, Any]]:
    return json.loads((sweep / "sweep_summary.json").read_text())["rows"]


def test_grid_runs_as_one_array_with_local_layout(slurm_cluster: Any, tmp_path: Path) -> None:
    proc, sweep = _sweep(tmp_path, *GRID, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # one job dir per sweep point, numbered as a local sweep numbers them
    # (job dirs hold .hydra/; the sweep's report writes figures/ beside them)
    jobs = sorted(d.name for d in sweep.iterdir() if (d / ".hydra").is_dir())
    assert jobs == ["0", "1", "2", "3"]
    expected = [["optimizer=sgd", "batch_size=32"], ["optimizer=sgd", "batch_size=256"],
                ["optimizer=adam", "batch_size=32"], ["optimizer=adam", "batch_size=256"]]
    for job, want in zip(jobs, expected):
        r = _result(sweep / job)
        assert r["status"] == "completed", (job, r.get("error"))
        assert r["run"]["overrides"][:2] == want
        assert Path(r["run"]["dir"]) == (sweep / job).resolve()
    # ... and they really ran under Slurm: one array, four tasks, each started by this interpreter
    arrays = _array_ids(sweep)
    assert len(arrays) == 1, arrays
    assert len(list((sweep / ".submitit").glob(f"{arrays[0]}_*/*_result.pkl"))) == 4
    script = next((sweep / ".submitit").rglob("*_submission.sh")).read_text()
    assert "#SBATCH --array=0-3" in script and f"{sys.executable} -u -m submitit.core._submit" in script
    rows = _summary_rows(sweep)
    assert len(rows) == 4 and all(r["status"] == "completed" for r in rows)


def test_task_killed_midrun_is_a_row_not_a_hang(slurm_cluster: Any, tmp_path: Path) -> None:
    """scancel one training task: the sweep returns promptly, the other job's result and the summary exist,
    and the cancelled job keeps what it did: Slurm's SIGTERM stops it at the next step with a checkpoint, so
    its row is ``preempted`` with its epochs and joules so far and the command that continues it. (A task
    killed without warning, SIGKILL or a lost node, reads ``lost`` from its last progress save: tests/faults.)"""
    # job 0 would train for many minutes; job 1 finishes in seconds
    with _sweep_in_background(tmp_path, "dataset=synthetic_mnist", "max_epochs=200,1") as (proc, sweep, task0):
        wait_for(lambda: run(["squeue", "-h", "-t", "R", "-j", task0, "-o", "%i"]).stdout.strip(), 60,
                 f"{task0} to run")
        # its first epoch is saved: the task is training, and its result.json says running
        wait_for(lambda: ((_result_or_none(sweep / "0") or {}).get("metrics") or {}).get("epochs", 0) >= 1, 120,
                 "job 0's first epoch saved")
        assert run(["scancel", task0]).returncode == 0
        t_cancel = time.monotonic()
        out, err = proc.communicate(timeout=120)
        after_cancel_s = time.monotonic() - t_cancel
    # submitit: state poll + 15 s grace for a result file on a slow shared filesystem; measured ~35 s
    assert after_cancel_s < 90, f"sweep took {after_cancel_s:.0f}s to notice the cancelled task"
    # a preempted job is resumable, not broken: the sweep exits 0, its table names the job's status
    assert proc.returncode == 0, err[-3000:]
    assert _result(sweep / "1")["status"] == "completed"
    rows = _summary_rows(sweep)
    assert [r["status"] for r in rows] == ["preempted", "completed"]
    killed = json.loads((sweep / "0" / "result.json").read_text())
    assert killed["status"] == "preempted" and "SIGTERM" in killed["stop_reason"]
    assert killed["energy"]["total_j"] > 0 and killed["metrics"]["epochs"] >= 1  # its joules so far are kept
    assert f"resume={(sweep / '0').resolve()}" in killed["stop_reason"] or f"resume={sweep / '0'}" in killed["stop_reason"]
    assert "max_epochs=200" in rows[0]["overrides"]
    assert re.search(r"^0 +preempted ", out, re.M), out[-2000:]


def _result_or_none(job_dir: Path) -> Any:
    try:
        return json.loads((job_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None


@pytest.mark.parametrize(
    "override, message",
    [
        ("hydra.launcher.partition=no_such_partition", "hydra.launcher.partition='no_such_partition'"),
        ("hydra.launcher.cpus_per_task=64", "hydra.launcher.cpus_per_task=64 is not allowed: at most"),
        ("hydra.launcher.nope=1", "hydra.launcher.nope='1' is not allowed"),
        ("hydra.launcher.timeout_min=100000", "hydra.launcher.timeout_min=100000 is not allowed"),
    ],
    ids=["unknown-partition", "too-many-cpus", "unknown-launcher-key", "over-time-limit"],
)
def test_impossible_request_fails_before_submitting(slurm_cluster: Any, tmp_path: Path, override: str,
                                                     message: str) -> None:
    before = known_job_ids()
    proc, sweep = _sweep(tmp_path, "seed=0,1", "max_epochs=1", override, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("powertrain: error: ") and message in lines[0], lines
    assert not (sweep / ".submitit").exists()
    assert known_job_ids() == before, "a job was submitted"


def _preempt_until_requeued(sweep: Path, task0: str) -> None:
    """USR2 to a training task (what Slurm sends before the time limit or on preemption); return once
    the task is requeued and pending, with its first attempt's result.json and checkpoint written."""
    log0 = sweep / ".submitit" / task0 / f"{task0}_0_log.out"
    # training has started (the first epoch line), so powertrain's StopRequest handler is installed
    wait_for(lambda: log0.exists() and "epoch   1/" in log0.read_text(), 90, f"{task0} to train", 0.5)
    assert run(["scancel", "--signal=USR2", task0]).returncode == 0
    # Slurm holds a requeued job until BeginTime = requeue + cred_expire + 1 s (20 s on the local cluster,
    # slurm/cluster.sh); it is never released early: a launch in the same second as the revocation of the
    # old instance's credential is killed as "non-startable batch job: Job credential revoked"
    wait_for(lambda: job_state(task0) == "PENDING", 60, f"{task0} to be requeued", 0.5)
    assert _result(sweep / "0")["status"] == "preempted"
    assert (sweep / "0" / "checkpoint.pt").exists()


def test_preempted_task_checkpoints_requeues_and_resumes(slurm_cluster: Any, tmp_path: Path) -> None:
    """USR2 -> checkpoint, result.json ``preempted``, submitit requeues the task (max_num_timeout=1), Slurm
    starts it again by itself, it resumes in the same job dir."""
    # job 0 trains long enough to be signalled mid-run; job 1 makes it an array like any sweep
    with _sweep_in_background(tmp_path, "hydra.launcher.max_num_timeout=1", "max_epochs=100,1") as (
            proc, sweep, task0):
        _preempt_until_requeued(sweep, task0)
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:] + _slurmctld_log_of(task0)
    r = _result(sweep / "0")
    assert r["status"] == "completed" and r["metrics"]["epochs"] == 100, (r.get("error"), _slurmctld_log_of(task0))
    assert r["error"] is None
    assert r["run"]["attempts"] == 2
    assert [a["status"] for a in r["run"]["attempt_history"]] == ["preempted", "completed"]
    assert [row["attempts"] for row in _summary_rows(sweep)] == [2, 1]


def test_requeued_task_that_never_starts_says_so(slurm_cluster: Any, tmp_path: Path) -> None:
    """A requeued task cancelled while it waits to start again: its row is not a plain ``preempted``; the
    error says the requeued attempt failed to start, with the Slurm state, and how to resume it."""
    with _sweep_in_background(tmp_path, "hydra.launcher.max_num_timeout=1", "max_epochs=100,1") as (
            proc, sweep, task0):
        _preempt_until_requeued(sweep, task0)
        assert run(["scancel", task0]).returncode == 0  # still inside its 20 s BeginTime hold
        out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    rows = _summary_rows(sweep)
    assert [r["status"] for r in rows] == ["preempted", "completed"]
    error = rows[0]["error"] or ""
    assert error.startswith("requeued attempt failed to start (Slurm state: CANCELLED"), error
    assert error.endswith(f"resume it with resume={sweep / '0'}"), error
    r = _result(sweep / "0")
    assert r["error"] == error and r["run"]["attempts"] == 1 and r["metrics"]["epochs"] >= 1
    assert r["energy"]["total_j"] is not None  # the first attempt's joules are kept, not nulled
    assert "requeued attempt failed to start" in out + err  # the sweep's warning says it too


def _slurmctld_log_of(job: str) -> str:
    """slurmctld.log lines about one job, for a failure message (why a requeued attempt did not run)."""
    try:
        lines = Path("/var/log/slurm/slurmctld.log").read_text(errors="replace").splitlines()
    except OSError:
        return ""
    # the launch failure itself is logged under the raw job id: keep it too
    return "\nslurmctld.log:\n" + "\n".join(line for line in lines
                                            if f"JobId={job}" in line or "non-startable" in line)[-3000:]
