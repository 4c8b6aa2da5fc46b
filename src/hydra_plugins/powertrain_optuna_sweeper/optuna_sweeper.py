"""The Hydra Sweeper: ask Optuna for a batch of trials, launch them, tell Optuna what result.json says.

Each trial is one Hydra job (``<sweep>/<job>/``); its objective values are read from the job's
result.json (the source of truth, also under the Slurm launcher where the return value travels by
pickle). A job that failed, diverged, was preempted or left no result.json is told to Optuna as
``TrialState.FAIL``: the search goes on. With ``pruner`` set, each trial reports its epochs to the study
(``powertrain.run.prune``) and a trial its pruner stopped (status ``pruned``) is told ``TrialState.PRUNED``.
``optuna_study.json`` at the sweep root maps trials to jobs;
the sweep summary (``powertrain.report``) reads it for trial numbers, objectives and the Pareto front.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
# energy_to_target for a trial that never reached the target: what it spent, doubled. Telling it FAIL would
# let the sampler forget that region; its plain total would rank a cheap miss above a costly hit.
MISSED_TARGET_FACTOR = 2.0


class PowertrainOptunaSweeper(Sweeper):
    """Optuna search over Hydra overrides; see ``powertrain.launch.search.OptunaSweeperConf`` for the keys."""

    def __init__(self, **conf: Any) -> None:
        from powertrain.launch.search import check_conf, objectives_and_directions

        self.conf = {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in conf.items()}
        check_conf(self.conf)  # before anything is launched
        self.objectives, self.directions = objectives_and_directions(self.conf["objective"],
                                                                     self.conf["direction"])
        self.params: dict[str, str] = {str(k): str(v) for k, v in (self.conf.get("params") or {}).items()}
        self.config: Optional[DictConfig] = None
        self.launcher: Any = None
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> list[Any]:
        import optuna

        from powertrain.launch.search import (
            build_sampler,
            build_space,
            grid_size,
            storage_url,
            trial_overrides,
        )
        from powertrain.run.prune import PrunerSpec, build_pruner, env_overrides, trial_env

        assert self.config is not None and self.launcher is not None
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweeper logs the study line itself
        fixed, space = build_space(self.params, arguments)
        c = self.conf
        sampler = build_sampler(c["sampler"], c.get("seed"), space, len(self.objectives), c.get("n_startup_trials"))
        n_trials = c["n_trials"]
        if c["sampler"] == "grid":
            n_trials = min(n_trials, grid_size(space))  # past its size the grid sampler only repeats
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        spec = PrunerSpec(str(c.get("pruner") or "none"), int(c.get("pruner_startup_trials", 3)),
                          int(c.get("pruner_warmup_epochs", 1)), self.directions[0])
        url = storage_url(c.get("storage"))
        if spec.name != "none" and url is None:  # trials in other processes report through this file
            url = storage_url(str(sweep_dir / "optuna_study.db"))
            self.conf["storage"] = str(sweep_dir / "optuna_study.db")
        study = optuna.create_study(
            study_name=c.get("study_name") or "powertrain", storage=url, pruner=build_pruner(spec),
            sampler=sampler, directions=self.directions, load_if_exists=bool(c.get("load_if_exists", True)))
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        distributions = {k: p.distribution for k, p in space.items()}
        if ("energy_to_target" in self.objectives and self.config.get("target_accuracy") is None
                and "target_accuracy" not in space and not any(f.startswith("target_accuracy=") for f in fixed)):
            log.warning("optuna: objective energy_to_target without target_accuracy: every trial misses it "
                        "and counts %.0fx its energy", MISSED_TARGET_FACTOR)
        log.info("optuna: study %r, sampler %s, pruner %s, %d trial(s) in batches of %d, objective %s",
                 study.study_name, c["sampler"], spec.name, n_trials, c["n_jobs"],
                 ", ".join(f"{o} ({d})" for o, d in zip(self.objectives, self.directions)))
        records: list[dict[str, Any]] = []
        all_returns: list[Any] = []
        done = 0
        while done < n_trials:
            batch = min(c["n_jobs"], n_trials - done)
            trials = [study.ask(distributions) for _ in range(batch)]
            overrides = [trial_overrides(fixed, t.params) for t in trials]
            if spec.name != "none" and url is not None:
                # hydra.* overrides: the job's environment, not its config (result.json's overrides stay clean)
                overrides = [o + env_overrides(trial_env(url, study.study_name, t.number, spec))
                             for o, t in zip(overrides, trials)]
            returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            for i, (trial, ret) in enumerate(zip(trials, returns)):
                job_dir = _job_dir(ret, sweep_dir, self.job_idx + i)
                records.append(self._tell(study, trial, ret, job_dir, sweep_dir))
            self.job_idx += batch
            done += batch
            all_returns.append(returns)
            self._write_study(study, records, sweep_dir)  # after every batch: a killed sweep keeps its map
        return all_returns

    def _tell(self, study: Any, trial: Any, ret: Any, job_dir: Path, sweep_dir: Path) -> dict[str, Any]:
        from optuna.trial import TrialState

        from powertrain.report import objective_value
        from powertrain.results import USABLE, load_result

        result, status, _ = load_result(job_dir)  # the status the sweep summary gives this job's row
        values = [_objective(result, o) for o in self.objectives] if result else []
        energy_j = objective_value(result, "energy") if result else None
        job_dir = job_dir.resolve()
        trial.set_user_attr("job", str(job_dir.relative_to(sweep_dir)) if job_dir.is_relative_to(sweep_dir)
                            else str(job_dir))
        trial.set_user_attr("status", status)
        trial.set_user_attr("energy_j", energy_j)
        ok = status in USABLE and values and all(v is not None for v in values)
        if ok:
            _tell_study(study, trial, values)
            state = "COMPLETE"
        elif status == "pruned":  # Optuna keeps its last reported epoch as its value
            _tell_study(study, trial, state=TrialState.PRUNED)
            state = "PRUNED"
            log.info("optuna: trial %d pruned after %s epoch(s), %.1f J: %s", trial.number,
                     (result or {}).get("metrics", {}).get("epochs"), energy_j or 0.0, job_dir)
        else:
            _tell_study(study, trial, state=TrialState.FAIL)
            state = "FAIL"
            log.warning("optuna: trial %d failed (%s): %s", trial.number, status, job_dir)
        return {"number": trial.number, "job": trial.user_attrs["job"], "state": state,
                "status": status, "values": values if ok else None, "params": trial.params,
                "energy_j": energy_j}

    def _write_study(self, study: Any, records: list[dict[str, Any]], sweep_dir: Path) -> None:
        from optuna.trial import TrialState

        from powertrain.results import OPTUNA_STUDY_FILE, write_json_atomic

        all_trials = study.get_trials(deepcopy=False)
        complete = [t for t in all_trials if t.state == TrialState.COMPLETE]
        best: list[dict[str, Any]] = []
        if complete:
            bests = study.best_trials if len(self.directions) > 1 else [study.best_trial]
            best = [{"number": t.number, "values": t.values, "params": t.params,
                     "job": t.user_attrs.get("job")} for t in bests]
        write_json_atomic(sweep_dir / OPTUNA_STUDY_FILE, {
            "study_name": study.study_name, "storage": storage_display(self.conf.get("storage")),
            "sampler": self.conf["sampler"], "seed": self.conf.get("seed"),
            "pruner": self.conf.get("pruner") or "none",
            "n_pruned_this_sweep": sum(r["state"] == "PRUNED" for r in records),
            "objectives": self.objectives, "directions": self.directions,
            "n_trials_this_sweep": len(records), "n_trials_in_study": len(all_trials),
            # the study may span several sweeps (storage + load_if_exists): its whole energy bill
            "study_energy_j": sum(t.user_attrs.get("energy_j") or 0.0 for t in all_trials),
            "best_trials": best, "trials": records,
        })


def _tell_study(study: Any, trial: Any, values: Any = None, state: Any = None) -> None:
    """``study.tell``, past the grid sampler's ``study.stop()`` once its grid is used up.

    GridSampler.after_trial calls ``study.stop()`` on its last point, which raises outside
    ``study.optimize``; Optuna stores the trial's state in a ``finally`` before that error reaches us.
    """
    try:
        study.tell(trial, values, state=state)
    except RuntimeError as e:
        if "Study.stop" not in str(e):
            raise


def _objective(result: dict[str, Any], name: str) -> Optional[float]:
    from powertrain.report import objective_value

    value = objective_value(result, name)
    if name == "energy_to_target" and value is None and result.get("metrics", {}).get("reached_target") is False:
        total = objective_value(result, "energy")
        return None if total is None else MISSED_TARGET_FACTOR * total
    return value


def storage_display(storage: Optional[str]) -> Optional[str]:
    # a database URL may carry a password; a file path does not
    return storage if storage and "@" not in storage else (None if not storage else "<database url>")


def _job_dir(ret: Any, sweep_dir: Path, job_num: int) -> Path:
    try:
        return Path(str(ret.hydra_cfg.hydra.runtime.output_dir))
    except Exception:  # no Hydra config came back (a lost job): the default subdir layout
        return sweep_dir / str(job_num)
