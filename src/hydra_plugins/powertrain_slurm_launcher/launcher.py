"""hydra-submitit-launcher's Slurm launcher, except that one dead array task does not sink the sweep.

Upstream ``BaseSubmititLauncher.launch`` ends with ``[j.results()[0] for j in jobs]``: a task that was
scancel'ed, OOM-killed, SIGKILLed, hit its time limit for good or lost its node raises there, the
exception escapes Hydra's ``multirun`` before ``on_multirun_end`` is called, so no sweep summary is
written and Hydra exits 1 with a submitit traceback, although every other task finished.

Here such a task becomes what ``powertrain.__main__.task`` returns for a failed run in a multirun: a
COMPLETED ``JobReturn`` whose value is ``{"status": "failed", "error": ...}`` (a FAILED JobReturn would be
re-raised by Hydra's BasicSweeper when it reads ``return_value``). The launcher writes the task's
result.json (status ``failed``, the Slurm state as error, nothing metered) where the task could not, so the
sweep summary has a ``failed`` row; if the task never started, its directory is created with
``.hydra/overrides.yaml`` too. The sweep exits 0, as a local sweep with a failed run
does; the warning names the Slurm state and the task's log.

A task that was preempted, checkpointed and requeued, whose requeued attempt then never wrote a result
(Slurm could not start it, it was cancelled while pending, or it was killed before the end), still has
the ``preempted`` result.json of the earlier attempt. That file is kept (its metrics and joules are
real and its checkpoint can be resumed), but its ``error`` now says what became of the requeue, with
the Slurm state, so the row does not look like a plain preemption. A task killed while it trained left
its last progress save (status ``running``): that file becomes ``lost`` with the Slurm state as its error,
keeping the energy, metrics and history saved, and resumable with ``resume=<job_dir>``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf, open_dict

from powertrain.config.paths import register_resolvers

log = logging.getLogger(__name__)
# a task unpickles this launcher and resolves hydra.sweep.dir again: ${powertrain.unique:} must exist there
register_resolvers()


class PowertrainSlurmLauncher(SlurmLauncher):
    """``SlurmLauncher`` whose ``launch`` turns a task that ended without a result into a failed row."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        # Upstream launch (hydra-submitit-launcher 1.2.0) up to the submission, unchanged; only the
        # collection differs. A submission error (bad partition, too many CPUs) still raises from
        # map_array, before any task exists.
        import submitit

        assert self.config is not None
        assert len(job_overrides) > 0
        init_keys = {"max_num_timeout", "submitit_folder"}
        init_params = {"folder": self.params["submitit_folder"]}
        if "max_num_timeout" in self.params:
            init_params[f"{self._EXECUTOR}_max_num_timeout"] = self.params["max_num_timeout"]
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init_params)
        baseparams = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in baseparams else f"{self._EXECUTOR}_{k}": v
                                      for k, v in self.params.items() if k not in init_keys})

        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {self.config.hydra.sweep.dir}")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))

        job_params: list[Any] = []
        for i, overrides in enumerate(job_overrides):
            idx = initial_job_idx + i
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))

        try:
            jobs = executor.map_array(self, *zip(*job_params))
        except Exception as e:  # sbatch refused the array (controller down, bad account): nothing submitted
            import sys

            from powertrain.launch.slurm import submission_error

            name = self.config.hydra.runtime.choices.get("hydra/launcher", "slurm")
            print(f"powertrain: error: hydra/launcher={name!r} is not allowed: a submission sbatch accepts "
                  f"({submission_error(e)}); nothing was submitted", file=sys.stderr, flush=True)
            sys.exit(2)
        return [self._collect(job, list(overrides), initial_job_idx + i)
                for i, (job, overrides) in enumerate(zip(jobs, job_overrides))]

    def _collect(self, job: Any, overrides: list[str], idx: int) -> JobReturn:
        try:
            return job.results()[0]
        except Exception as e:  # UncompletedJobError (no result file), FailedJobError (died before run_job)
            from submitit.core.utils import UncompletedJobError

            error = f"Slurm job {job.job_id} ended {getattr(job, 'state', 'UNKNOWN')} without a result"
            if not isinstance(e, UncompletedJobError):  # a traceback from the task: its last line says why
                lines = [line for line in str(e).splitlines() if line.strip()]
                error += f": {lines[-1].strip() if lines else type(e).__name__}"
            job_dir = self._job_dir(job, overrides, idx)
            if job_dir is not None:
                # a task cancelled while pending never ran run_job: give the summary a row for it
                hydra_dir = job_dir / ".hydra"
                if not (hydra_dir / "overrides.yaml").exists():
                    import yaml

                    hydra_dir.mkdir(parents=True, exist_ok=True)
                    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump(overrides))
                status, error = _record(job, job_dir, filter_overrides(overrides), error)
            else:
                status = "failed"
            log.warning("job #%d (%s): %s; log: %s", idx, " ".join(filter_overrides(overrides)), error,
                        getattr(job.paths, "stderr", "?"))
            ret = JobReturn(overrides=overrides, working_dir=str(job_dir) if job_dir else None,
                            task_name=None, status=JobStatus.COMPLETED)
            ret.return_value = {"status": status, "error": error, "dir": str(job_dir) if job_dir else None}
            return ret

    def _job_dir(self, job: Any, overrides: list[str], idx: int) -> Path | None:
        """The job's output dir, resolved as run_job does in the task (``hydra.sweep.dir``/``subdir``)."""
        try:
            assert self.hydra_context is not None and self.config is not None
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
            with open_dict(cfg.hydra.job):
                cfg.hydra.job.num = idx
                cfg.hydra.job.id = job.job_id
            return Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
        except Exception as e:  # only for the row and the message: never fail the sweep over it
            log.warning("job #%d: could not resolve its output dir (%s: %s)", idx, type(e).__name__, e)
            return None


