"""NVIDIA GPU energy through NVML (``pynvml``, from the nvidia-ml-py package).

Per GPU the run uses (nvml_devices.py says which), best first:
1. ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load, Volta and newer): ``nvml_energy_counter``.
   The counter advances in steps (~10-100 ms apart), so a window shorter than a few steps is billed
   instantaneous power × time instead, and flagged ``short_window``.
2. Power sampled in a background thread and integrated with the trapezoid rule: ``nvml_power_integration``.
   Power is the instantaneous field ``NVML_FI_DEV_POWER_INSTANT`` where the driver has it, because
   ``nvmlDeviceGetPowerUsage`` is a 1-s average on Ampere (except GA100) and newer.
3. TDP × utilisation: ``gpu_tdp_utilization_estimate``.
If NVML fails mid-run the joules so far are kept and the GPU carries on as an estimate, flagged.

A GPU shared with others (a MIG slice, or other processes computing on it) is never a plain measurement:
a MIG slice is billed its share of the parent's counter (``*_attributed``, ``share``, ``share_basis``),
a GPU with other processes is flagged ``shared_device``; both carry ``measured: false``.

pynvml is imported only here and in nvml_devices.py, and only when a run uses a GPU.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any, Optional

from powertrain.energy.base import MeasuringSource, Source
from powertrain.energy.estimate import DEFAULT_GPU_TDP_W, GpuEstimate
from powertrain.energy.nvml_devices import GpuTarget, Session, load_pynvml, run_gpus, visible_gpus
from powertrain.energy.periodic import PeriodicThread

__all__ = ["GpuTarget", "NvmlGpuSource", "build_gpu_sources", "load_pynvml", "visible_gpus"]

log = logging.getLogger(__name__)

METHOD_COUNTER = "nvml_energy_counter"
METHOD_POWER = "nvml_power_integration"
ATTRIBUTED = "_attributed"  # suffix of a method billing a share of a shared GPU
MIG_NOTE = (
    "MIG instance: NVML reports the energy of the whole physical GPU, shared with the other instances on it"
)
# The counter's step is 10-100 ms depending on the GPU (Zeus, NVML docs); assume the slowest, and treat
# a window shorter than three steps as too short for the counter (its error could exceed a third).
COUNTER_PERIOD_S = 0.1
SHORT_WINDOW_S = 3 * COUNTER_PERIOD_S


def _power_reader(nv: ModuleType, handle: Any) -> tuple[Callable[[], float], str]:
    """A function returning the GPU's power in watts, and what it reads (instantaneous or averaged)."""
    field_id = getattr(nv, "NVML_FI_DEV_POWER_INSTANT", None)

    def instant_w() -> float:
        (value,) = nv.nvmlDeviceGetFieldValues(handle, [field_id])
        if value.nvmlReturn != nv.NVML_SUCCESS:
            raise nv.NVMLError(value.nvmlReturn)
        return value.value.uiVal / 1000.0  # mW → W

    def usage_w() -> float:
        return nv.nvmlDeviceGetPowerUsage(handle) / 1000.0  # mW → W

    if field_id is not None:
        try:
            instant_w()
            return instant_w, "instantaneous (NVML_FI_DEV_POWER_INSTANT)"
        except (nv.NVMLError, AttributeError):  # an older driver or binding: no such field
            pass
    return usage_w, "nvmlDeviceGetPowerUsage (a 1-s average on Ampere and newer)"


def _mig_share(nv: ModuleType, target: GpuTarget) -> tuple[Optional[float], str]:
    """The run's share of a MIG-enabled GPU: its instances' GPU slices over the GPU's slices."""
    try:
        total = nv.nvmlDeviceGetMaxMigDeviceCount(target.handle)  # 7 slices on A100/H100, 4 on A30
        held = sum(nv.nvmlDeviceGetAttributes(h).gpuInstanceSliceCount for h in target.mig_handles)
    except nv.NVMLError as err:
        return None, f"MIG instance size unreadable ({type(err).__name__}); the whole GPU is billed"
    if not target.mig_handles or total <= 0 or held <= 0:
        return None, "MIG instance size unknown; the whole GPU is billed, an upper bound"
    return min(held / total, 1.0), f"MIG: {held} of {total} GPU slices (nvmlDeviceGetAttributes)"


