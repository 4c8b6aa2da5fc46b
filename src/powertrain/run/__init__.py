"""One run, start to result: build everything, train, account energy and carbon, write result.json.

``run`` takes a validated ``RunConfig`` and a run directory; it knows nothing about Hydra. Whatever
happens (an exception, a non-finite loss, a budget, SIGTERM, Ctrl-C), ``RunSession.finish`` writes result.json;
while it trains, ``progress`` keeps a ``running`` result.json and a checkpoint after every epoch.

- ``session``: ``RunSession``, the steps of one run (open, train, finish)
- ``build``: the device, the meter and the training setup, shared with ``launch.predict``
- ``checkpoint``, ``signals``: resumable state, and SIGTERM/SIGUSR2/SIGINT as a stop request
- ``progress``: the background writer of the running result.json and checkpoint, and the heartbeat
- ``fill``: the result's metrics, energy and carbon sections and the printed summary
- ``distributed``: a rank's part of a DDP run; ``prune``: a trial's side of Optuna pruning

Layer: imports paradigms, train, tracking, energy, hardware, carbon, results and config.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

from powertrain.config import ConfigError, RunConfig
from powertrain.results import exit_code

log = logging.getLogger("powertrain")


def run(cfg: RunConfig, run_dir: Path, overrides: Optional[list[str]] = None,
        sweep_id: Optional[str] = None, config_dict: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Train one setup and return its result (also written to ``run_dir/result.json``)."""
    from powertrain.run.distributed import detect_world
    from powertrain.run.session import RunSession

    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    session = RunSession(cfg, run_dir, list(overrides or []), sweep_id, config_dict, detect_world())
    try:
        session.open()
        session.train()
    except ConfigError as e:
        session.result["error"] = str(e)
        # a refused resume leaves the preempted run's result.json (and checkpoint) as they were
        session.keep_previous_result = e.key in ("resume", "hydra.run.dir")  # or a live run's
        raise
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training: result.json still follows
        session.interrupted()
    except Exception as e:
        session.failed(e)
        log.error("run failed: %s", session.result["error"])
    finally:
        session.finish()
    return session.result


__all__ = ["run", "exit_code"]
