"""GPU power limit and locked clocks as run settings: set through NVML before training, always restored.

``hardware.gpu_power_limit_w`` and ``hardware.gpu_locked_clocks_mhz`` are set on the GPU the run uses,
after one-line checks (a GPU run, within NVML's constraints, root or CAP_SYS_ADMIN), and the previous
values come back at the end of every run: ``restore()`` in the run's ``finally`` (completed, failed,
diverged, preempted, exceptions) and a signal handler for a signal that arrives before the run's own.

Before anything is set, the previous values are written to a marker file per GPU (keyed by UUID). A
run killed outright (SIGKILL, OOM killer, node crash) leaves it behind; the next run on that GPU
restores from it and says so in its result (``hardware.gpu_knobs.restored_after_crash``).
NVML cannot read back a clock lock, so "previous" clocks are unlocked (``nvmlDeviceResetGpuLockedClocks``).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

from powertrain.config.checks import parse_clocks  # the config's check parses clocks with it too

log = logging.getLogger(__name__)

POWER_KEY = "hardware.gpu_power_limit_w"
CLOCKS_KEY = "hardware.gpu_locked_clocks_mhz"
_CAP_SYS_ADMIN = 21
_SIGNALS = ("SIGTERM", "SIGHUP", "SIGUSR2")
HOW_TO_GET_PERMISSION = (
    "root or CAP_SYS_ADMIN to change GPU settings: run as root (sudo), add the capability "
    "(docker run --cap-add SYS_ADMIN), or ask an admin; else leave the knob unset"
)


def requested(hardware: Any) -> dict[str, Any]:
    """The knobs a hardware config asks for, by config key (empty when none)."""
    out: dict[str, Any] = {}
    if getattr(hardware, "gpu_power_limit_w", None) is not None:
        out[POWER_KEY] = hardware.gpu_power_limit_w
    if getattr(hardware, "gpu_locked_clocks_mhz", None) is not None:
        out[CLOCKS_KEY] = hardware.gpu_locked_clocks_mhz
    return out


def check_gpu_run(hardware: Any, device_type: str) -> None:
    """A knob needs a GPU run: refuse it on a CPU run in one line."""
    from powertrain.config import ConfigError

    for key, value in requested(hardware).items():
        if device_type != "cuda":
            raise ConfigError(key, value, "null unless the run uses a GPU (hardware.device=cuda or cuda:N)")


def has_admin() -> bool:
    """Root, or CAP_SYS_ADMIN in this process's effective capabilities (what NVML needs to set knobs)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return True
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> _CAP_SYS_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def default_marker_dir() -> Path:
    """Where crash markers live: ``$POWERTRAIN_GPU_KNOB_DIR``, else ``~/.local/state/powertrain/gpu-knobs``."""
    env = os.environ.get("POWERTRAIN_GPU_KNOB_DIR")
    if env:
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "powertrain" / "gpu-knobs"


class GpuKnobs:
    """The knobs applied to one run's GPU; ``restore()`` puts the previous values back (idempotent).

    Attributes:
        record: what the result reports under ``hardware.gpu_knobs`` (empty when nothing was asked or
            restored); ``restore()`` fills in ``restored``.
    """

    def __init__(self, nv: Optional[ModuleType] = None, handle: Any = None, marker: Optional[Path] = None):
        self.nv, self.handle, self.marker = nv, handle, marker
        self.record: dict[str, Any] = {}
        self._previous_mw: Optional[int] = None
        self._clocks_locked = False
        self._done = nv is None
        self._lock = threading.Lock()
        self._handlers: dict[int, Any] = {}

    def restore(self) -> None:
        """Put the previous power limit back and unlock clocks, then drop the marker and NVML."""
        with self._lock:
            if self._done:
                return
            self._done = True
            nv, errors = self.nv, []
            assert nv is not None
            if self._previous_mw is not None:
                try:
                    nv.nvmlDeviceSetPowerManagementLimit(self.handle, self._previous_mw)
                except nv.NVMLError as err:
                    errors.append(f"power limit: {type(err).__name__}: {err}")
            if self._clocks_locked:
                try:
                    nv.nvmlDeviceResetGpuLockedClocks(self.handle)
                except nv.NVMLError as err:
                    errors.append(f"locked clocks: {type(err).__name__}: {err}")
            for knob in ("power_limit_w", "locked_clocks_mhz"):
                if knob in self.record:
                    self.record[knob]["restored"] = not errors
            if errors:  # the marker stays, so the next run on this GPU tries again
                self.record["restore_error"] = "; ".join(errors)
                log.error("GPU settings not restored (%s); the next run on this GPU will retry", errors)
            elif self.marker is not None:
                self.marker.unlink(missing_ok=True)
            try:
                nv.nvmlShutdown()
            except nv.NVMLError:
                pass
            self._uninstall_signals()

    # --- signals that arrive before the run's own handlers take over
    def install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for name in _SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                self._handlers[sig] = signal.signal(sig, self._on_signal)

    def _uninstall_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in self._handlers.items():
            if signal.getsignal(sig) == self._on_signal:  # not if a later handler sits on top
                signal.signal(sig, previous)

    def _on_signal(self, signum: int, frame: Any) -> None:
        """Restore, then behave as the handler before ours would have (also when chained to later)."""
        self.restore()
        previous = self._handlers.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL and frame is not None:  # a signal, not a deferred chain call
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