def _other_processes(nv: ModuleType, handle: Any) -> list[int]:
    try:
        procs = nv.nvmlDeviceGetComputeRunningProcesses(handle)
    except nv.NVMLError:  # NotSupported in some containers: cannot tell, so nothing is claimed
        return []
    return sorted({p.pid for p in procs} - {os.getpid()})


class NvmlGpuSource(MeasuringSource):
    """One physical GPU's energy from NVML's counter or integrated power samples.

    Args:
        nv: the pynvml module.
        target: the GPU.
        method: ``nvml_energy_counter`` or ``nvml_power_integration``.
        session: the NVML session this source holds until ``stop``.
        fallback: builds the estimate used if NVML fails mid-run.
        sample_hz: power sampling rate for power integration.
        reason: why this method and not a better one.
        power_fn: the GPU's power in watts (default ``nvmlDeviceGetPowerUsage``).
        share: the run's share of a shared GPU (None: the whole GPU).
        share_basis: why the GPU is shared and how ``share`` was found; set means not a plain measurement.
    """

    kind = "gpu"

    def __init__(
        self,
        nv: ModuleType,
        target: GpuTarget,
        method: str,
        session: Session,
        fallback: Callable[[], Source],
        sample_hz: float = 10.0,
        reason: Optional[str] = None,
        power_fn: Optional[Callable[[], float]] = None,
        share: Optional[float] = None,
        share_basis: Optional[str] = None,
    ):
        super().__init__()
        self.hardware_errors = (nv.NVMLError,)
        self.nv, self.target, self.session, self._fallback_factory = nv, target, session, fallback
        self.name, self.method, self.reason = f"gpu:{target.ordinal}", method, reason
        self.sample_hz = sample_hz
        self.power_fn = power_fn or (lambda: nv.nvmlDeviceGetPowerUsage(target.handle) / 1000.0)
        self.share, self.share_basis = share, share_basis
        if share_basis is not None:  # shared: the counter is the device's, the billing is attributed
            self.measured = False
            if share is not None:
                self.method = method + ATTRIBUTED
        self._sampler: Optional[PeriodicThread] = None
        self._release_session = session.lease()
        # state of the measurement, in SI units from the boundary on
        self._counter0_j = 0.0
        self._power_integral_j = 0.0
        self._t_last_s = 0.0
        self._p_last_w = 0.0
        self.samples = 0
        self._warned_short = False

    def _counter_j(self) -> float:
        return self.nv.nvmlDeviceGetTotalEnergyConsumption(self.target.handle) / 1000.0  # mJ → J

    def _begin(self) -> None:
        if self.method.startswith(METHOD_COUNTER):
            self._counter0_j = self._counter_j()
        else:
            self._p_last_w, self._t_last_s = self.power_fn(), time.perf_counter()
            self.samples = 1
            self._sampler = PeriodicThread(self.read_j, 1.0 / self.sample_hz, f"powertrain-{self.name}-power")
            self._sampler.start()

    def _measure_j(self) -> float:
        scale = 1.0 if self.share is None else self.share
        if self.method.startswith(METHOD_COUNTER):
            return (self._counter_j() - self._counter0_j) * scale
        power_w, t_s = self.power_fn(), time.perf_counter()
        self._power_integral_j += (self._p_last_w + power_w) / 2 * (t_s - self._t_last_s) * scale
        self._p_last_w, self._t_last_s = power_w, t_s
        self.samples += 1
        return self._power_integral_j

    def read(self) -> tuple[float, float]:
        energy_j, measured_j = super().read()
        # a shared GPU's counter is measured, but the joules billed to this run are an attribution
        return energy_j, (0.0 if self.share_basis is not None else measured_j)

    def measured_j(self) -> float:
        return 0.0 if self.share_basis is not None else super().measured_j()

    def window(
        self, energy_j: float, measured_j: float, time_s: float
    ) -> tuple[float, float, dict[str, Any]]:
        """A window too short for the counter's steps is billed instantaneous power × time, flagged."""
        if self.fell_back or not self.method.startswith(METHOD_COUNTER) or time_s >= SHORT_WINDOW_S:
            return energy_j, measured_j, {}
        flags: dict[str, Any] = {
            "short_window": True,
            "short_window_note": (
                f"a {time_s * 1000:.0f} ms window is shorter than {SHORT_WINDOW_S * 1000:.0f} ms, three steps "
                f"of the NVML energy counter; billed NVML power × time"
            ),
        }
        if not self._warned_short:
            log.warning("%s: %s", self.name, flags["short_window_note"])
            self._warned_short = True
        try:
            power_w = self.power_fn()
        except self.nv.NVMLError:
            flags["short_window_note"] += " failed; the counter's steps are kept"
            return energy_j, measured_j, flags
        estimate_j = power_w * time_s * (1.0 if self.share is None else self.share)
        return estimate_j, (estimate_j if self.measured else 0.0), flags

    def _make_fallback(self) -> Source:
        if self._sampler is not None:
            # signal only: the sampler may be waiting for the lock this thread holds, so joining here
            # would stall; it exits at its next tick
            self._sampler.stop(timeout_s=0.0)
        return self._fallback_factory()

    def extra(self) -> dict[str, Any]:
        out: dict[str, Any] = {"nvml_index": self.target.nvml_index, "uuid": self.target.uuid}
        if self.target.mig_enabled:
            out["note"] = MIG_NOTE
            if self.target.mig_uuids:
                out["mig_uuids"] = list(self.target.mig_uuids)
        if self.share_basis is not None:
            out.update(shared_device=True, share=self.share, share_basis=self.share_basis)
        if self.method.startswith(METHOD_POWER):
            out["sample_hz"] = self.sample_hz
        out.update(super().extra())
        return out

    def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
        super().stop()
        self._release_session()


