"""Weights & Biases tracker: one W&B run per powertrain run, offline unless asked otherwise.

wandb is imported inside ``start`` so that ``tracking=none`` never pays for it. Every wandb call may
raise; ``build_tracker`` wraps this class in ``SafeTracker`` so an error becomes one warning.
Offline runs are uploaded later with ``wandb sync <dir>/wandb/offline-run-*`` (docs/carbon.md).
"""

from __future__ import annotations

import math
import os
from fnmatch import fnmatch
from typing import Any, Optional

from powertrain.config import get_dotted
from powertrain.results import USABLE
from powertrain.tracking import Tracker

# result.json keys (dotted) copied into the W&B summary, named with "/" so the UI groups them: the one name of
# each run-level figure in the runs table, parallel coordinates and scatter plots
SUMMARY_KEYS = (
    "status",
    "energy.total_j",
    "energy.train_j",
    "energy.eval_j",
    "energy.setup_j",
    "energy.measured_fraction",
    "carbon.operational_g",
    "carbon.embodied_g",
    "carbon.total_g",
    "carbon.intensity_g_per_kwh",
    "carbon.region",
    "carbon.pue",
    "metrics.final_accuracy",
    "metrics.best_accuracy",
    "metrics.final_loss",
    "metrics.final_eval_loss",
    "metrics.epochs",
    "metrics.steps",
    "metrics.reached_target",
    "metrics.energy_to_target_j",
    "metrics.time_to_target_s",
    "time.wall_s",
    "time.train_s",
    "time.eval_s",
)

# A history row's keys (result.json ``history``) as W&B metric names: each says what it is, in the
# summary's sections. Cumulative figures whose last value is a run figure take that figure's summary name
# (energy/total_j, carbon/operational_g), so the runs table shows one name per number.
HISTORY_NAMES = {
    "steps": "train/steps",
    "train_loss": "train/loss",
    "accuracy": "eval/accuracy",
    "loss": "eval/loss",
    "energy_j": "energy/total_j",  # cumulative train + eval
    "carbon_g": "carbon/operational_g",  # cumulative
    "wall_s": "time/training_wall_s",  # since training began; time/wall_s is the whole run
    "epoch_train_j": "energy/epoch_train_j",
    "epoch_eval_j": "energy/epoch_eval_j",
    "epoch_train_s": "time/epoch_train_s",
    "epoch_eval_s": "time/epoch_eval_s",
    "lr": "optimizer/lr",
    "components_j": "energy/components",  # cumulative per component: energy/components/<name>_j
    "epoch_components_j": "energy/epoch_components",
}
# per-epoch values whose last one is no run figure, or repeats one under another name
# (eval/accuracy's last is metrics/final_accuracy): charts only, kept out of the summary
HISTORY_ONLY = ("epoch", "train/loss", "eval/accuracy", "eval/loss", "train/steps", "time/training_wall_s",
                "optimizer/lr", "energy/epoch_*", "time/epoch_*", "eval/tasks/*")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        elif isinstance(v, bool) or isinstance(v, (int, float)) and math.isfinite(v):
            out[key] = v
        elif isinstance(v, float):  # nan / inf: W&B charts break on them, keep them as text
            out[key] = str(v)
        elif isinstance(v, str):
            out[key] = v
    return out


def history_row(row: dict[str, Any]) -> dict[str, Any]:
    """One result.json history row under the W&B names (``HISTORY_NAMES``; other keys go to ``eval/``)."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if k == "epoch":
            out["epoch"] = v
        elif k in ("components_j", "epoch_components_j") and isinstance(v, dict):
            out.update(_flatten({f"{n}_j": j for n, j in v.items()}, HISTORY_NAMES[k] + "/"))
        elif isinstance(v, dict):
            out.update(_flatten(v, f"eval/{k}/"))
        else:
            out.update(_flatten({HISTORY_NAMES.get(k, f"eval/{k}"): v}))
    return out


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The resolved config as dotted leaf keys (``optimizer.lr``, ``optimizer.name``), so every swept key
    is a column of W&B's runs table and an axis of its parallel-coordinates panel as it stands."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flat_config(v, key + "."))
        else:
            out[key] = v
    return out


def wandb_mode(cfg_mode: str) -> str:
    """The mode a run uses: ``$WANDB_MODE`` wins over ``tracking.mode`` (cluster admins set it)."""
    return os.environ.get("WANDB_MODE") or cfg_mode


class WandbTracker(Tracker):
    """Sends per-epoch history and the result's headline figures to one W&B run."""

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self.run: Optional[Any] = None
        self.defined: set[str] = set()  # metric names given their summary rule

    def start(self, run_info: dict[str, Any], config: dict[str, Any], overrides: list[str]) -> None:
        """Open the W&B run (offline by default; init is bounded by ``tracking.init_timeout_s``)."""
        import wandb

        cfg = self.cfg
        run_dir = cfg.dir or run_info.get("dir") or "."
        os.makedirs(run_dir, exist_ok=True)
        group = cfg.group or run_info.get("sweep_id")
        # wandb keeps its own log records (e.g. the traceback of a failed init) in the run's
        # debug.log and does not propagate them, so the user sees one warning from SafeTracker
        self.run = self._init(wandb, run_info, config, overrides, run_dir, group)
        # charts plot against the epoch, not W&B's internal step counter; the epoch itself is no run figure
        self.run.define_metric("epoch", summary="none")
        self.run.define_metric("*", step_metric="epoch")

    def _init(
        self,
        wandb: Any,
        run_info: dict[str, Any],
        config: dict[str, Any],
        overrides: list[str],
        run_dir: str,
        group: Any,
    ) -> Any:
        cfg = self.cfg
        return wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            group=str(group) if group is not None else None,
            job_type=cfg.job_type,
            tags=list(cfg.tags) or None,
            name=run_info.get("name") or run_info.get("id"),
            dir=run_dir,
            mode=wandb_mode(cfg.mode),
            config={**flat_config(config), "overrides": list(overrides), "powertrain_run_id": run_info.get("id")},
            # a new run per call, also when an in-process multirun left one open; finish() below
            # closes exactly this run
            reinit="create_new",
            settings=wandb.Settings(init_timeout=float(cfg.init_timeout_s), console="off", silent=True),
        )

    def log_epoch(self, row: dict[str, Any]) -> None:
        """Log one epoch under the W&B names (``history_row``; None values are skipped)."""
        if self.run is None:
            return
        logged = history_row(row)
        for key in logged.keys() - self.defined:  # before its first value: W&B applies the rule from then on
            if key != "epoch" and any(fnmatch(key, pattern) for pattern in HISTORY_ONLY):
                self.run.define_metric(key, step_metric="epoch", summary="none")
            self.defined.add(key)
        self.run.log(logged)

    def finish(self, result: dict[str, Any]) -> None:
        """Write the headline figures to the summary and close the run (always closes it)."""
        if self.run is None:
            return
        run, self.run = self.run, None
        try:
            summary = {k.replace(".", "/"): get_dotted(result, k, None) for k in SUMMARY_KEYS}
            run.summary.update({k: v for k, v in summary.items() if v is not None})
        finally:
            run.finish(exit_code=0 if result.get("status") in USABLE else 1)
