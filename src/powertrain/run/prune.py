"""Pruning for the Optuna sweeper: the pruners by name, and the run's side of a pruned trial.

The sweeper (``hydra_plugins.powertrain_optuna_sweeper``) creates the study with a pruner and hands each
trial its study through ``hydra.job.env_set`` (``ENV_*`` below), so a trial running in another process or
a Slurm task reaches the same study in the same storage (sqlite). At the end of each epoch the run
reports the epoch's test accuracy to its trial (``TrialReporter.report``) and asks ``should_prune``; a
pruned run stops with status ``pruned`` and keeps every joule it spent in its result.json.

Optuna's pruners compare intermediate values in the study's direction, so a maximized objective gets
the accuracy and a minimized one the error rate (1 - accuracy): in both cases a trial further from a
good model than the others at the same epoch is the one pruned. optuna is imported only when a trial
asks (a plain run never imports it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

PRUNERS = ("none", "median", "successive_halving", "hyperband")
ENV_STORAGE = "POWERTRAIN_OPTUNA_STORAGE"  # SQLAlchemy URL of the study
ENV_STUDY = "POWERTRAIN_OPTUNA_STUDY"  # study name
ENV_TRIAL = "POWERTRAIN_OPTUNA_TRIAL"  # trial number in that study
ENV_PRUNER = "POWERTRAIN_OPTUNA_PRUNER"  # PrunerSpec.encode(): name:startup_trials:warmup_epochs:direction


@dataclass(frozen=True)
class PrunerSpec:
    """Everything both sides need to build the same pruner (the pruner itself is not stored in the study)."""

    name: str = "none"
    startup_trials: int = 3  # median: trials that finish before any is pruned
    warmup_epochs: int = 1  # median: epochs before a trial may be pruned; SH/hyperband: min_resource
    direction: str = "maximize"  # the study's: decides whether accuracy or error rate is reported

    def encode(self) -> str:
        # plain colons: the value travels as a Hydra override, where quotes and braces need escaping
        return f"{self.name}:{self.startup_trials}:{self.warmup_epochs}:{self.direction}"

    @classmethod
    def decode(cls, text: str) -> PrunerSpec:
        name, startup, warmup, direction = text.split(":")
        return cls(name, int(startup), int(warmup), direction)


def build_pruner(spec: PrunerSpec) -> Any:
    """The Optuna pruner of ``spec`` (NopPruner for ``none``)."""
    import optuna

    if spec.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials, n_warmup_steps=spec.warmup_epochs)
    if spec.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(spec.warmup_epochs, 1))
    if spec.name == "hyperband":
        # max_resource "auto": the epochs of the first trial that ends (its last reported step)
        return optuna.pruners.HyperbandPruner(min_resource=max(spec.warmup_epochs, 1))
    return optuna.pruners.NopPruner()


def trial_env(storage_url: str, study_name: str, trial_number: int, spec: PrunerSpec) -> dict[str, str]:
    """The environment a trial's job gets (through ``hydra.job.env_set``) to report to its study."""
    return {ENV_STORAGE: storage_url, ENV_STUDY: study_name, ENV_TRIAL: str(trial_number),
            ENV_PRUNER: spec.encode()}


def env_overrides(env: Mapping[str, str]) -> list[str]:
    """``++hydra.job.env_set.KEY='value'`` overrides: Hydra sets them around the job in any launcher."""
    out = []
    for k, v in env.items():
        out.append("++hydra.job.env_set.{}='{}'".format(k, v.replace("'", "\\'")))
    return out


class TrialReporter:
    """The run's handle on its Optuna trial: report each epoch, learn whether to stop."""

    def __init__(self, storage_url: str, study_name: str, trial_number: int, spec: PrunerSpec) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.spec = spec
        self.number = trial_number
        study = optuna.load_study(study_name=study_name, storage=storage_url, pruner=build_pruner(spec))
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, trial_number)
        self.trial = optuna.trial.Trial(study, trial_id)

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> Optional[TrialReporter]:
        """The reporter the sweeper asked for, or None outside a pruned Optuna search."""
        env = os.environ if env is None else env
        if not all(k in env for k in (ENV_STORAGE, ENV_STUDY, ENV_TRIAL, ENV_PRUNER)):
            return None
        spec = PrunerSpec.decode(env[ENV_PRUNER])
        if spec.name == "none":
            return None
        return cls(env[ENV_STORAGE], env[ENV_STUDY], int(env[ENV_TRIAL]), spec)

    def value(self, accuracy: float) -> float:
        return accuracy if self.spec.direction == "maximize" else 1.0 - accuracy

    def report(self, epoch: int, accuracy: float) -> Optional[str]:
        """Report epoch ``epoch``'s accuracy; the reason to stop if the pruner says so, else None."""
        self.trial.report(self.value(accuracy), step=epoch)
        if self.trial.should_prune():
            return (f"pruned by the {self.spec.name} pruner after epoch {epoch} "
                    f"(optuna trial {self.number}, accuracy {accuracy * 100:.2f}%)")
        return None


__all__ = ["PRUNERS", "PrunerSpec", "TrialReporter", "build_pruner", "env_overrides", "trial_env"]
