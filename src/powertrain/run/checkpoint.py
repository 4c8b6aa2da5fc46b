"""The run's checkpoint: everything a later attempt needs to continue exactly where this one stopped.

One file per run directory (``results.CHECKPOINT_FILE``), written atomically: at the end, on preemption, and
while training (``run.progress``, after every epoch). Only an attempt of the *same* config that stopped
before its end (preempted, interrupted, lost) is continued, so a requeue never mixes two setups in one ledger.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Optional

from powertrain.config.errors import ConfigError
from powertrain.results import CHECKPOINT_FILE, RESUMABLE


class Checkpoint:
    """``run_dir/checkpoint.pt``: saves the training state and loads a resumable one."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / CHECKPOINT_FILE

    def save(self, model: Any, optimizer: Any, scheduler: Any, fit_state: Any, ledger: Any,
             attempts: list[dict[str, Any]], status: str, config_key: str) -> None:
        """Atomically save everything a later attempt needs to continue exactly here (``config_key``:
        ``config_json`` of the run's config). Written before this returns, so the weights go to
        ``torch.save`` as they are: a host copy first would hold the model and optimizer twice."""
        self.write(self.snapshot(model, optimizer, scheduler, fit_state, ledger, attempts, status, config_key,
                                 copy_tensors=False))

    @staticmethod
    def snapshot(model: Any, optimizer: Any, scheduler: Any, fit_state: Any, ledger: Any,
                 attempts: list[dict[str, Any]], status: str, config_key: str,
                 copy_tensors: bool = True) -> dict[str, Any]:
        """The checkpoint's content, with every tensor copied to host memory now (unless ``copy_tensors``
        is False: for a write that ends before training goes on).

        Training may go on while another thread writes it: nothing in the snapshot is shared with the
        live model, optimizer, fit state or ledger (history rows are never changed once appended, so
        their list is copied, not its rows).
        """
        import copy

        host = _host_copy if copy_tensors else _as_is
        st = dict(vars(fit_state), history=list(fit_state.history))
        return {
            "status": status,
            "config_json": config_key,
            "model": host(model.state_dict()),
            "optimizer": host(optimizer.state_dict()),
            "scheduler": copy.deepcopy(scheduler.state_dict()) if scheduler is not None else None,
            "rng": _rng_state(),
            "fit_state": st,
            "ledger": copy.deepcopy(ledger.to_dict()),
            "attempts": [dict(a) for a in attempts],
        }

    def write(self, snapshot: dict[str, Any]) -> None:
        """``torch.save`` to a temporary file beside the checkpoint, fsync, rename; no temporary file is
        left behind when it fails (a full disk), and the previous checkpoint stays as it was."""
        import torch

        from powertrain.results import open_temp

        fd, tmp = open_temp(self.path)
        try:
            with os.fdopen(fd, "wb") as f:
                sink = _Sink(f)
                try:
                    torch.save(snapshot, sink)
                except RuntimeError:
                    if sink.error is not None:  # torch turns the disk's OSError into a RuntimeError
                        raise sink.error from None
                    raise
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()

    def load(self) -> dict[str, Any]:
        import torch

        return torch.load(self.path, map_location="cpu", weights_only=True)

    def resumable(self, config_key: str, status: str, explicit: bool = False) -> Optional[dict[str, Any]]:
        """The checkpoint of an attempt of *this* run (``config_key``: ``config_json`` of its config) that
        stopped before its end, or None.

        ``status`` is what ``results.load_result`` says of the directory's result.json: ``preempted``,
        ``interrupted`` and ``lost`` runs are continued; a ``failed`` run that saved progress only when
        asked (``explicit``: ``resume=<dir>``); ``missing``/unreadable results go by the checkpoint's own
        status. Raises ConfigError for another config, or for a directory a live run is training in.
        """
        if status == "running":  # before its first save too: two runs must never share the files
            raise ConfigError("hydra.run.dir", str(self.path.parent),
                              "a directory no live run is using (its result.json says running, and its "
                              "process is alive; wait for it, or choose another run directory)")
        if not self.path.exists():
            return None
        ck = self.load()
        own = ck.get("status")
        ok = (status in RESUMABLE or (status == "failed" and explicit and own in ("running", "preempted"))
              or (status == "missing" and own in ("running", "preempted", "interrupted")))
        if not ok and explicit:
            raise ConfigError("resume", str(self.path.parent), f"a run with the checkpoint of an unfinished "
                              f"attempt (this one was saved when an attempt ended {own}; nothing to resume)")
        if not ok:
            return None  # a finished run's checkpoint in a reused directory is not continued
        if ck.get("config_json") != config_key:
            diff = _config_diff(json.loads(ck["config_json"]), json.loads(config_key))
            raise ConfigError("resume", str(self.path.parent),
                              f"the config of the {status} run there (differs in {diff}); pass the same "
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


class _Sink:
    """A file for ``torch.save`` that keeps the OSError of a failed write (a full disk: ENOSPC, EFBIG),
    which torch would report as ``RuntimeError: [enforce fail at inline_container.cc] ...``."""

    def __init__(self, f: Any):
        self.f, self.error = f, None

    def write(self, data: Any) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def _host_copy(obj: Any) -> Any:
    """``obj`` with every tensor detached and copied to the CPU (a state_dict's nested dicts and lists)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _host_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_host_copy(v) for v in obj)
    return obj


def _as_is(obj: Any) -> Any:
    return obj


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
    """The config as attempts of one run must share it (tracking, verbosity, resume and how progress is
    saved may differ: none of them changes what is trained)."""
    comparable = {k: v for k, v in config.items() if k not in ("tracking", "verbose", "resume", "checkpoint")}
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
