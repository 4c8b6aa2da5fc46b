"""Which part of the machine's CPU packages and memory this job holds, and its busy-time share.

A job is billed its share of a package, not the package: on a Slurm node holding 8 of 128 threads, on a
cloud VM holding 2 vCPUs of a host it cannot see, or beside other busy processes under one RAPL counter.

- Held threads: the least of CPU affinity, the cgroup v2 ``cpu.max`` quota (this cgroup and its
  parents) and Slurm's allocation (``SLURM_CPUS_ON_NODE``).
- Package size: the logical CPUs in /proc/cpuinfo on bare metal (and in containers, which see the
  host's); hidden in a VM (the ``hypervisor`` flag), where only ``energy.threads_total`` can say it.
- Microarchitecture: from CPUID family/model/stepping in /proc/cpuinfo, which a VM shows even when
  its model name is a generic "AMD EPYC"; matched to per-vCPU coefficients (Cloud Carbon Footprint).
- Busy time: /proc/stat per CPU, summed per package, against this process's CPU time (or, in a Slurm
  job cgroup, the job's ``cpu.stat``), read once per window edge for every source that shares it.

Paths are parameters (``HostPaths``) so tests can point them at fake trees.
"""

from __future__ import annotations

import csv
import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Optional

PER_VCPU_SOURCE = "Cloud Carbon Footprint"
UNKNOWN_MICROARCHITECTURE = "unknown (AWS average)"

# (vendor, CPUID family, model) -> the coefficient table's row. Model numbers from Intel's SDM
# (vol. 4, table 2-1) and AMD's revision guides; 0x55 is split by stepping (Skylake-SP 0-4, Cascade
# Lake 5-7; Cooper Lake 10-11 has no row). Pairs without a published coefficient are left out.
_MICROARCHITECTURES: dict[tuple[str, int, int], str] = {
    **{("GenuineIntel", 6, m): "Sandy Bridge" for m in (0x2A, 0x2D)},
    **{("GenuineIntel", 6, m): "Ivy Bridge" for m in (0x3A, 0x3E)},
    **{("GenuineIntel", 6, m): "Haswell" for m in (0x3C, 0x3F, 0x45, 0x46)},
    **{("GenuineIntel", 6, m): "Broadwell" for m in (0x3D, 0x47, 0x4F, 0x56)},
    **{("GenuineIntel", 6, m): "Skylake" for m in (0x4E, 0x5E)},
    ("AuthenticAMD", 0x17, 0x01): "EPYC 1st Gen (Zen/Naples)",
    ("AuthenticAMD", 0x17, 0x31): "EPYC 2nd Gen (Zen 2/Rome)",
    ("AuthenticAMD", 0x19, 0x01): "EPYC 3rd Gen (Zen 3/Milan)",
}


@dataclass(frozen=True)
class HostPaths:
    """Where the host's files are (the real ones by default; fake trees in tests)."""

    proc: str = "/proc"
    cgroup: str = "/sys/fs/cgroup"
    dmi: str = "/sys/class/dmi/id"


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


