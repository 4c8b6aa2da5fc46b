"""Is the process that writes a ``running`` result.json still alive? Host, pid, Slurm job, heartbeat.

A run records who it is (``identity``) in ``run`` of its result.json and refreshes the file at least every
``heartbeat_s``. A reader (``results.load_result``) asks ``why_dead``, in the order that can answer best:

1. the same host (and boot): does that pid still run, started at the recorded time (pids are reused)?
2. a Slurm job id: is the job still queued or running (``squeue``, one call per array, cached)?
3. neither: has the file been silent for longer than ``lost_after_s``?

Imports nothing from powertrain (``results`` sits on it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Optional

SQUEUE_TIMEOUT_S = 5.0
_ALIVE_SLURM = {"RUNNING", "PENDING", "SUSPENDED", "COMPLETING", "CONFIGURING", "REQUEUED", "RESIZING",
                "STAGE_OUT", "SIGNALING", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "STOPPED"}
_squeue_cache: dict[str, Optional[dict[str, str]]] = {}


def _boot_id() -> Optional[str]:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> Optional[int]:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat); None if it does
    not exist or has died (a zombie waiting for its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after its closing one
        fields = stat[stat.rindex(")") + 2:].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])
    except (ValueError, IndexError):
        return None


def slurm_job_id(environ: Optional[dict[str, str]] = None) -> Optional[str]:
    """This process's Slurm job as squeue names it: ``<array job>_<task>`` for an array task."""
    env = os.environ if environ is None else environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or None


def identity(heartbeat_s: float, lost_after_s: float) -> dict[str, Any]:
    """What a running result records about its writer, for ``why_dead``."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_start_ticks": _start_ticks(pid), "boot_id": _boot_id(),
            "slurm_job_id": slurm_job_id(), "heartbeat_s": heartbeat_s, "lost_after_s": lost_after_s}


def _process_gone(info: dict[str, Any]) -> Optional[str]:
    """On the writer's own host: why its process is gone, "" if it still runs, None if we cannot tell."""
    if info.get("host") != socket.gethostname():
        return None
    pid = info.get("pid")
    if not isinstance(pid, int):
        return None
    boot = _boot_id()
    if info.get("boot_id") and boot and info["boot_id"] != boot:
        return f"host {info['host']} has rebooted since"
    if not Path("/proc").is_dir():  # no procfs: signal 0 says whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return f"process {pid} on {info['host']} no longer runs"
        except PermissionError:
            pass
        return ""
    ticks = _start_ticks(pid)
    if ticks is None:
        return f"process {pid} on {info['host']} no longer runs"
    if info.get("pid_start_ticks") is not None and ticks != info["pid_start_ticks"]:
        return f"process {pid} on {info['host']} no longer runs (the pid now belongs to another process)"
    return ""


def _squeue(array_or_job: str) -> Optional[dict[str, str]]:
    """job id -> state of a job (every task of an array), {} if Slurm no longer knows it, None if unanswered."""
    if array_or_job in _squeue_cache:
        return _squeue_cache[array_or_job]
    try:
        proc = subprocess.run(["squeue", "-h", "-r", "-j", array_or_job, "-o", "%i %T"], capture_output=True,
                              text=True, timeout=SQUEUE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        out = None
    else:
        if proc.returncode == 0:
            out = dict(line.split(None, 1) for line in proc.stdout.splitlines() if len(line.split()) == 2)
        elif "invalid job id" in proc.stderr.lower():  # ended and purged from the controller's memory
            out = {}
        else:  # the controller did not answer: we cannot tell
            out = None
    _squeue_cache[array_or_job] = out
    return out


def _slurm_gone(info: dict[str, Any]) -> Optional[str]:
    job = info.get("slurm_job_id")
    if not job:
        return None
    if job == slurm_job_id():  # this process is that job: a requeued attempt reads its predecessor's file
        return f"Slurm job {job} was requeued (this is its next attempt)"
    states = _squeue(str(job).split("_")[0])
    if states is None:
        return None
    state = states.get(str(job))
    if state is not None and state.split()[0] in _ALIVE_SLURM:
        return ""
    return f"Slurm job {job} has ended" + (f" ({state})" if state else "")


def why_dead(info: dict[str, Any], path: Path, now: Optional[float] = None) -> Optional[str]:
    """Why the writer of the running result at ``path`` (its ``run`` section ``info``) is dead, or None."""
    for ask in (_process_gone, _slurm_gone):
        why = ask(info)
        if why is not None:
            return why or None
    try:
        silent_s = (time.time() if now is None else now) - os.stat(path).st_mtime
    except OSError:
        return None
    limit = float(info.get("lost_after_s") or 600.0)
    if silent_s > limit:
        return f"no heartbeat for {silent_s:.0f} s (host {info.get('host')}, pid {info.get('pid')})"
    return None


__all__ = ["identity", "slurm_job_id", "why_dead"]
