"""NVIDIA GPU energy through NVML (``pynvml``, from the nvidia-ml-py package).

Per visible GPU, best first:
1. ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load, Volta and newer): ``nvml_energy_counter``.
2. ``nvmlDeviceGetPowerUsage`` (mW) sampled in a background thread and integrated with the trapezoid
   rule: ``nvml_power_integration``.
3. TDP × utilisation: ``gpu_tdp_utilization_estimate``.
If NVML fails mid-run the joules so far are kept and the GPU carries on as an estimate, flagged.

Which GPUs are visible follows CUDA: ``CUDA_VISIBLE_DEVICES`` (indices, ``GPU-`` UUIDs or unique
prefixes of them, ``MIG-`` ids), else Slurm's ``SLURM_STEP_GPUS``/``SLURM_JOB_GPUS``, else all. Indices
in ``CUDA_VISIBLE_DEVICES`` are taken as NVML (PCI bus) order, which is CUDA's order only with
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` on machines mixing GPU models; UUIDs are unambiguous.

pynvml is imported only here, and only when a run uses a GPU, so CPU runs start without it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Optional

from powertrain.energy.base import MeasuringSource, PeriodicThread, Source
from powertrain.energy.estimate import DEFAULT_GPU_TDP_W, GpuEstimate

log = logging.getLogger(__name__)

METHOD_COUNTER = "nvml_energy_counter"
METHOD_POWER = "nvml_power_integration"
MIG_NOTE = (
    "MIG instance: NVML reports the energy of the whole physical GPU, shared with the other instances on it"
)


def load_pynvml() -> ModuleType:
    """Import pynvml (raises ImportError if nvidia-ml-py is not installed)."""
    import pynvml

    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Session:
    """One ``nvmlInit`` shared by the sources built together; the last to stop shuts NVML down."""

    def __init__(self, nv: ModuleType):
        self.nv, self.users = nv, 0
        self._lock = threading.Lock()  # a sampler thread may build its fallback while others stop

    def lease(self) -> Callable[[], None]:
        """Count one more user; returns its release, which acts once however often it is called."""
        with self._lock:
            self.users += 1
        held = True

        def release() -> None:
            nonlocal held
            with self._lock:
                if not held:
                    return
                held = False
                self.users -= 1
                last = self.users == 0
            if last:
                try:
                    self.nv.nvmlShutdown()
                except self.nv.NVMLError:
                    pass  # shutting down a failed driver must not end the run

        return release


@dataclass
class _Device:
    index: int
    handle: Any
    uuid: str
    minor: Optional[int]
    mig_enabled: bool
    mig_uuids: list[str]


@dataclass
class GpuTarget:
    """A physical GPU this process may use, as it will be metered."""

    ordinal: int  # the CUDA ordinal (torch's cuda:N) of its first visible entry
    nvml_index: int
    handle: Any  # the physical GPU: MIG instances are metered through their parent
    uuid: str
    mig_enabled: bool = False
    mig_uuids: list[str] = field(default_factory=list)  # the visible MIG instances on it


def _enumerate(nv: ModuleType) -> list[_Device]:
    devices = []
    for i in range(nv.nvmlDeviceGetCount()):
        handle = nv.nvmlDeviceGetHandleByIndex(i)
        try:
            minor: Optional[int] = nv.nvmlDeviceGetMinorNumber(handle)
        except nv.NVMLError:
            minor = None
        try:
            mig = nv.nvmlDeviceGetMigMode(handle)[0] == nv.NVML_DEVICE_MIG_ENABLE
        except nv.NVMLError:  # NotSupported on GPUs without MIG
            mig = False
        mig_uuids = []
        if mig:
            for j in range(nv.nvmlDeviceGetMaxMigDeviceCount(handle)):
                try:
                    mig_handle = nv.nvmlDeviceGetMigDeviceHandleByIndex(handle, j)
                except nv.NVMLError:  # NotFound: no instance in this slot
                    continue
                mig_uuids.append(_text(nv.nvmlDeviceGetUUID(mig_handle)))
        devices.append(_Device(i, handle, _text(nv.nvmlDeviceGetUUID(handle)), minor, mig, mig_uuids))
    return devices


def _resolve(token: str, devices: list[_Device]) -> Optional[tuple[_Device, Optional[str]]]:
    """The device (and MIG id) a CUDA_VISIBLE_DEVICES entry names, or None if CUDA would reject it."""
    if token.isdigit():
        i = int(token)
        return (devices[i], None) if i < len(devices) else None
    if token.startswith("MIG-") and "/" in token:
        # the pre-R470 form MIG-GPU-<uuid>/<gi>/<ci> names its parent GPU directly
        parent = token[len("MIG-") :].split("/")[0]
        matches = [(d, token) for d in devices if d.uuid == parent]
    elif token.startswith("MIG-"):
        matches = [(d, m) for d in devices for m in d.mig_uuids if m.startswith(token)]
    elif token.startswith("GPU-"):
        # CUDA accepts any unique prefix of a UUID
        matches = [(d, None) for d in devices if d.uuid.startswith(token)]
    else:
        return None
    return matches[0] if len(matches) == 1 else None


def _int_list(text: str) -> list[int]:
    """Parse Slurm's GPU list: "0,2" or "0-3" (entries that are not numbers are skipped)."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        if lo.isdigit() and (not hi or hi.isdigit()):
            out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def visible_gpus(nv: ModuleType, environ: Optional[Mapping[str, str]] = None) -> tuple[list[GpuTarget], str]:
    """The physical GPUs this process may use, in CUDA order, and which setting decided it.

    Several visible MIG instances of one GPU become one target, so its energy is not counted twice.
    """
    env = os.environ if environ is None else environ
    devices = _enumerate(nv)
    picks: list[tuple[_Device, Optional[str]]] = []
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    slurm_var = next((v for v in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS") if env.get(v)), None)
    if cvd is not None:
        source = f"CUDA_VISIBLE_DEVICES={cvd!r}"
        for token in cvd.split(","):
            resolved = _resolve(token.strip(), devices)
            if resolved is None:
                break  # CUDA ignores an invalid entry and every entry after it
            picks.append(resolved)
    elif slurm_var is not None:
        source = f"{slurm_var}={env[slurm_var]!r}"
        # Slurm's ids are the /dev/nvidiaN minor numbers from gres.conf, not NVML indices
        by_id = {d.minor if d.minor is not None else d.index: d for d in devices}
        picks = [(by_id[i], None) for i in _int_list(env[slurm_var]) if i in by_id]
    else:
        source = "all GPUs NVML reports"
        picks = [(d, None) for d in devices]
    targets: list[GpuTarget] = []
    by_index: dict[int, GpuTarget] = {}
    for ordinal, (dev, mig) in enumerate(picks):
        target = by_index.get(dev.index)
        if target is None:
            target = GpuTarget(ordinal, dev.index, dev.handle, dev.uuid, dev.mig_enabled)
            by_index[dev.index] = target
            targets.append(target)
        if mig is not None:
            target.mig_uuids.append(mig)
    return targets, source


def _gpu_tdp(nv: ModuleType, handle: Any, override_w: Optional[float]) -> tuple[float, str]:
    if override_w is not None:
        return float(override_w), "hardware profile"
    try:
        return nv.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0, "NVML enforced power limit"
    except nv.NVMLError:
        return DEFAULT_GPU_TDP_W, f"assumption: power limit unreadable, default {DEFAULT_GPU_TDP_W:g} W"


class _NvmlGpuEstimate(GpuEstimate):
    """A GPU estimate that holds an NVML session (for utilisation) and releases it on stop."""

    def __init__(self, session: _Session, **kwargs: Any):
        super().__init__(**kwargs)
        self.session = session
        self._release_session = session.lease()

    def stop(self) -> None:
        self._release_session()


class NvmlGpuSource(MeasuringSource):
    """One physical GPU's energy from NVML's counter or integrated power samples.

    Args:
        nv: the pynvml module.
        target: the GPU.
        method: ``nvml_energy_counter`` or ``nvml_power_integration``.
        sample_hz: power sampling rate for power integration.
        fallback: builds the estimate used if NVML fails mid-run.
    """

    kind = "gpu"

    def __init__(
        self,
        nv: ModuleType,
        target: GpuTarget,
        method: str,
        session: _Session,
        fallback: Callable[[], Source],
        sample_hz: float = 10.0,
        reason: Optional[str] = None,
    ):
        super().__init__()
        self.hardware_errors = (nv.NVMLError,)
        self.nv, self.target, self.session, self._fallback_factory = nv, target, session, fallback
        self.name, self.method, self.reason = f"gpu:{target.ordinal}", method, reason
        self.sample_hz = sample_hz
        self._sampler: Optional[PeriodicThread] = None
        self._release_session = session.lease()
        # state of the measurement, in SI units from the boundary on
        self._counter0_j = 0.0
        self._power_integral_j = 0.0
        self._t_last_s = 0.0
        self._p_last_w = 0.0
        self.samples = 0

    def _counter_j(self) -> float:
        return self.nv.nvmlDeviceGetTotalEnergyConsumption(self.target.handle) / 1000.0  # mJ → J

    def _power_w(self) -> float:
        return self.nv.nvmlDeviceGetPowerUsage(self.target.handle) / 1000.0  # mW → W

    def _begin(self) -> None:
        if self.method == METHOD_COUNTER:
            self._counter0_j = self._counter_j()
        else:
            self._p_last_w, self._t_last_s = self._power_w(), time.perf_counter()
            self.samples = 1
            self._sampler = PeriodicThread(self.read_j, 1.0 / self.sample_hz, f"powertrain-{self.name}-power")
            self._sampler.start()

    def _measure_j(self) -> float:
        if self.method == METHOD_COUNTER:
            return self._counter_j() - self._counter0_j
        power_w, t_s = self._power_w(), time.perf_counter()
        self._power_integral_j += (self._p_last_w + power_w) / 2 * (t_s - self._t_last_s)
        self._p_last_w, self._t_last_s = power_w, t_s
        self.samples += 1
        return self._power_integral_j

    def _make_fallback(self) -> Source:
        if self._sampler is not None:
            # signal only: the sampler may be waiting for the lock this thread holds, so joining here
            # would stall; it exits at its next tick
            self._sampler.stop(timeout_s=0.0)
        return self._fallback_factory()

    def extra(self) -> dict[str, Any]:
        out: dict[str, Any] = {"nvml_index": self.target.nvml_index, "uuid": self.target.uuid}
        if self.target.mig_enabled:
            out["shared_device"] = True
            out["note"] = MIG_NOTE
            if self.target.mig_uuids:
                out["mig_uuids"] = list(self.target.mig_uuids)
        if self.method == METHOD_POWER:
            out["sample_hz"] = self.sample_hz
        out.update(super().extra())
        return out

    def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
        super().stop()
        self._release_session()


def _guess_gpu_count(environ: Mapping[str, str]) -> int:
    """How many GPUs this process uses when NVML cannot say: torch if loaded, else the environment."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            n = int(torch.cuda.device_count())
            if n > 0:
                return n
        except Exception:  # a broken CUDA install should not stop metering
            pass
    cvd = environ.get("CUDA_VISIBLE_DEVICES")
    if cvd:
        return max(1, len([t for t in cvd.split(",") if t.strip()]))
    return 1


def build_gpu_sources(
    energy_cfg: Any,
    gpu_tdp_w: Optional[float] = None,
    environ: Optional[Mapping[str, str]] = None,
    force_estimate: bool = False,
) -> list[Source]:
    """One source per visible physical GPU: NVML counter > power integration > estimate.

    Never raises for a missing or failing driver: the GPU is then estimated and the reason is given.

    Args:
        energy_cfg: an ``EnergyConfig`` (``sample_hz``, ``gpu_idle_share``, ``gpu_indices``).
        gpu_tdp_w: the GPU's TDP from the hardware profile (None = NVML's power limit).
        environ: environment to read visible devices from (default ``os.environ``).
        force_estimate: estimate even where NVML could measure (implied by ``energy.meter=estimate``).
    """
    env = os.environ if environ is None else environ
    force_estimate = force_estimate or getattr(energy_cfg, "meter", "auto") == "estimate"
    idle_share = getattr(energy_cfg, "gpu_idle_share", 0.15)
    sample_hz = float(getattr(energy_cfg, "sample_hz", 10.0))
    indices = getattr(energy_cfg, "gpu_indices", None)

    def blind_estimates(reason: str) -> list[Source]:
        tdp_w, tdp_source = (
            (float(gpu_tdp_w), "hardware profile")
            if gpu_tdp_w is not None
            else (DEFAULT_GPU_TDP_W, f"assumption: no NVML, default {DEFAULT_GPU_TDP_W:g} W")
        )
        ordinals = indices if indices is not None else range(_guess_gpu_count(env))
        return [
            GpuEstimate(tdp_w, idle_share, None, name=f"gpu:{i}", reason=reason, tdp_source=tdp_source)
            for i in ordinals
        ]

    try:
        nv = load_pynvml()
    except ImportError as err:
        return blind_estimates(f"NVML unavailable: nvidia-ml-py not importable ({err})")
    try:
        nv.nvmlInit()
    except nv.NVMLError as err:
        return blind_estimates(f"NVML unavailable: nvmlInit failed ({type(err).__name__}: {err})")
    session = _Session(nv)
    release = session.lease()  # held while building, so a source that fails early cannot shut NVML down
    try:
        try:
            targets, decided_by = visible_gpus(nv, env)
        except nv.NVMLError as err:
            return blind_estimates(f"NVML cannot list GPUs ({type(err).__name__}: {err})")
        if indices is not None:
            targets = [t for t in targets if t.ordinal in set(indices)]
        if not targets:
            return blind_estimates(f"no NVML GPU matches {decided_by}")
        return [
            _gpu_source(nv, session, t, gpu_tdp_w, idle_share, sample_hz, force_estimate) for t in targets
        ]
    finally:
        release()


def _gpu_source(
    nv: ModuleType,
    session: _Session,
    target: GpuTarget,
    gpu_tdp_w: Optional[float],
    idle_share: float,
    sample_hz: float,
    force_estimate: bool,
) -> Source:
    tdp_w, tdp_source = _gpu_tdp(nv, target.handle, gpu_tdp_w)
    name = f"gpu:{target.ordinal}"

    def utilization() -> float:
        return nv.nvmlDeviceGetUtilizationRates(target.handle).gpu / 100.0  # percent → fraction

    def estimate(reason: Optional[str] = None) -> Source:
        return _NvmlGpuEstimate(
            session, tdp_w=tdp_w, idle_share=idle_share, util_fn=utilization, name=name,
            reason=reason, tdp_source=tdp_source,
        )  # fmt: skip

    if force_estimate:
        return estimate("estimate requested (energy.meter=estimate)")
    try:
        nv.nvmlDeviceGetTotalEnergyConsumption(target.handle)
        return NvmlGpuSource(nv, target, METHOD_COUNTER, session, estimate, sample_hz)
    except nv.NVMLError as counter_err:
        why = f"no NVML energy counter ({counter_err}; needs Volta or newer)"
    try:
        nv.nvmlDeviceGetPowerUsage(target.handle)
        reason = f"{why}, integrating power sampled at {sample_hz:g} Hz"
        return NvmlGpuSource(nv, target, METHOD_POWER, session, estimate, sample_hz, reason=reason)
    except nv.NVMLError as power_err:
        return estimate(f"{why}, and no NVML power reading ({power_err})")
