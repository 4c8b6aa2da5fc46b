"""A fake host in a temp dir: /proc (cpuinfo, stat, meminfo, self/cgroup), a cgroup v2 tree and DMI.

Files are laid out and formatted as the kernel writes them, so the code under test parses the same text
it meets on a real machine:
- ``kvm_guest``: what a 2-vCPU cloud VM shows (the ``hypervisor`` flag, a generic "AMD EPYC" name, the
  guest's own vCPUs only, DMI vendor QEMU), like the development VM this project grew up on.
- ``bare_metal`` / ``dual_socket``: a node with packages × cores × 2 threads (dual socket: 128 logical
  CPUs), numbered as Linux numbers them (package 0 holds CPUs 0-31 and their siblings 64-95).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from powertrain.energy.attribution import HostPaths

_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht"
)


def cpuinfo_text(
    cpus: list[tuple[int, int, int]],
    vendor: str,
    family: int,
    model: int,
    stepping: int,
    model_name: str,
    hypervisor: bool,
    siblings: int,
    cores: int,
) -> str:
    """/proc/cpuinfo for ``cpus`` = [(logical cpu, physical id, core id)]."""
    flags = _FLAGS + (" hypervisor" if hypervisor else "")
    blocks = []
    for cpu, package, core in cpus:
        blocks.append(
            f"processor\t: {cpu}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
            f"model name\t: {model_name}\nstepping\t: {stepping}\ncpu MHz\t\t: 1996.250\n"
            f"physical id\t: {package}\nsiblings\t: {siblings}\ncore id\t\t: {core}\ncpu cores\t: {cores}\n"
            f"flags\t\t: {flags}\nbogomips\t: 3992.50\n"
        )
    return "\n".join(blocks) + "\n"


class FakeHost:
    """A host tree; ``run`` moves /proc/stat and the job cgroup's ``cpu.stat`` as time passes."""

    def __init__(self, root: Path, cpuinfo: str, n_cpus: int, mem_total_kb: int = 24684092):
        self.root = root
        self.n_cpus = n_cpus
        self.proc = root / "proc"
        self.cgroup = root / "cgroup"
        self.dmi = root / "dmi"
        for d in (self.proc / "self", self.cgroup, self.dmi):
            d.mkdir(parents=True, exist_ok=True)
        (self.proc / "cpuinfo").write_text(cpuinfo)
        (self.proc / "meminfo").write_text(
            f"MemTotal:       {mem_total_kb} kB\nMemFree:         1024000 kB\nMemAvailable:   2048000 kB\n"
        )
        self.busy = [1000 * (c + 1) for c in range(n_cpus)]  # jiffies since boot, per CPU
        self.idle = [50000] * n_cpus
        self.job_cgroup: Optional[Path] = None
        self.job_usage_usec = 0
        self.set_cgroup("/")
        self._write_stat()

    @property
    def paths(self) -> HostPaths:
        return HostPaths(proc=str(self.proc), cgroup=str(self.cgroup), dmi=str(self.dmi))

    def set_cgroup(self, path: str, cpu_max: Optional[str] = None, memory_max: Optional[str] = None) -> Path:
        """Put the process in cgroup ``path`` (``/proc/self/cgroup``'s ``0::`` line) with these limits."""
        (self.proc / "self" / "cgroup").write_text(f"0::{path}\n")
        d = self.cgroup / path.lstrip("/")
        d.mkdir(parents=True, exist_ok=True)
        if cpu_max is not None:
            (d / "cpu.max").write_text(cpu_max + "\n")
        if memory_max is not None:
            (d / "memory.max").write_text(memory_max + "\n")
        self.job_cgroup = d
        self._write_cpu_stat()
        return d

    def _write_stat(self) -> None:
        # user nice system idle iowait irq softirq steal guest guest_nice; busy split user/system 3:1
        def row(name: str, busy: int, idle: int) -> str:
            return f"{name} {busy - busy // 4} 0 {busy // 4} {idle} 0 0 0 0 0 0\n"

        text = row("cpu ", sum(self.busy), sum(self.idle))
        text += "".join(
            row(f"cpu{c}", b, i) for c, (b, i) in enumerate(zip(self.busy, self.idle, strict=True))
        )
        text += "intr 579498 0 0\nctxt 123456\nbtime 1700000000\nprocesses 4242\n"
        (self.proc / "stat").write_text(text)

    def _write_cpu_stat(self) -> None:
        if self.job_cgroup is not None:
            u = self.job_usage_usec
            (self.job_cgroup / "cpu.stat").write_text(
                f"usage_usec {u}\nuser_usec {u * 3 // 4}\nsystem_usec {u - u * 3 // 4}\n"
                "nr_periods 0\nnr_throttled 0\nthrottled_usec 0\n"
            )

    def run(self, busy_s: dict[int, float], job_s: float = 0.0, clk_tck: int = 100) -> None:
        """Advance the counters: CPU c was busy ``busy_s[c]`` seconds; ``job_s`` of it was the job's."""
        for c, s in busy_s.items():
            self.busy[c] += round(s * clk_tck)
        self.job_usage_usec += round(job_s * 1e6)
        self._write_stat()
        self._write_cpu_stat()


def kvm_guest(root: Path, vcpus: int = 2, family: int = 25, model: int = 1, stepping: int = 1) -> FakeHost:
    """A cloud VM: ``vcpus`` vCPUs of a host it cannot see; CPUID Zen 3 (Milan) by default."""
    cpus = [(c, 0, c) for c in range(vcpus)]
    text = cpuinfo_text(cpus, "AuthenticAMD", family, model, stepping, "AMD EPYC", True, vcpus, vcpus)
    host = FakeHost(root, text, vcpus)
    (host.dmi / "sys_vendor").write_text("QEMU\n")
    return host


def bare_metal(
    root: Path,
    sockets: int = 2,
    cores: int = 32,
    model_name: str = "AMD EPYC 7543 32-Core Processor",
    mem_total_kb: int = 263_000_000,
) -> FakeHost:
    """Bare metal: ``sockets`` packages × ``cores`` cores × 2 threads, numbered as Linux numbers them:
    the first threads of every core come first (package by package), then their siblings."""
    per_pass = sockets * cores
    cpus = [(c, (c % per_pass) // cores, c % cores) for c in range(2 * per_pass)]
    text = cpuinfo_text(cpus, "AuthenticAMD", 25, 1, 1, model_name, False, 2 * cores, cores)
    return FakeHost(root, text, 2 * per_pass, mem_total_kb)


def dual_socket(root: Path, cores: int = 32) -> FakeHost:
    """Two EPYC 7543 packages (225 W TDP), 128 threads: CPU n and n + 64 are siblings."""
    return bare_metal(root, sockets=2, cores=cores)


def package_cpus(host_cores: int, package: int) -> list[int]:
    """The logical CPUs of ``package`` on a ``dual_socket`` host with ``host_cores`` cores per package."""
    first = [package * host_cores + c for c in range(host_cores)]
    return first + [c + 2 * host_cores for c in first]
