"""Experiment trackers: where a run's curves and headline figures are sent besides result.json.

result.json is the source of truth and is written before any tracker sees the result; a tracker must
never fail a run (its errors become one warning).

Layer: imports ``results`` and ``config``; ``run`` starts a tracker per run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("powertrain")


class Tracker:
    """The no-op tracker (``tracking=none``) and the interface every tracker implements."""

    def start(self, run_info: dict[str, Any], config: dict[str, Any], overrides: list[str]) -> None:
        """Open the tracker's run. ``run_info`` holds id, dir, sweep_id (None outside a multirun)."""

    def log_epoch(self, row: dict[str, Any]) -> None:
        """One row of per-epoch history (epoch, loss, accuracy, energy per component, carbon, ...)."""

    def finish(self, result: dict[str, Any]) -> None:
        """Close the run with the final result (the content of result.json). Always called."""


class SafeTracker(Tracker):
    """Wraps a tracker so that any error becomes a single warning and the tracker goes quiet."""

    def __init__(self, inner: Tracker, name: str):
        self.inner, self.name, self.failed = inner, name, False

    def _call(self, what: str, *args: Any) -> None:
        if self.failed and what != "finish":
            return
        try:
            getattr(self.inner, what)(*args)
        except Exception as e:  # a tracker must never fail the run
            if not self.failed:
                log.warning("%s tracking disabled for this run (%s failed: %s)", self.name, what,
                            str(e).splitlines()[0] if str(e) else type(e).__name__)
            self.failed = True

    def start(self, run_info: dict[str, Any], config: dict[str, Any], overrides: list[str]) -> None:
        self._call("start", run_info, config, overrides)

    def log_epoch(self, row: dict[str, Any]) -> None:
        self._call("log_epoch", row)

    def finish(self, result: dict[str, Any]) -> None:
        self._call("finish", result)


def _wandb(cfg: Any) -> Tracker:
    from powertrain.tracking.wandb import WandbTracker  # wandb only for runs that track to it

    return SafeTracker(WandbTracker(cfg), "wandb")


# ``tracking.name`` -> builder: the names config validation allows
TRACKERS: dict[str, Callable[[Any], Tracker]] = {"none": lambda cfg: Tracker(), "wandb": _wandb}


def build_tracker(cfg: Any) -> Tracker:
    """The tracker named by ``cfg.name`` (a ``TrackingConfig``), wrapped so it cannot fail the run."""
    return TRACKERS[cfg.name](cfg)
