"""The local single-node Slurm cluster (slurm/cluster.sh) and the sacct shim.

These tests run a REAL slurmctld/slurmd on localhost. The session fixture brings the
cluster up with `bash slurm/cluster.sh up` (installs slurm-wlm + munge from apt when
missing). They are skipped only when that cannot possibly work: not root, or Slurm
is not installed and apt-get is unavailable. Every wait is bounded.
"""

from __future__ import annotations

import math
import os
import time

import pytest

from slurm_fixtures import CLUSTER_SH
from slurm_fixtures import job_state as _job_state
from slurm_fixtures import run as _run
from slurm_fixtures import wait_for as _wait_for

pytestmark = pytest.mark.slurm



def _node_cpus() -> int:
    return int(_run(["sinfo", "-h", "-o", "%c"], check=True).stdout.split()[0])


def test_up_is_idempotent(slurm_cluster):
    t0 = time.monotonic()
    proc = _run(["bash", str(CLUSTER_SH), "up"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 10, "a second `up` should not restart anything"
    states = _run(["sinfo", "-h", "-o", "%T"], check=True).stdout.split()
    assert states and all(s in ("idle", "mixed", "allocated", "completing") for s in states), states
    parts = _run(["sinfo", "-h", "-o", "%P"], check=True).stdout.split()
    assert "debug*" in parts


def test_sbatch_job_runs_and_writes_file(slurm_cluster, tmp_path):
    out = tmp_path / "hello.txt"
    proc = _run(
        [
            "sbatch",
            "--wait",
            "--parsable",
            "-t",
            "1",
            "-o",
            str(tmp_path / "slurm-%j.out"),
            "--wrap",
            f"echo hello from $SLURM_JOB_ID on $(hostname) > {out}",
        ],
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().split(";")[0]
    assert out.read_text().startswith(f"hello from {job_id} on ")


def test_one_cpu_jobs_share_the_node(slurm_cluster, tmp_path):
    """select/cons_tres + CR_Core: two 1-CPU array tasks run at the same time."""
    if _node_cpus() < 2:
        pytest.skip("node has a single CPU")
    marker = tmp_path / "t"
    proc = _run(
        [
            "sbatch",
            "--wait",
            "--parsable",
            "--array=0-1",
            "-c",
            "1",
            "-t",
            "1",
            "-o",
            "/dev/null",
            "--wrap",
            f"touch {marker}.$SLURM_ARRAY_TASK_ID; "
            f"for i in $(seq 100); do [ -e {marker}.0 ] && [ -e {marker}.1 ] && exit 0; sleep 0.1; done; exit 1",
        ],
        timeout=60,
    )
    # --wait exits non-zero if any task failed, i.e. did not see its sibling running.
    assert proc.returncode == 0, f"array tasks did not overlap: {proc.stderr}"


@pytest.mark.parametrize(
    "args, message",
    [
        (["-c", "999"], "More processors requested than permitted"),
        (["-p", "no_such_partition"], "Invalid partition"),
        (["-p", "debug", "-t", "2-00:00:00"], "time limit"),
    ],
    ids=["too-many-cpus", "unknown-partition", "over-partition-time-limit"],
)
def test_impossible_request_rejected_at_submit(slurm_cluster, args, message):
    proc = _run(["sbatch", *args, "--wrap", "true"], timeout=20)
    assert proc.returncode != 0, f"sbatch accepted an impossible request: {proc.stdout}"
    assert message.lower() in proc.stderr.lower(), proc.stderr


def test_sacct_shim_reports_cancelled_job(slurm_cluster):
    proc = _run(["sbatch", "--parsable", "-o", "/dev/null", "--wrap", "sleep 300"], check=True)
    job_id = proc.stdout.strip().split(";")[0]
    try:
        _wait_for(lambda: _job_state(job_id) == "RUNNING", 30, f"job {job_id} to start")
    finally:
        _run(["scancel", job_id])
    _wait_for(lambda: _job_state(job_id) == "CANCELLED", 30, f"job {job_id} to be cancelled")
    out = _run(["sacct", "-o", "JobID,State,NodeList", "--parsable2", "-j", job_id], check=True).stdout
    lines = out.splitlines()
    assert lines[0] == "JobID|State|NodeList"
    assert any(line.startswith(f"{job_id}|CANCELLED") for line in lines[1:]), out


# ---------------------------------------------------------------- submitit end to end
# Jobs call only stdlib functions: they are pickled by reference and the job's Python
# (this venv) can import them without the tests directory on its path.


@pytest.fixture
def executor(slurm_cluster, tmp_path):
    submitit = pytest.importorskip("submitit")
    ex = submitit.AutoExecutor(folder=tmp_path / "submitit" / "%j", cluster="slurm")
    ex.update_parameters(timeout_min=5, slurm_partition="debug", cpus_per_task=1, mem_gb=1)
    return ex


def _wait_done(job, timeout: float, force: bool = True) -> None:
    # job.done() is what Hydra's launcher (via job.results() -> job.wait()) polls.
    # force=True queries sacct on every poll (tests the shim, not submitit's back-off);
    # force=False is exactly Hydra's path: submitit re-queries sacct after half the time
    # since the last submission (2 s minimum, 600 s maximum).
    _wait_for(lambda: job.done(force_check=force), timeout, f"submitit job {job.job_id} to be done", 1)


def test_submitit_map_array_returns_results(executor):
    jobs = executor.map_array(math.sqrt, [0.0, 1.0, 4.0, 9.0])
    deadline = time.monotonic() + 90
    for job in jobs:
        _wait_done(job, max(1.0, deadline - time.monotonic()))
    assert [j.result() for j in jobs] == [0.0, 1.0, 2.0, 3.0]
    # The result file can appear before Slurm marks the task finished; the shim must
    # then report COMPLETED (not UNKNOWN) for every array task.
    for j in jobs:
        _wait_for(
            lambda j=j: j.watcher.get_state(j.job_id, mode="force") == "COMPLETED",
            30,
            f"{j.job_id} to read COMPLETED via sacct",
            0.5,
        )


def test_submitit_job_scancelled_midrun_surfaces_as_failed(executor):
    submitit = pytest.importorskip("submitit")
    job = executor.submit(time.sleep, 300)
    try:
        _wait_for(lambda: _job_state(job.job_id) == "RUNNING", 30, f"job {job.job_id} to start")
    finally:
        _run(["scancel", job.job_id])
    t0 = time.monotonic()
    _wait_done(job, 60, force=False)
    assert job.state.startswith("CANCELLED"), job.state
    job._results_timeout_s = 0  # no result file will ever come: do not wait the default 15 s
    with pytest.raises(submitit.core.utils.UncompletedJobError):
        job.result()
    assert time.monotonic() - t0 < 60


def test_submitit_job_sigkilled_surfaces_as_failed(executor):
    submitit = pytest.importorskip("submitit")
    # os.system runs `sh -c`, whose parent ($PPID) is the job's Python process: this is
    # an OOM-killer-style death, no traceback, no result file.
    job = executor.submit(os.system, "kill -9 $PPID")
    _wait_done(job, 60)
    assert job.state in ("FAILED", "OUT_OF_MEMORY", "NODE_FAIL", "CANCELLED"), job.state
    job._results_timeout_s = 0
    with pytest.raises(submitit.core.utils.UncompletedJobError):
        job.result()
