"""Before any work: a writable output directory, and every point of a grid sweep checked whole.

* ``OutputCheck`` (a Hydra callback, ``hydra.callbacks.output_check``): before a run or a sweep, its
  directory (or the nearest one that exists above it) must take a file. A read-only or full disk is one
  line and exit 2, instead of Hydra's traceback when it creates ``.hydra/`` (or a run that trains and
  then cannot record what it did).
* ``check_batch``, for ``RepeatSweeper`` (``hydra_plugins.powertrain_repeat_sweeper``;
  ``hydra/sweeper=powertrain``, the default in conf/config.yaml): Hydra's basic
  sweeper, which already composes every job of a batch before launching it ("validate_batch_is_legal");
  here each composed job is also validated as its run would be (``compose.validate``) and probed for what
  otherwise waits for the job to start (``compose.preflight``: the device, the model's forward on the
  data's shape), sharing the probes across points. Every bad point is listed, nothing is launched, exit 2.
  It then writes ``sweep_plan.json`` at the sweep root (every job and its overrides, and who runs the
  sweep), so a report of a sweep killed halfway lists the jobs that never started.

``sys.exit(2)`` passes through Hydra's ``run_and_report``, which only catches ``Exception``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback

from powertrain.config.errors import ConfigError

log = logging.getLogger("powertrain")
PLAN_FILE = "sweep_plan.json"  # schema powertrain.sweep_plan/1, read by report.summary
PLAN_SCHEMA = "powertrain.sweep_plan/1"
NEVER_S = 365 * 86400.0
PROBE_BYTES = 4096  # a full disk can still create an empty file: the probe writes a block


def _fail(lines: Sequence[str]) -> None:
    for line in lines:
        print(f"powertrain: error: {line}", file=sys.stderr, flush=True)
    sys.exit(2)


def output_problem(directory: Path) -> Optional[str]:
    """Why ``directory`` cannot hold a run's files (None: it can). Creates nothing that stays."""
    d = Path(directory).absolute()
    existing = d
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"a directory ({existing} is a file)"
    try:
        fd, tmp = tempfile.mkstemp(prefix=".powertrain-probe-", dir=existing)
        try:
            block = memoryview(b"\0" * PROBE_BYTES)
            while block:  # a write near the limit is cut short; the next one fails
                block = block[os.write(fd, block):]
            os.fsync(fd)
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    except OSError as e:
        where = "" if existing == d else f" ({existing}, where it would be created)"
        return f"a directory this process can write to{where}: {e.strerror or e}"
    return None


class OutputCheck(Callback):
    """Refuse a run or sweep directory that cannot be written, before Hydra creates anything in it."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        self._check("hydra.run.dir", config.hydra.run.dir)

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self._check("hydra.sweep.dir", config.hydra.sweep.dir)

    @staticmethod
    def _check(key: str, directory: Any) -> None:
        why = output_problem(Path(str(directory)))
        if why is not None:
            _fail([str(ConfigError(key, str(directory), why))])


# ------------------------------------------------------------------------------------ the sweep, whole


def check_points(configs: Sequence[Any], batch: Sequence[Sequence[str]],
                 first_job: int = 0) -> tuple[int, list[str]]:
    """(how many, the error lines) of the points of ``batch`` (their composed ``configs``) a run would refuse.

    Points that fail the same way share one line, which names their jobs.
    """
    from omegaconf import open_dict, read_write

    from powertrain.compose.preflight import Probe
    from powertrain.compose.validate import validate

    probe = Probe()
    by_error: dict[str, list[int]] = {}
    for i, composed in enumerate(configs):
        cfg = composed.copy()
        experiment = composed.hydra.runtime.choices.get("experiment")
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]  # as Hydra's run_job hands it to the task
        try:
            run_cfg = validate(cfg)
            if experiment is not None and run_cfg.study.driver is None:
                raise ConfigError("experiment", experiment, "a study preset that sets study.driver")
            probe(run_cfg)
        except ConfigError as e:
            by_error.setdefault(str(e), []).append(first_job + i)
    lines = []
    for error, jobs in by_error.items():
        shown = ", ".join(map(str, jobs[:8])) + (f" and {len(jobs) - 8} more" if len(jobs) > 8 else "")
        example = " ".join(_task_overrides(batch[jobs[0] - first_job]))
        lines.append(f"{error} [job{'s' if len(jobs) > 1 else ''} {shown}: {example}]")
    return sum(len(j) for j in by_error.values()), lines


def _task_overrides(overrides: Sequence[str]) -> list[str]:
    return [o for o in overrides if not o.startswith("hydra.")]


def write_plan(sweep_dir: Path, batch: Sequence[Sequence[str]], first_job: int,
               subdirs: Optional[Sequence[str]] = None) -> None:
    """Add ``batch``'s jobs to ``sweep_plan.json`` (who runs the sweep, so a reader can tell it died)."""
    import json

    from powertrain.results import liveness, now_iso, write_json_atomic

    path = Path(sweep_dir) / PLAN_FILE
    plan: dict[str, Any] = {}
    if first_job > 0:
        with contextlib.suppress(OSError, ValueError):
            plan = json.loads(path.read_text())
    if not plan:
        # no heartbeat refreshes this file: its writer is asked (same host, Slurm job), never timed out
        plan = {"schema": PLAN_SCHEMA, "started_at": now_iso(), "jobs": [],
                "run": liveness.identity(heartbeat_s=0.0, lost_after_s=NEVER_S)}
    plan["jobs"] += [{"job": str(first_job + i), "dir": subdirs[i] if subdirs else str(first_job + i),
                      "overrides": _task_overrides(o)} for i, o in enumerate(batch)]
    write_json_atomic(path, plan)


def _subdirs(configs: Sequence[Any], first_job: int) -> Optional[list[str]]:
    """Each job's directory under the sweep root, as its launcher will resolve ``hydra.sweep.subdir``."""
    from omegaconf import open_dict

    out = []
    try:
        for i, c in enumerate(configs):
            with open_dict(c.hydra.job):
                c.hydra.job.num = first_job + i
            out.append(str(c.hydra.sweep.subdir))
    except Exception:  # e.g. a subdir naming ${hydra.job.id}, known only once launched: job numbers then
        return None
    return out


def check_batch(config: Any, loader: Any, batch: Sequence[Sequence[str]], first_job: int) -> None:
    """``RepeatSweeper``'s check of one batch: compose (as Hydra's basic sweeper does anyway), validate,
    probe; exit 2 listing every bad point, or record the batch in ``sweep_plan.json``."""
    t0 = time.perf_counter()
    configs = [loader.load_sweep_config(master_config=config, sweep_overrides=list(o)) for o in batch]
    t1 = time.perf_counter()
    bad, lines = check_points(configs, batch, first_job)
    if lines:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if first_job == 0 and {p.name for p in sweep_dir.iterdir()} <= {"multirun.yaml"}:
            shutil.rmtree(sweep_dir, ignore_errors=True)  # Hydra made it just now; nothing ran in it
        _fail([f"{bad} of {len(batch)} sweep points are not allowed; nothing was launched (each reason "
               "below, with its jobs)", *lines])
    write_plan(Path(str(config.hydra.sweep.dir)), batch, first_job, _subdirs(configs, first_job))
    log.info("checked %d sweep points in %.2f s (composing %.2f s, which Hydra does anyway; checks %.2f s)",
             len(batch), time.perf_counter() - t0, t1 - t0, time.perf_counter() - t1)


__all__ = ["OutputCheck", "check_batch", "PLAN_FILE", "check_points", "output_problem", "write_plan"]
