"""The run's checkpoint: everything a later attempt needs to continue exactly where this one stopped.

One file per run directory (``results.CHECKPOINT_FILE``), written atomically. Only a preempted attempt of
the *same* config is continued, so a requeue never mixes two setups in one ledger.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

from powertrain.config.errors import ConfigError
from powertrain.results import CHECKPOINT_FILE


class Checkpoint:
    """``run_dir/checkpoint.pt``: saves the training state and loads a resumable one."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / CHECKPOINT_FILE

    def save(self, model: Any, optimizer: Any, scheduler: Any, fit_state: Any, ledger: Any,
             attempts: list[dict[str, Any]], status: str, config: dict[str, Any]) -> None:
        """Atomically save everything a later attempt needs to continue exactly here."""
        import torch

        tmp = self.path.with_suffix(".tmp")
        torch.save({
            "status": status,
            "config_json": config_json(config),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": _rng_state(),
            "fit_state": asdict(fit_state),
            "ledger": ledger.to_dict(),
            "attempts": attempts,
        }, tmp)
        os.replace(tmp, self.path)

    def load(self) -> dict[str, Any]:
        import torch

        return torch.load(self.path, map_location="cpu", weights_only=True)

    def resumable(self, config: dict[str, Any]) -> Optional[dict[str, Any]]:
        """The checkpoint of a preempted attempt of *this* run, or None (ConfigError: another config)."""
        if not self.path.exists():
            return None
        ck = self.load()
        if ck.get("status") != "preempted":
            return None  # a finished run's checkpoint in a reused directory is not continued
        now = config_json(config)
        if ck.get("config_json") != now:
            diff = _config_diff(json.loads(ck["config_json"]), json.loads(now))
            raise ConfigError("resume", str(self.path.parent),
                              f"the config of the preempted run there (differs in {diff}); pass the same "
                              "overrides to resume it, or choose another run directory")
        return ck

    @staticmethod
    def restore(ck: dict[str, Any], model: Any, optimizer: Any, scheduler: Any) -> None:
        """Put a resumable checkpoint's weights, optimizer, schedule and RNG back in place."""
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        if scheduler is not None and ck["scheduler"] is not None:
            scheduler.load_state_dict(ck["scheduler"])
        _set_rng_state(ck["rng"])


def _rng_state() -> dict[str, Any]:
    import torch

    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def config_json(config: dict[str, Any]) -> str:
    """The config as attempts of one run must share it (tracking, verbosity and resume may differ)."""
    comparable = {k: v for k, v in config.items() if k not in ("tracking", "verbose", "resume")}
    return json.dumps(comparable, sort_keys=True, default=str)


def _config_diff(old: Any, new: Any, prefix: str = "") -> str:
    """The first few dotted keys that differ between two config dicts, as ``key: old -> new``."""
    out: list[str] = []

    def walk(a: Any, b: Any, key: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k), b.get(k), f"{key}.{k}" if key else k)
        elif a != b:
            out.append(f"{key}: {a!r} -> {b!r}")

    walk(old, new, prefix)
    return ", ".join(out[:3]) + (" ..." if len(out) > 3 else "")