class _NvmlGpuEstimate(GpuEstimate):
    """A GPU estimate that holds an NVML session (for utilisation) and releases it on stop."""

    def __init__(self, session: Session, **kwargs: Any):
        super().__init__(**kwargs)
        self.session = session
        self._release_session = session.lease()

    def stop(self) -> None:
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
    ordinals: Optional[Sequence[int]] = None,
    cuda_uuid: Optional[Callable[[int], Optional[str]]] = None,
) -> list[Source]:
    """One source per physical GPU the run uses: NVML counter > power integration > estimate.

    Never raises for a missing or failing driver: the GPU is then estimated and the reason is given.

    Args:
        energy_cfg: an ``EnergyConfig`` (``sample_hz``, ``gpu_idle_share``, ``gpu_indices``).
        gpu_tdp_w: the GPU's TDP from the hardware profile, used where NVML has no power limit.
        environ: environment to read visible devices from (default ``os.environ``).
        force_estimate: estimate even where NVML could measure (implied by ``energy.meter=estimate``).
        ordinals: the CUDA ordinals the run computes on (None: every GPU it may use);
            ``energy.gpu_indices`` overrides them.
        cuda_uuid: ordinal -> CUDA's UUID, to map ordinals to NVML devices (default: torch's).
    """
    env = os.environ if environ is None else environ
    force_estimate = force_estimate or getattr(energy_cfg, "meter", "auto") == "estimate"
    idle_share = getattr(energy_cfg, "gpu_idle_share", 0.15)
    sample_hz = float(getattr(energy_cfg, "sample_hz", 10.0))
    indices = getattr(energy_cfg, "gpu_indices", None)
    wanted = list(indices) if indices is not None else (list(ordinals) if ordinals is not None else None)

    def blind_estimates(reason: str) -> list[Source]:
        tdp_w, tdp_source = (
            (float(gpu_tdp_w), "hardware profile")
            if gpu_tdp_w is not None
            else (DEFAULT_GPU_TDP_W, f"assumption: no NVML, default {DEFAULT_GPU_TDP_W:g} W")
        )
        numbers = wanted if wanted is not None else range(_guess_gpu_count(env))
        return [
            GpuEstimate(tdp_w, idle_share, None, name=f"gpu:{i}", reason=reason, tdp_source=tdp_source)
            for i in numbers
        ]

    try:
        nv = load_pynvml()
    except ImportError as err:
        return blind_estimates(f"NVML unavailable: nvidia-ml-py not importable ({err})")
    try:
        nv.nvmlInit()
    except nv.NVMLError as err:
        return blind_estimates(f"NVML unavailable: nvmlInit failed ({type(err).__name__}: {err})")
    session = Session(nv)
    release = session.lease()  # held while building, so a source that fails early cannot shut NVML down
    try:
        try:
            targets, decided_by = run_gpus(nv, wanted, env, cuda_uuid)
        except nv.NVMLError as err:
            return blind_estimates(f"NVML cannot list GPUs ({type(err).__name__}: {err})")
        if not targets:
            return blind_estimates(f"no NVML GPU matches {decided_by}")
        return [
            _gpu_source(nv, session, t, gpu_tdp_w, idle_share, sample_hz, force_estimate) for t in targets
        ]
    finally:
        release()


