"""Choose the best energy source for each component of this machine.

Measured where a counter exists (NVML for GPUs, RAPL for CPU packages and DRAM), a labelled estimate
where not, with the reason on the source; never a component silently left at zero. CPU and DRAM are
billed at the job's share (``attribution``): a package model scaled by threads held, per-thread
coefficients where the package is hidden, RAPL counters attributed by busy time or memory share on a
shared node; each source's ``billing`` line says which and why.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, Optional

from powertrain.energy.attribution import (
    PER_VCPU_SOURCE,
    UNKNOWN_MICROARCHITECTURE,
    BusySampler,
    CpuShare,
    HostPaths,
    detect_cpu_share,
    job_cpu_time_fn,
    mem_total_bytes,
    memory_allocation_bytes,
    microarchitecture,
    per_vcpu_coefficients,
)
from powertrain.energy.base import EnergyMeter, Source
from powertrain.energy.estimate import (
    DEFAULT_CPU_TDP_W,
    CpuEstimate,
    DramEstimate,
    PerThreadCpuEstimate,
    _RssReader,
    cpu_model,
    lookup_cpu_tdp,
)
from powertrain.energy.rapl import DEFAULT_POWERCAP_ROOT, AttributedSource, RaplSource, build_rapl_sources

METER_MODES = ("auto", "estimate")  # energy.meter: the best source per component, or estimates only


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


def cpu_estimate_factory(
    cpu: CpuShare, energy_cfg: Any, cpu_tdp_w: Optional[float]
) -> tuple[Callable[..., Source], str, bool]:
    """How to estimate this job's CPU power, the start line saying so, and whether it is per thread.

    A package model (TDP × share) needs both the TDP and the package size; without either, per-thread
    coefficients for the microarchitecture (or a labelled per-thread average when it is unknown).
    """
    tdp_w, tdp_source = cpu_tdp(cpu_tdp_w, model=cpu.info.model_name)
    if cpu.share is not None and not tdp_source.startswith("assumption"):
        packages = cpu.info.packages if cpu.threads_total is not None and not cpu.info.virtual else 1
        line = (
            f"{cpu.held_text()} ({cpu.node}, {packages} × {tdp_w:g} W TDP from {tdp_source}, "
            f"idle share {energy_cfg.cpu_idle_share:g} billed by thread share {cpu.share:.4g}; {cpu.basis})"
        )

        def package(name: str = "cpu:package-0", reason: Optional[str] = None, split: int = 1) -> Source:
            return CpuEstimate(
                tdp_w, idle_share=energy_cfg.cpu_idle_share, name=name, reason=reason, tdp_source=tdp_source,
                logical_cpus=cpu.threads_held, share=cpu.share or 1.0, packages=max(packages // split, 1),
                share_basis=cpu.basis,
            )  # fmt: skip

        return package, line, False
    arch = microarchitecture(cpu.info)
    cpuid = f"CPUID family {cpu.info.family} model {cpu.info.model}"
    min_w, max_w = per_vcpu_coefficients()[arch or UNKNOWN_MICROARCHITECTURE]
    if arch is not None:
        source = f"{PER_VCPU_SOURCE} per-vCPU coefficients for {arch} ({cpuid})"
    else:
        source = (
            f"assumption: microarchitecture not identified ({cpu.info.model_name!r}, {cpuid}); "
            f"{PER_VCPU_SOURCE}'s per-vCPU average"
        )
    line = (
        f"{cpu.held_text()} ({cpu.node}, {arch or 'unknown microarchitecture'}, "
        f"{min_w:g}–{max_w:g} W/thread, {PER_VCPU_SOURCE}; {cpu.basis})"
    )

    def per_thread(name: str = "cpu:package-0", reason: Optional[str] = None, split: int = 1) -> Source:
        return PerThreadCpuEstimate(
            cpu.threads_held / split, min_w, max_w, source, name=name, reason=reason, share=cpu.share,
            share_basis=cpu.basis,
        )  # fmt: skip

    return per_thread, line, True


def _busy_share_fn(sampler: BusySampler, package: int, cpu: CpuShare) -> Callable[[Any], Optional[float]]:
    """The job's share of ``package``'s busy time since the previous call (None: no busy time to share)."""
    pkg_cpus = set(sampler.package_cpus.get(package, []))
    mine = (
        cpu.affinity & set().union(*map(set, sampler.package_cpus.values()))
        if sampler.package_cpus
        else set()
    )
    on_pkg = len(cpu.affinity & pkg_cpus) / len(mine) if mine else 1.0  # the job's time spread over its CPUs
    prev: list[tuple[float, float]] = []

    def share(source: Any) -> Optional[float]:
        job_s, busy = sampler.snapshot(source)
        now = (job_s, busy.get(package, 0.0))
        last = prev[0] if prev else None
        prev[:] = [now]
        if last is None or now[1] - last[1] <= 0:
            return None
        return (now[0] - last[0]) * on_pkg / (now[1] - last[1])

    return share


def _memory_share_fn(
    environ: Mapping[str, str], paths: HostPaths
) -> tuple[Callable[[Any], Optional[float]], str]:
    total_b = mem_total_bytes(paths)
    alloc_b, alloc_basis = memory_allocation_bytes(environ, paths)
    if total_b is None:
        return (lambda _s: None), "MemTotal unreadable: the counter is billed whole"
    if alloc_b is not None and alloc_b < total_b:
        frac = alloc_b / total_b
        return (
            lambda _s: frac
        ), f"memory allocation share: {alloc_b / 2**30:.3g} of {total_b / 2**30:.3g} GiB ({alloc_basis})"
    rss = _RssReader()
    return (
        lambda _s: rss() / total_b
    ), f"resident memory share: this process's RSS ÷ MemTotal ({total_b / 2**30:.3g} GiB)"


def _attribute_rapl(
    rapl: list[Source], cpu: CpuShare, energy_cfg: Any, environ: Mapping[str, str], paths: HostPaths
) -> list[Source]:
    """Bill the job its part of each RAPL counter, or the whole counter on an exclusive node (said so)."""
    if cpu.share is None or cpu.exclusive:  # an energy.cpu_share override always sets cpu.share
        if cpu.exclusive:
            basis = f"exclusive: this job holds {cpu.held_text()}; no attribution ({cpu.basis})"
        else:  # a VM that passes RAPL through but hides its host: no package total to attribute against
            basis = (
                f"no attribution: the job holds {cpu.held_text()} and the package total is unknown "
                f"(set energy.threads_total or energy.cpu_share); the counter is billed whole"
            )
        for s in rapl:
            assert isinstance(s, RaplSource)
            s.labels = {"share": 1.0 if cpu.exclusive else None, "share_basis": basis}
            s.billing = f"the whole {s.domain.rapl_name} counter (RAPL, measured): {basis}"
        return rapl
    job_time, job_time_basis = job_cpu_time_fn(environ, paths)
    sampler = BusySampler(os.path.join(paths.proc, "stat"), cpu.info.package_cpus(), job_time)
    mem_fn, mem_basis = _memory_share_fn(environ, paths)
    out: list[Source] = []
    for s in rapl:
        assert isinstance(s, RaplSource)
        if energy_cfg.cpu_share is not None:
            share_fn, basis = (
                (lambda _s: energy_cfg.cpu_share),
                f"fixed share energy.cpu_share={energy_cfg.cpu_share:g}",
            )
        elif s.kind == "cpu":
            package = int(s.domain.rapl_name.rpartition("-")[2] or 0)
            share_fn = _busy_share_fn(sampler, package, cpu)
            basis = f"busy-time share: {job_time_basis} ÷ {s.domain.rapl_name}'s busy time in /proc/stat"
        else:
            share_fn, basis = mem_fn, mem_basis
        basis = f"{basis}; the job holds {cpu.held_text()} ({cpu.basis})"
        src = AttributedSource(s, share_fn, cpu.share if cpu.share is not None else 1.0, basis)
        src.billing = f"part of the {s.domain.rapl_name} counter (RAPL, measured): {basis}"
        out.append(src)
    return out


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


def host_sources(energy_cfg: Any, cpu_tdp_w: Optional[float], environ: Mapping[str, str], paths: HostPaths,
                 affinity: Optional[set[int]], force_estimate: bool) -> list[Source]:
    """This job's CPU package and DRAM sources: RAPL billed by the job's share where readable, else the
    labelled estimates (with the reason RAPL was not used)."""
    sources: list[Source] = []
    share = detect_cpu_share(environ, paths, energy_cfg.cpu_share, energy_cfg.threads_total, affinity)
    cpu_factory, cpu_line, per_thread = cpu_estimate_factory(share, energy_cfg, cpu_tdp_w)
    dram_note = (
        "the per-thread CPU coefficients are shares of whole-server power and already hold some memory "
        "power: this DRAM estimate overlaps them"
        if per_thread
        else None
    )

    def cpu_estimate(name: str = "cpu:package-0", reason: Optional[str] = None, split: int = 1) -> Source:
        src = cpu_factory(name, reason, split)
        src.billing = cpu_line
        return src

    def dram_estimate(name: str = "dram:0", n_domains: int = 1, reason: Optional[str] = None) -> Source:
        # the model is per process, so split it across sockets rather than bill it once per socket
        src = DramEstimate(
            energy_cfg.dram_w_per_gb / max(n_domains, 1), name=name, reason=reason, note=dram_note
        )
        src.billing = f"resident memory of this process × {energy_cfg.dram_w_per_gb:g} W/GB (estimate)"
        return src

    if force_estimate:
        rapl, why_not = [], "estimate requested (energy.meter=estimate)"
    else:
        root = getattr(energy_cfg, "powercap_root", None) or DEFAULT_POWERCAP_ROOT
        n_packages = share.info.packages

        def rapl_cpu_fallback(name: str) -> Source:  # one package's part of the job's estimate
            return cpu_estimate(name, split=n_packages)

        tdp_w, _ = cpu_tdp(cpu_tdp_w, model=share.info.model_name)
        rapl, problem = build_rapl_sources(root, rapl_cpu_fallback, dram_estimate, cpu_tdp_w=tdp_w)
        why_not = None if problem is None else f"RAPL unreadable: {problem}"
    if why_not is not None:
        name = "cpu:package-0" if share.info.packages == 1 or per_thread else "cpu:packages"
        sources += [cpu_estimate(name, reason=why_not), dram_estimate(reason=why_not)]
    else:
        sources += _attribute_rapl(rapl, share, energy_cfg, environ, paths)
        if not any(s.kind == "dram" for s in rapl):
            reason = "RAPL has no dram domain on this CPU (common on client and AMD CPUs)"
            sources.append(dram_estimate(reason=reason))
    return sources


def build_meter(
    energy_cfg: Any,
    device_type: Any = "cpu",
    cpu_tdp_w: Optional[float] = None,
    sync: Optional[Callable[[], None]] = None,
    gpu_tdp_w: Optional[float] = None,
    environ: Optional[Mapping[str, str]] = None,
    host: Optional[HostPaths] = None,
    affinity: Optional[set[int]] = None,
    cuda_uuid: Optional[Callable[[int], Optional[str]]] = None,
    cpu: bool = True,
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
        environ: environment for visible-device and Slurm lookups (default ``os.environ``).
        host: where /proc and the cgroup tree are (default the real ones; fakes in tests).
        affinity: the CPUs this process may use (default ``os.sched_getaffinity``).
        cuda_uuid: ordinal -> CUDA's UUID (default: torch's), to find the run's GPU in NVML.
        cpu: meter this node's CPU packages and DRAM; False in a distributed run's ranks that do not own
            them (one rank per node does, ``powertrain.run.distributed``).
    """
    environ = os.environ if environ is None else environ
    paths = host or HostPaths()
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
    if not cpu:
        return EnergyMeter(sources, sync=sync)

    sources += host_sources(energy_cfg, cpu_tdp_w, environ, paths, affinity, force_estimate)
    return EnergyMeter(sources, sync=sync)