def _marker_path(marker_dir: Path, uuid: str) -> Path:
    return marker_dir / f"{uuid}.json"


def _restore_from_marker(nv: ModuleType, handle: Any, path: Path) -> dict[str, Any]:
    """Put back what a crashed run left in ``path``; returns what the result reports."""
    saved = json.loads(path.read_text())
    done: dict[str, Any] = {"marker": str(path), "left_by": saved.get("left_by")}
    if saved.get("power_limit_mw") is not None:
        nv.nvmlDeviceSetPowerManagementLimit(handle, int(saved["power_limit_mw"]))
        done["power_limit_w"] = saved["power_limit_mw"] / 1000.0
    if saved.get("clocks_locked"):
        nv.nvmlDeviceResetGpuLockedClocks(handle)
        done["locked_clocks_mhz"] = "unlocked"
    path.unlink(missing_ok=True)
    log.warning("restored GPU settings a crashed run left on %s: %s", path.stem, done)
    return done


def apply_gpu_knobs(
    hardware: Any,
    device: Any,
    marker_dir: Optional[Path] = None,
    environ: Optional[Mapping[str, str]] = None,
    cuda_uuid: Optional[Callable[[int], Optional[str]]] = None,
    is_privileged: Callable[[], bool] = has_admin,
) -> GpuKnobs:
    """Check and set the run's GPU knobs; also restore what a crashed run left on its GPU.

    Every check runs before anything is set. A CPU run, or a GPU run with neither knobs nor markers,
    returns at once without importing pynvml.

    Raises:
        ConfigError: one line naming the knob, its value and what is allowed.
    """
    from powertrain.config import ConfigError

    device_type = str(device).split(":")[0]
    check_gpu_run(hardware, device_type)
    asked = requested(hardware)
    marker_dir = default_marker_dir() if marker_dir is None else Path(marker_dir)
    if device_type != "cuda" or (not asked and not any(marker_dir.glob("*.json"))):
        return GpuKnobs()
    key, value = next(iter(asked.items())) if asked else (POWER_KEY, None)

    from powertrain.energy.nvml_devices import load_pynvml, run_gpus
    from powertrain.energy.select import _cuda_ordinal

    try:
        nv = load_pynvml()
        nv.nvmlInit()
    except Exception as err:  # ImportError or NVMLError: no NVML, no knobs
        if not asked:
            return GpuKnobs()
        raise ConfigError(
            key, value, f"a GPU NVML can reach (NVML unavailable: {type(err).__name__})"
        ) from None
    knobs = GpuKnobs(nv)
    try:
        targets, decided_by = run_gpus(nv, [_cuda_ordinal(device)], environ, cuda_uuid)
        if not targets:
            raise ConfigError(key, value, f"a GPU NVML can find (none matches {decided_by})")
        target = targets[0]
        if target.error is not None or target.handle is None:
            raise ConfigError(key, value, f"a GPU NVML can open ({target.error})")
        if asked and target.mig_enabled:
            raise ConfigError(
                key, value, "null on a MIG instance: the knob would change the whole shared GPU"
            )
        knobs.handle, knobs.marker = target.handle, _marker_path(marker_dir, target.uuid)
        if knobs.marker.exists():
            knobs.record["restored_after_crash"] = _restore_from_marker(nv, target.handle, knobs.marker)
        if not asked:
            knobs.restore()  # nothing of ours to hold: releases NVML
            return knobs
        _check(nv, target.handle, hardware, is_privileged)
        knobs.record.update(gpu=f"gpu:{target.ordinal}", uuid=target.uuid)
        _set(nv, knobs, hardware, target.uuid)
    except BaseException:
        knobs.restore()  # whatever was set comes back before the error reaches the user; NVML released
        raise
    knobs.install_signals()
    return knobs


