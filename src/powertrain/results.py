"""The result file: ``result.json`` in every run directory, whatever the run's end.

Schema ``powertrain.result/1`` (see docs/DESIGN.md). Written atomically (temp file + rename) so a reader never
sees half a file, also when the run is killed while writing.
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

SCHEMA = "powertrain.result/1"
STATUSES = ("completed", "target_reached", "diverged", "failed", "preempted", "budget_exhausted", "pruned")
SUCCESS = ("completed", "target_reached")  # exit code 0
USABLE = ("completed", "target_reached", "budget_exhausted")  # a finished run with metrics worth reading
RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.pt"  # the run's model/optimizer state (resume, paradigm.from_run)
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


def write_json_atomic(path: Path, data: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
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
    result.json, ``failed`` with one that cannot be read (the report lists both; neither is dropped)."""
    try:
        result = read_result(run_dir)
    except FileNotFoundError:
        return None, "missing", f"no {RESULT_FILE} (the job ended before writing one)"
    except (OSError, ValueError) as e:
        return None, "failed", f"unreadable {RESULT_FILE}: {e}"
    return result, result.get("status", "failed"), result.get("error")


def exit_code(status: str) -> int:
    """0 for completed/target_reached; 1 for failed, diverged, budget_exhausted, preempted and pruned.

    A pruned trial is not a success of its own, but a sweep exits 0 whatever its jobs' statuses: pruning
    is the search working as asked, and the pruned trial's energy is counted in the campaign.
    """
    return 0 if status in SUCCESS else 1
