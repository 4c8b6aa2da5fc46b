"""The local Slurm cluster as a pytest fixture, and small bounded helpers for tests that use it.

The session fixture ``slurm_cluster`` itself lives in conftest.py (so tests use it by name); the helpers
here are imported explicitly. Every wait is bounded.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SH = REPO / "slurm" / "cluster.sh"


def run(cmd: list[str], timeout: float = 30, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def job_state(job_id: str) -> str:
    """``JobState`` of a job or array task (``123_4``) as slurmctld reports it, '' if unknown."""
    for token in run(["scontrol", "show", "job", "-o", job_id]).stdout.split():
        if token.startswith("JobState="):
            return token.split("=", 1)[1]
    return ""


def known_job_ids() -> set[str]:
    """Every job the cluster knows (running, pending, finished), via the sacct shim."""
    out = run(["sacct", "-a", "-X", "-n", "-P", "-o", "JobID"]).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def scancel_quietly(*job_ids: str) -> None:
    """Cleanup: cancel these jobs (array ids cancel every task); never raises."""
    if job_ids:
        try:
            run(["scancel", *job_ids], timeout=20)
        except (OSError, subprocess.SubprocessError):
            pass
