"""The result file: ``result.json`` in every run directory, whatever the run's end.

Schema ``powertrain.result/1`` (see docs/DESIGN.md). Written atomically (temp file + rename) so a reader never
sees half a file, also when the run is killed while writing. While a run trains, its result.json says
``running`` and is rewritten after every epoch; the one reader (``load_result``) tells a live run from a
dead one (``lost``) by the writer's host, pid, Slurm job and heartbeat (see ``run_is_alive`` and
``liveness``).

Layer: the bottom but for ``config``; every layer may read and write results through it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

from powertrain.results import liveness

SCHEMA = "powertrain.result/1"
STATUSES = ("completed", "target_reached", "diverged", "failed", "preempted", "budget_exhausted", "pruned",
            "interrupted", "running", "lost")
SUCCESS = ("completed", "target_reached")  # exit code 0
USABLE = ("completed", "target_reached", "budget_exhausted")  # a finished run with metrics worth reading
# a run that stopped before its end with a checkpoint to continue from (``resume=<dir>``)
RESUMABLE = ("preempted", "interrupted", "lost")
# a job of a sweep that did not give its result for a reason outside its own config: the sweep exits 1
BROKEN = ("failed", "lost", "missing", "interrupted")
EXIT_INTERRUPTED = 130  # the shell's code for a process ended by SIGINT (Ctrl-C)
HEARTBEAT_S = 30.0  # a running run refreshes its result.json's mtime at least this often
LOST_AFTER_S = 600.0  # silence after which a run whose process cannot be asked is taken for dead
RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.pt"  # the run's model/optimizer state (resume, paradigm.from_run)
# set by ``resume=<dir>`` (compose.resume) for the run (run.session): resuming that directory was asked for, so
# its failed run's progress checkpoint may be continued
ENV_RESUME = "POWERTRAIN_RESUME"
STUDY_FILE = "study.json"  # a study preset's record at the study root (schema powertrain.study/1)
OPTUNA_STUDY_FILE = "optuna_study.json"  # the Optuna sweeper's trial -> job map at the sweep root
SECRET_KEYS = ("api_key", "token", "password", "secret")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def _clean(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats become null (JSON has no NaN), secrets are dropped."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()
                if not any(s in str(k).lower() for s in SECRET_KEYS)}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# read once, at import (os.umask can only be read by setting it, which is not thread-safe later)
FILE_MODE = 0o666 & ~_umask()


def open_temp(path: Path) -> tuple[int, str]:
    """A temporary file beside ``path`` for an atomic replace, with the mode a plain ``open`` would give
    (mkstemp's 0600 would hide results from the rest of a group sharing a sweep directory)."""
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), dir=Path(path).parent)
    with contextlib.suppress(OSError):
        os.fchmod(fd, FILE_MODE)
    return fd, tmp


def _temp_prefix(path: Path) -> str:
    return f".{Path(path).name}."


def temp_files(path: Path) -> list[Path]:
    """The temporary files ``open_temp(path)`` made that are still there (a write killed half done)."""
    return sorted(Path(path).parent.glob(f"{_temp_prefix(path)}*"))


def write_json_atomic(path: Path, data: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = open_temp(path)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_clean(data), f, indent=2, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def skeleton(run_dir: Path, overrides: list[str], config: Any, sweep_id: Optional[str] = None,
             target_accuracy: Optional[float] = None) -> dict[str, Any]:
    """A result with every contract key, status ``failed`` and nothing measured yet.

    ``run.run`` fills it in as the run goes; whoever has to record a run that never got that far (bad
    input, a Slurm task killed before writing its own) writes it with ``error`` set.
    """
    run_dir = Path(run_dir)
    return {
        "schema": SCHEMA,
        "status": "failed",
        "error": None,
        "run": {"id": run_dir.name if sweep_id is None else f"{sweep_id}/{run_dir.name}",
                "dir": str(run_dir), "overrides": list(overrides), "started_at": now_iso(),
                "finished_at": None, "sweep_id": sweep_id, "attempts": 1},
        "config": config,
        "metrics": {"final_accuracy": None, "best_accuracy": None, "final_loss": None, "epochs": 0,
                    "steps": 0, "target_accuracy": target_accuracy, "reached_target": False,
                    "energy_to_target_j": None},
        "energy": {"total_j": None, "train_j": None, "eval_j": None, "idle_baseline_w": None,
                   "components": [], "measured_fraction": None},
        "carbon": None,
        "time": {"wall_s": None, "train_s": None, "eval_s": None},
        "hardware": None,
    }


def write_failed(run_dir: Path, overrides: list[str], error: str, config: Any = None,
                 **run_info: Any) -> Path:
    """Record a run that ended before it could write its own result (one-line ``error``)."""
    result = skeleton(run_dir, overrides, config)
    result["error"] = error
    result["run"]["finished_at"] = now_iso()
    result["run"].update(run_info)
    return write_result(run_dir, result)


def write_result(run_dir: Path, result: dict[str, Any]) -> Path:
    """The one writer of result.json (atomic: a reader never sees half a file)."""
    path = Path(run_dir) / RESULT_FILE
    write_json_atomic(path, result)
    return path


def read_result(run_dir: Path) -> dict[str, Any]:
    """The run's result.json; OSError or ValueError when it is missing or unreadable."""
    with open(Path(run_dir) / RESULT_FILE) as f:
        result = json.load(f)
    if not isinstance(result, dict):
        raise ValueError(f"{RESULT_FILE} holds {type(result).__name__}, not a JSON object")
    return result


def load_result(run_dir: Path) -> tuple[Optional[dict[str, Any]], str, Optional[str]]:
    """(result or None, status, error) of a run directory, never raising: status ``missing`` without a
    result.json, ``failed`` with one that cannot be read (the report lists both; neither is dropped).

    A ``running`` result whose writer is gone (its process no longer runs, its Slurm job ended, or it has
    been silent for ``LOST_AFTER_S``) reads as ``lost``: the returned dict says so (``status``, ``error``,
    ``lost``), keeping the energy, metrics and history of its last write; ``resume=<dir>`` continues it.
    """
    try:
        result = read_result(run_dir)
    except FileNotFoundError:
        return None, "missing", f"no {RESULT_FILE} (the job ended before writing one)"
    except (OSError, ValueError) as e:
        return None, "failed", f"unreadable {RESULT_FILE}: {_short(e)}"
    status = str(result.get("status", "failed"))
    if status == "running":
        why = liveness.why_dead(result.get("run") or {}, Path(run_dir) / RESULT_FILE)
        if why is not None:
            epochs = (result.get("metrics") or {}).get("epochs") or 0
            result["lost"] = {"was": "running", "why": why, "epochs": epochs}
            result["status"], status = "lost", "lost"
            result["error"] = f"lost: {why}; last record after epoch {epochs} (resume={Path(run_dir)} continues it)"
    return result, status, result.get("error")


def _short(e: BaseException, limit: int = 200) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def exit_code(status: str) -> int:
    """0 for completed/target_reached; 130 for interrupted (Ctrl-C); 1 for every other end.

    A pruned trial is not a success of its own, but pruning is the search working as asked: a sweep
    exits 1 only when one of its jobs is ``BROKEN`` (failed, lost, missing, interrupted).
    """
    if status == "interrupted":
        return EXIT_INTERRUPTED
    return 0 if status in SUCCESS else 1
