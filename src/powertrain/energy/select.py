"""Choose the best energy source for each component of this machine.

Measured where a counter exists (NVML for GPUs, RAPL for CPU packages and DRAM), a labelled estimate
where not, with the reason on the source; never a component silently left at zero.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Optional

from powertrain.energy.base import EnergyMeter, Source
from powertrain.energy.estimate import (
    DEFAULT_CPU_TDP_W,
    CpuEstimate,
    DramEstimate,
    cpu_model,
    lookup_cpu_tdp,
)
from powertrain.energy.rapl import DEFAULT_POWERCAP_ROOT, build_rapl_sources


def cpu_tdp(tdp_override: Optional[float] = None, model: Optional[str] = None) -> tuple[float, str]:
    """CPU TDP in watts and where it came from.

    Args:
        tdp_override: TDP from the hardware profile; wins when given.
        model: CPU model name (default: this machine's, from /proc/cpuinfo).
    """
    if tdp_override is not None:
        return float(tdp_override), "hardware profile"
    model = cpu_model() if model is None else model
    tdp, entry = lookup_cpu_tdp(model)
    if tdp is not None:
        return tdp, f"CPU TDP table entry {entry!r}"
    return (
        DEFAULT_CPU_TDP_W,
        f"assumption: {model!r} not in the CPU TDP table, default {DEFAULT_CPU_TDP_W:g} W",
    )


def device_sync(device: Any) -> Optional[Callable[[], None]]:
    """The window-edge synchronisation for a ``torch.device`` (or "cuda:N"): None on a CPU.

    Synchronises the run's own GPU: a bare ``torch.cuda.synchronize()`` waits on the current device
    (cuda:0 unless set), so on cuda:1 a window would close before its kernels finish, and would open a
    context on GPU 0 as well. Before CUDA is initialised no kernel can be queued, so it waits for nothing
    (and does not start CUDA for a meter built ahead of the model).
    """
    if str(device).split(":")[0] != "cuda":
        return None
    import torch

    target = torch.device(device)

    def sync() -> None:
        if torch.cuda.is_initialized():
            torch.cuda.synchronize(target if target.index is not None else None)

    return sync


def _cuda_ordinal(device: Any) -> int:
    """The CUDA ordinal of "cuda" / "cuda:N" / a torch.device: N, else the current device."""
    _, _, index = str(device).partition(":")
    if index.isdigit():
        return int(index)
    torch = sys.modules.get("torch")
    try:  # only a torch that already initialised CUDA is asked: metering must not start CUDA
        if torch is not None and torch.cuda.is_initialized():
            return int(torch.cuda.current_device())
    except Exception:
        pass
    return 0


def build_meter(
    energy_cfg: Any,
    device_type: Any = "cpu",
    cpu_tdp_w: Optional[float] = None,
    sync: Optional[Callable[[], None]] = None,
    gpu_tdp_w: Optional[float] = None,
    environ: Optional[dict[str, str]] = None,
    cuda_uuid: Optional[Callable[[int], Optional[str]]] = None,
) -> EnergyMeter:
    """Build the meter for this process (its sources start on the first window).

    Args:
        energy_cfg: an ``EnergyConfig``.
        device_type: the run's device: "cpu", "cuda", "cuda:N" or a ``torch.device``. GPU sources (and
            the pynvml import) only for CUDA, and only for the GPU the run uses: ``cuda:N``, or the
            current device for a bare "cuda"; ``energy.gpu_indices`` overrides it.
        cpu_tdp_w: CPU TDP from the hardware profile (None = look up the CPU model).
        sync: accelerator synchronisation for window boundaries (default: the run's GPU, see
            ``device_sync``; none on a CPU).
        gpu_tdp_w: GPU TDP from the hardware profile, for GPU estimates where NVML has no power limit.
        environ: environment for visible-device lookup (default ``os.environ``).
        cuda_uuid: ordinal -> CUDA's UUID (default: torch's), to find the run's GPU in NVML.
    """
    force_estimate = energy_cfg.meter == "estimate"
    sources: list[Source] = []
    if str(device_type).split(":")[0] == "cuda":
        from powertrain.energy.nvml import build_gpu_sources  # keeps pynvml off the CPU-only path

        sources += build_gpu_sources(
            energy_cfg, gpu_tdp_w, environ=environ, force_estimate=force_estimate,
            ordinals=[_cuda_ordinal(device_type)], cuda_uuid=cuda_uuid,
        )  # fmt: skip
        if sync is None:
            sync = device_sync(device_type)

    tdp_w, tdp_source = cpu_tdp(cpu_tdp_w)

    def cpu_estimate(name: str = "cpu:package-0", reason: Optional[str] = None) -> Source:
        return CpuEstimate(
            tdp_w, idle_share=energy_cfg.cpu_idle_share, name=name, reason=reason, tdp_source=tdp_source
        )

    def dram_estimate(name: str = "dram:0", n_domains: int = 1, reason: Optional[str] = None) -> Source:
        # the model is per process, so split it across sockets rather than bill it once per socket
        return DramEstimate(energy_cfg.dram_w_per_gb / max(n_domains, 1), name=name, reason=reason)

    if force_estimate:
        rapl, why_not = [], "estimate requested (energy.meter=estimate)"
    else:
        root = getattr(energy_cfg, "powercap_root", None) or DEFAULT_POWERCAP_ROOT
        rapl, problem = build_rapl_sources(root, cpu_estimate, dram_estimate, cpu_tdp_w=tdp_w)
        why_not = None if problem is None else f"RAPL unreadable: {problem}"
    if why_not is not None:
        sources += [cpu_estimate(reason=why_not), dram_estimate(reason=why_not)]
    else:
        sources += rapl
        if not any(s.kind == "dram" for s in rapl):
            reason = "RAPL has no dram domain on this CPU (common on client and AMD CPUs)"
            sources.append(dram_estimate(reason=reason))
    return EnergyMeter(sources, sync=sync)