def _check(nv: ModuleType, handle: Any, hardware: Any, is_privileged: Callable[[], bool]) -> None:
    from powertrain.config import ConfigError

    limit_w = hardware.gpu_power_limit_w
    if limit_w is not None:
        try:
            lo_mw, hi_mw = nv.nvmlDeviceGetPowerManagementLimitConstraints(handle)
        except nv.NVMLError as err:
            raise ConfigError(
                POWER_KEY, limit_w, f"null: this GPU has no settable power limit ({err})"
            ) from None
        if not lo_mw <= limit_w * 1000 <= hi_mw:
            raise ConfigError(
                POWER_KEY, limit_w, f"a limit in this GPU's range, {lo_mw / 1000:g}-{hi_mw / 1000:g} W"
            )
    clocks = parse_clocks(hardware.gpu_locked_clocks_mhz)
    if clocks is not None:
        try:
            memory_mhz = max(nv.nvmlDeviceGetSupportedMemoryClocks(handle))
            supported = nv.nvmlDeviceGetSupportedGraphicsClocks(handle, memory_mhz)
        except nv.NVMLError as err:
            raise ConfigError(
                CLOCKS_KEY, list(clocks), f"null: this GPU cannot lock clocks ({err})"
            ) from None
        lo, hi = min(supported), max(supported)
        if not (lo <= clocks[0] and clocks[1] <= hi):
            raise ConfigError(CLOCKS_KEY, list(clocks), f"clocks within this GPU's supported {lo}-{hi} MHz")
    if not is_privileged():
        key, value = (
            (POWER_KEY, limit_w) if limit_w is not None else (CLOCKS_KEY, hardware.gpu_locked_clocks_mhz)
        )
        raise ConfigError(key, value, HOW_TO_GET_PERMISSION)


def _set(nv: ModuleType, knobs: GpuKnobs, hardware: Any, uuid: str) -> None:
    from powertrain.config import ConfigError

    limit_w, clocks = hardware.gpu_power_limit_w, parse_clocks(hardware.gpu_locked_clocks_mhz)
    previous_mw = nv.nvmlDeviceGetPowerManagementLimit(knobs.handle) if limit_w is not None else None
    assert knobs.marker is not None
    # the marker goes down before the first change: a crash between the two still leaves a way back
    knobs.marker.parent.mkdir(parents=True, exist_ok=True)
    left_by = {"host": socket.gethostname(), "pid": os.getpid(),
               "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
    marker = {
        "uuid": uuid,
        "power_limit_mw": previous_mw,
        "clocks_locked": clocks is not None,
        "left_by": left_by,
    }
    knobs.marker.write_text(json.dumps(marker))
    key, value = POWER_KEY, limit_w
    try:
        if limit_w is not None:
            nv.nvmlDeviceSetPowerManagementLimit(knobs.handle, int(round(limit_w * 1000)))
            knobs._previous_mw = previous_mw
            applied_w = nv.nvmlDeviceGetEnforcedPowerLimit(knobs.handle) / 1000.0
            knobs.record["power_limit_w"] = {
                "requested": float(limit_w), "applied": applied_w, "previous": previous_mw / 1000.0,  # type: ignore[operator]
            }  # fmt: skip
        if clocks is not None:
            key, value = CLOCKS_KEY, list(clocks)
            nv.nvmlDeviceSetGpuLockedClocks(knobs.handle, clocks[0], clocks[1])
            knobs._clocks_locked = True
            knobs.record["locked_clocks_mhz"] = {
                "requested": list(clocks), "applied": list(clocks), "previous": "unlocked",
            }  # fmt: skip
    except nv.NVMLError_NoPermission:
        raise ConfigError(key, value, HOW_TO_GET_PERMISSION) from None
    except nv.NVMLError as err:
        raise ConfigError(
            key, value, f"a value NVML accepts on this GPU ({type(err).__name__}: {err})"
        ) from None
    log.info("GPU settings for this run on %s: %s", uuid, knobs.record)