@dataclass(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo says about the CPUs."""

    vendor: str = ""
    family: Optional[int] = None
    model: Optional[int] = None
    stepping: Optional[int] = None
    model_name: str = "unknown"
    virtual: bool = False  # the "hypervisor" flag: a guest that sees only its own vCPUs
    cpu_package: dict[int, int] = field(default_factory=dict)  # logical CPU -> physical package id

    @property
    def packages(self) -> int:
        return len(set(self.cpu_package.values())) or 1

    def package_cpus(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for cpu, pkg in sorted(self.cpu_package.items()):
            out.setdefault(pkg, []).append(cpu)
        return out


def parse_cpuinfo(text: str) -> CpuInfo:
    """The vendor, CPUID family/model/stepping, model name, VM flag and CPU→package map."""
    fields: dict[str, str] = {}
    cpu_package: dict[int, int] = {}
    virtual = False
    cpu: Optional[int] = None
    for line in text.splitlines() + [""]:
        if not line.strip():
            if cpu is not None:
                cpu_package.setdefault(cpu, 0)
            cpu = None
            continue
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "processor" and value.isdigit():
            cpu = int(value)
        elif key == "physical id" and cpu is not None and value.isdigit():
            cpu_package[cpu] = int(value)
        elif key == "flags":
            virtual = virtual or "hypervisor" in value.split()
        fields.setdefault(key, value)

    def num(key: str) -> Optional[int]:
        v = fields.get(key, "")
        return int(v) if v.isdigit() else int(v, 16) if v.startswith("0x") else None

    return CpuInfo(
        vendor=fields.get("vendor_id", ""),
        family=num("cpu family"),
        model=num("model"),
        stepping=num("stepping"),
        model_name=fields.get("model name", "unknown"),
        virtual=virtual,
        cpu_package=cpu_package,
    )


def microarchitecture(info: CpuInfo) -> Optional[str]:
    """The coefficient table's row for this CPU's CPUID family/model, or None if not identified."""
    if info.family is None or info.model is None:
        return None
    if info.vendor == "GenuineIntel" and info.family == 6 and info.stepping is not None:
        if info.model == 0x55:
            return "Skylake" if info.stepping <= 4 else "Cascade Lake" if info.stepping <= 7 else None
        if info.model == 0x9E and 10 <= info.stepping <= 13:
            return "Coffee Lake"
    return _MICROARCHITECTURES.get((info.vendor, info.family, info.model))


@functools.lru_cache(maxsize=1)
def per_vcpu_coefficients() -> dict[str, tuple[float, float]]:
    """(min, max) W per vCPU by microarchitecture, from the packaged Cloud Carbon Footprint table."""
    text = resources.files("powertrain").joinpath("resources/cpu_watts_per_vcpu.csv").read_text()
    return {
        row["microarchitecture"]: (float(row["min_w_per_vcpu"]), float(row["max_w_per_vcpu"]))
        for row in csv.DictReader(text.splitlines())
    }


def parse_cpu_max(text: str) -> Optional[float]:
    """CPUs allowed by a cgroup v2 ``cpu.max`` ("quota period"; "max" = no limit)."""
    parts = text.split()
    if len(parts) < 2 or parts[0] == "max":
        return None
    return int(parts[0]) / int(parts[1])


def _cgroup_dir(paths: HostPaths) -> Optional[str]:
    """This process's cgroup v2 directory (from the ``0::`` line of /proc/self/cgroup)."""
    text = _read(os.path.join(paths.proc, "self", "cgroup")) or ""
    for line in text.splitlines():
        if line.startswith("0::"):
            return os.path.join(paths.cgroup, line[3:].strip().lstrip("/"))
    return None


def _cgroup_limit(
    paths: HostPaths, filename: str, parse: Callable[[str], Optional[float]]
) -> Optional[float]:
    """The tightest limit in ``filename`` over this cgroup and its parents (None if none is set)."""
    d = _cgroup_dir(paths)
    if d is None:
        return None
    limits = []
    root = os.path.normpath(paths.cgroup)
    d = os.path.normpath(d)
    while True:
        text = _read(os.path.join(d, filename))
        if text is not None and (v := parse(text.strip())) is not None:
            limits.append(v)
        if d == root or len(d) <= len(root):
            break
        d = os.path.dirname(d)
    return min(limits) if limits else None


def slurm_cpus(environ: Mapping[str, str]) -> Optional[int]:
    """CPUs Slurm allocated to this job on this node (None outside a Slurm job)."""
    if "SLURM_JOB_ID" not in environ:
        return None
    value = environ.get("SLURM_CPUS_ON_NODE") or environ.get("SLURM_JOB_CPUS_PER_NODE", "").split("(")[0]
    value = value.split(",")[0]
    return int(value) if value.isdigit() else None


@functools.lru_cache(maxsize=4)  # ~150 kB to parse on a 128-thread node: once per process, not per job
def _cpuinfo(path: str) -> CpuInfo:
    return parse_cpuinfo(_read(path) or "")


@dataclass(frozen=True)
class CpuShare:
    """The part of the CPU packages this job holds, and how that was found."""

    info: CpuInfo
    threads_held: float
    threads_total: Optional[int]  # hardware threads of all packages; None: hidden by the hypervisor
    share: Optional[float]  # threads_held / threads_total (None when the total is hidden)
    basis: str  # what limits threads_held and where threads_total comes from
    node: str  # "bare metal" or the kind of guest
    affinity: frozenset[int] = frozenset()

    @property
    def exclusive(self) -> bool:
        """True when the job holds every thread of the node: nothing to attribute."""
        return self.share is not None and self.share >= 1.0

    def held_text(self) -> str:
        held = f"{self.threads_held:g}"
        if self.threads_total is None:
            return f"{held} vCPUs of a host of unknown size"
        return f"{held} of {self.threads_total} threads"


def _node_kind(info: CpuInfo, paths: HostPaths) -> str:
    if not info.virtual:
        return "bare metal"
    vendor = (_read(os.path.join(paths.dmi, "sys_vendor")) or "").strip()
    return {"QEMU": "KVM guest", "": "VM guest"}.get(vendor, f"VM guest ({vendor})")


def detect_cpu_share(
    environ: Mapping[str, str],
    paths: HostPaths = HostPaths(),
    cpu_share: Optional[float] = None,
    threads_total: Optional[int] = None,
    affinity: Optional[set[int]] = None,
) -> CpuShare:
    """Work out which part of the CPU packages this process may use.

    Args:
        environ: the process environment (Slurm variables).
        paths: where /proc, the cgroup v2 tree and DMI live.
        cpu_share: ``energy.cpu_share``: the share billed, overriding detection.
        threads_total: ``energy.threads_total``: the host's hardware threads, for when a VM hides them.
        affinity: the CPUs this process may run on (default ``os.sched_getaffinity``).
    """
    info = _cpuinfo(os.path.join(paths.proc, "cpuinfo"))
    if affinity is None:
        affinity = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()
    visible = len(info.cpu_package) or os.cpu_count() or 1
    # on a tie the first wins: the Slurm allocation is the reason a bound job holds those CPUs
    limits: list[tuple[float, str]] = []
    slurm = slurm_cpus(environ)
    if slurm is not None:
        limits.append((float(slurm), f"Slurm allocation (SLURM_CPUS_ON_NODE={slurm})"))
    quota = _cgroup_limit(paths, "cpu.max", parse_cpu_max)
    if quota is not None:
        limits.append((quota, f"cgroup cpu.max quota ({quota:g} CPUs)"))
    limits.append((float(len(affinity) or visible), f"CPU affinity ({len(affinity)} CPUs)"))
    held, held_basis = min(limits, key=lambda x: x[0])

    if threads_total is not None:
        total: Optional[int] = threads_total
        total_basis = "energy.threads_total"
    elif info.virtual:
        total, total_basis = None, "host size hidden by the hypervisor"
    else:
        total, total_basis = visible, f"{visible} threads in {info.packages} package(s) in /proc/cpuinfo"
    if cpu_share is not None:
        held = cpu_share * (total or visible)
        held_basis = f"energy.cpu_share={cpu_share:g}"
        share: Optional[float] = cpu_share
    else:
        share = None if total is None else min(held / total, 1.0)
    return CpuShare(
        info=info,
        threads_held=held,
        threads_total=total,
        share=share,
        basis=f"{held_basis}; {total_basis}",
        node=_node_kind(info, paths),
        affinity=frozenset(affinity),
    )


def mem_total_bytes(paths: HostPaths = HostPaths()) -> Optional[int]:
    """MemTotal from /proc/meminfo in bytes (None if unreadable)."""
    for line in (_read(os.path.join(paths.proc, "meminfo")) or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def memory_allocation_bytes(
    environ: Mapping[str, str], paths: HostPaths = HostPaths()
) -> tuple[Optional[int], str]:
    """The memory this job is allocated (Slurm ``--mem``/``--mem-per-cpu``, or cgroup ``memory.max``)."""
    if "SLURM_JOB_ID" in environ:
        if environ.get("SLURM_MEM_PER_NODE", "").isdigit():
            return int(environ["SLURM_MEM_PER_NODE"]) * 2**20, "Slurm allocation (SLURM_MEM_PER_NODE)"
        cpus = slurm_cpus(environ)
        if environ.get("SLURM_MEM_PER_CPU", "").isdigit() and cpus:
            return int(environ["SLURM_MEM_PER_CPU"]) * 2**20 * cpus, "Slurm allocation (SLURM_MEM_PER_CPU)"
    limit = _cgroup_limit(paths, "memory.max", lambda t: None if t == "max" else float(t))
    if limit is not None:
        return int(limit), "cgroup memory.max"
    return None, "no memory allocation"


def parse_proc_stat(text: str) -> dict[int, int]:
    """Busy jiffies per CPU from /proc/stat (user + nice + system + irq + softirq; not idle, iowait, steal)."""
    out = {}
    for line in text.splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *vals = line.split()
            v = [int(x) for x in vals[:7]]
            out[int(name[3:])] = v[0] + v[1] + v[2] + v[5] + v[6]
    return out


def parse_cpu_stat_usage_s(text: str) -> Optional[float]:
    """CPU time of a cgroup in seconds from its cgroup v2 ``cpu.stat`` (``usage_usec``)."""
    for line in text.splitlines():
        if line.startswith("usage_usec"):
            return int(line.split()[1]) / 1e6
    return None


def job_cpu_time_fn(
    environ: Mapping[str, str], paths: HostPaths = HostPaths()
) -> tuple[Callable[[], float], str]:
    """What counts as the job's CPU time: its Slurm job cgroup's ``cpu.stat`` if any, else this process's."""
    d = _cgroup_dir(paths)
    if "SLURM_JOB_ID" in environ and d is not None and "job_" in d:
        stat_path = os.path.join(d, "cpu.stat")
        if parse_cpu_stat_usage_s(_read(stat_path) or "") is not None:
            return (
                lambda: parse_cpu_stat_usage_s(_read(stat_path) or "") or 0.0
            ), "the Slurm job cgroup's cpu.stat"

    from powertrain.energy.estimate import _process_cpu_s  # with a distributed run's other local ranks

    return _process_cpu_s, "this process's CPU time"


class BusySampler:
    """One /proc/stat reading per window edge, shared by every source that attributes by busy time.

    A source asking twice means the edge has moved on, so a source that has already used the current
    snapshot gets a fresh one and every other source of the same edge reuses it (no clocks involved).
    """

    def __init__(self, proc_stat: str, package_cpus: dict[int, list[int]], job_time_fn: Callable[[], float]):
        self.proc_stat, self.package_cpus, self.job_time_fn = proc_stat, package_cpus, job_time_fn
        self._clk_tck = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.reads = 0
        self._snapshot: Optional[tuple[float, dict[int, float]]] = None
        self._used_by: set[int] = set()

    def _take(self) -> tuple[float, dict[int, float]]:
        self.reads += 1
        per_cpu = parse_proc_stat(_read(self.proc_stat) or "")
        busy = {
            p: sum(per_cpu.get(c, 0) for c in cpus) / self._clk_tck for p, cpus in self.package_cpus.items()
        }
        return self.job_time_fn(), busy

    def snapshot(self, reader: object) -> tuple[float, dict[int, float]]:
        """(job CPU seconds, busy seconds per package) as of this edge, for ``reader``."""
        if self._snapshot is None or id(reader) in self._used_by:
            self._snapshot, self._used_by = self._take(), set()
        self._used_by.add(id(reader))
        return self._snapshot