def _record(job: Any, job_dir: Path, overrides: list[str], error: str) -> tuple[str, str]:
    """Make the task's result.json say how it ended; return its (status, error) for the sweep row.

    Every run has its result.json: without one the task could not write it, so its launcher does
    (``failed``). A ``preempted`` one is an earlier attempt's: the requeued attempt that should have
    replaced it left nothing, and the error says so instead of letting the row pass for a plain
    preemption. Any other result was written by the task's last attempt and stays as it is.
    """
    from powertrain.results import read_result, write_failed

    state = getattr(job, "state", "UNKNOWN")
    try:
        result = read_result(job_dir)
    except FileNotFoundError:
        write_failed(job_dir, overrides, error, slurm_job_id=str(job.job_id))
        return "failed", error
    except (OSError, ValueError):  # not powertrain's (its writes are atomic): the row says failed too
        return "failed", f"{error}; its result.json is unreadable"
    status = str(result.get("status", "failed"))
    if status == "running":  # killed while it trained (OOM, node lost): its last progress save is the record
        epochs = (result.get("metrics") or {}).get("epochs") or 0
        result["status"] = "lost"
        return "lost", _keep(job, job_dir, result, f"lost: {error}; its last save (after epoch {epochs}) is kept")
    if status != "preempted":
        return status, result.get("error") or error
    recorded = int((result.get("run") or {}).get("attempts") or 1)
    started = _attempts_started(job)
    if started is not None and started <= recorded:
        what = "failed to start"
    elif started is not None:
        what = "ended without a result"
    else:  # no log to tell whether it started
        what = "left no result"
    return status, _keep(job, job_dir, result, f"requeued attempt {what} (Slurm state: {state}); result of "
                                               f"attempt {recorded} (preempted) kept")


def _keep(job: Any, job_dir: Path, result: dict[str, Any], error: str) -> str:
    """Write back a result the launcher annotated: ``error`` (with how to resume, where a checkpoint is
    there to resume from) and the Slurm job; returns the error."""
    from powertrain.results import CHECKPOINT_FILE, write_result

    if (job_dir / CHECKPOINT_FILE).exists():
        error += f", resume it with resume={job_dir}"
    result["error"] = error
    result.setdefault("run", {})["slurm_job_id"] = str(job.job_id)
    write_result(job_dir, result)
    return error


def _attempts_started(job: Any) -> int | None:
    """How many times submitit started this task's Python (one INFO line per start), None if unknown.

    sbatch appends every attempt to the same log (``--open-mode=append``, set by submitit). No such line
    at all means the log is not there or its level hides INFO: the attempt that wrote the result did start.
    """
    try:
        text = Path(job.paths.stdout).read_text(errors="replace")
    except (OSError, AttributeError, TypeError):
        return None
    return text.count(" - Starting with JobEnvironment(") or None