def _gpu_source(
    nv: ModuleType,
    session: Session,
    target: GpuTarget,
    gpu_tdp_w: Optional[float],
    idle_share: float,
    sample_hz: float,
    force_estimate: bool,
) -> Source:
    name = f"gpu:{target.ordinal}"
    if target.error is not None or target.handle is None:
        tdp_w = float(gpu_tdp_w) if gpu_tdp_w is not None else DEFAULT_GPU_TDP_W
        tdp_source = "hardware profile" if gpu_tdp_w is not None else f"assumption: default {tdp_w:g} W"
        reason = f"NVML cannot open this GPU ({target.error})"
        return GpuEstimate(tdp_w, idle_share, None, name=name, reason=reason, tdp_source=tdp_source)
    share: Optional[float] = None
    share_basis: Optional[str] = None
    if target.mig_enabled:
        share, share_basis = _mig_share(nv, target)
    else:
        others = _other_processes(nv, target.handle)
        if others:
            share_basis = (
                f"{len(others)} other process(es) compute on this GPU (pids {others[:5]}); "
                "the whole GPU is billed, an upper bound"
            )
    # the enforced limit is what the board may draw now (a lowered limit included); a profile's TDP is
    # the nominal figure, used only where NVML cannot say
    try:
        tdp_w, tdp_source = (
            nv.nvmlDeviceGetEnforcedPowerLimit(target.handle) / 1000.0,
            "NVML enforced power limit",
        )
    except nv.NVMLError:
        tdp_w, tdp_source = (
            (float(gpu_tdp_w), "hardware profile")
            if gpu_tdp_w is not None
            else (DEFAULT_GPU_TDP_W, f"assumption: power limit unreadable, default {DEFAULT_GPU_TDP_W:g} W")
        )
    scale = 1.0 if share is None else share

    def utilization() -> float:
        return nv.nvmlDeviceGetUtilizationRates(target.handle).gpu / 100.0  # percent → fraction

    def estimate(reason: Optional[str] = None) -> Source:
        return _NvmlGpuEstimate(
            session, tdp_w=tdp_w * scale, idle_share=idle_share, util_fn=utilization, name=name,
            reason=reason, tdp_source=tdp_source if share is None else f"{tdp_source} × share {share:.3g}",
        )  # fmt: skip

    if force_estimate:
        return estimate("estimate requested (energy.meter=estimate)")
    power_fn, power_kind = _power_reader(nv, target.handle)
    common = dict(sample_hz=sample_hz, power_fn=power_fn, share=share, share_basis=share_basis)
    try:
        nv.nvmlDeviceGetTotalEnergyConsumption(target.handle)
        return NvmlGpuSource(nv, target, METHOD_COUNTER, session, estimate, **common)
    except nv.NVMLError as counter_err:
        why = f"no NVML energy counter ({counter_err}; needs Volta or newer)"
    try:
        power_fn()
        reason = f"{why}, integrating {power_kind} power sampled at {sample_hz:g} Hz"
        return NvmlGpuSource(nv, target, METHOD_POWER, session, estimate, reason=reason, **common)
    except nv.NVMLError as power_err:
        return estimate(f"{why}, and no NVML power reading ({power_err})")
