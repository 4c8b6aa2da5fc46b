"""Estimated energy for components with no readable counter (labelled ``measured: false``).

Models (constants are configurable and stated in the README):
- CPU, per thread (a VM, or a CPU without a TDP figure): P = threads held × (min + (max − min) × u),
  with per-vCPU min/max watts for the microarchitecture (Cloud Carbon Footprint), u = this process's
  CPU time / (wall time × threads held). Only the held threads' idle draw is billed.
- CPU, package share (TDP known, package size known): P = packages × TDP × share × (idle_share +
  (1 − idle_share) × u), share = threads held / threads of the packages: the job pays its threads' part
  of the packages' idle draw, not the whole of it.
- DRAM: P = dram_w_per_gb × resident memory of this process in GB.
- GPU:  P = TDP × (idle_share + (1 − idle_share) × NVML utilisation); TDP alone when utilisation is
  unreadable (an upper bound, flagged). Used when NVML has no energy or power reading for a GPU.
All are integrated between reads from cumulative CPU time and a resident-memory sample at each read, so
no sampling thread is needed and a window costs two cheap syscalls per source.
"""

from __future__ import annotations

import csv
import functools
import os
import re
import sys
import time
from collections.abc import Callable
from importlib import resources
from typing import Any, Optional

from powertrain.energy.base import Source

# Used when the CPU model is not in the TDP table. CodeCarbon uses 85 W for the same case; we state it
# as an assumption in the result rather than pass it off as a looked-up figure.
DEFAULT_CPU_TDP_W = 85.0
# Used for a GPU whose power limit NVML cannot tell us (and no hardware profile gives one): a V100/A100
# PCIe class board. Labelled as an assumption wherever it is used.
DEFAULT_GPU_TDP_W = 300.0


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo ("unknown" if unreadable); read once per process."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def _norm(name: str) -> str:
    name = re.sub(r"\((r|tm)\)", "", name.lower())
    name = re.sub(r"\b(cpu|processor|with radeon.*graphics|\d+-core)\b", " ", name)
    name = name.split("@")[0]
    return re.sub(r"\s+", " ", name).strip()


@functools.lru_cache(maxsize=1)
def _tdp_table() -> dict[str, float]:
    text = resources.files("powertrain").joinpath("resources/cpu_tdp_watts.csv").read_text()
    out = {}
    for row in csv.DictReader(text.splitlines()):
        try:  # a few upstream rows hold ranges or typos ("27.29.5"): skip them rather than guess
            out[_norm(row["Name"])] = float(row["TDP"])
        except (TypeError, ValueError):
            continue
    return out


@functools.lru_cache(maxsize=16)  # a scan of ~4,900 table rows: once per model, not once per job
def lookup_cpu_tdp(model: str) -> tuple[Optional[float], Optional[str]]:
    """TDP in watts for a CPU model name, and the table entry it matched (None, None if no match).

    A table entry matches when all of its words appear in the model name as whole words; the longest
    such entry wins (so "Xeon Gold 6248R" is not taken for "Xeon Gold 6248").
    """
    words = set(_norm(model).split())
    best: tuple[int, Optional[str], Optional[float]] = (0, None, None)
    for entry, tdp in _tdp_table().items():
        ew = entry.split()
        if ew and all(w in words for w in ew) and any(any(ch.isdigit() for ch in w) for w in ew):
            if len(entry) > best[0]:
                best = (len(entry), entry, tdp)
    return best[2], best[1]


# The other processes of this run on this node: a distributed run's local ranks (powertrain.run.distributed).
# One rank per node meters the node's CPU and DRAM, so its estimates bill their CPU time and memory too.
_PEER_PIDS: tuple[int, ...] = ()
_PEER_CPU_S: dict[int, float] = {}  # last CPU time read per peer: a peer that exits keeps what it used


def set_peer_processes(pids: list[int]) -> None:
    """Bill the CPU time and resident memory of ``pids`` (this node's other ranks) with this process's."""
    global _PEER_PIDS
    _PEER_PIDS = tuple(p for p in pids if p != os.getpid())
    _PEER_CPU_S.clear()


def peer_cpu_s() -> float:
    """CPU seconds used so far by the peer processes (utime + stime from /proc/<pid>/stat)."""
    for pid in _PEER_PIDS:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
            _PEER_CPU_S[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass  # gone: its last reading stays, so the node's CPU time never runs backwards
    return sum(_PEER_CPU_S.values())


def peer_rss_bytes() -> int:
    """Resident memory of the peer processes now (0 for one that is gone)."""
    total = 0
    for pid in _PEER_PIDS:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += _statm_rss_bytes(f.read())
        except (OSError, ValueError, IndexError):
            pass
    return total


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return _statm_rss_bytes(f.read())
    except (OSError, ValueError, IndexError):
        import resource

        # no procfs: the peak instead; ru_maxrss is in KiB on Linux but in bytes on macOS
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def _statm_rss_bytes(statm: bytes) -> int:
    """The resident set in bytes from the contents of /proc/self/statm (its second field, in pages)."""
    return int(statm.split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _RssReader:
    """Resident memory of this process, read from a kept-open /proc/self/statm.

    procfs regenerates the file on every read at offset 0, so one ``pread`` per call (about 3 µs)
    replaces an open/read/close (about 20 µs) at every window edge. The fd is bound to this process.
    """

    def __init__(self) -> None:
        self._fd: Optional[int] = None
        try:
            self._fd = os.open("/proc/self/statm", os.O_RDONLY)
        except OSError:
            pass

    def __call__(self) -> int:
        peers = peer_rss_bytes() if _PEER_PIDS else 0
        if self._fd is not None:
            try:
                return _statm_rss_bytes(os.pread(self._fd, 128, 0)) + peers
            except (OSError, ValueError, IndexError):
                self.close()
        return _rss_bytes() + peers

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


class _IntegratingEstimate(Source):
    """Integrates a modelled power between reads."""

    measured = False

    def __init__(self) -> None:
        self._energy_j = 0.0
        self._t: Optional[float] = None

    def _state(self) -> Any:  # what the power model needs at a read
        raise NotImplementedError

    def _power_w(self, before: Any, after: Any, dt: float) -> float:
        raise NotImplementedError

    def start(self) -> None:
        if self._t is None:
            self._t, self._s = time.perf_counter(), self._state()

    def start_at(self, t0_s: float) -> None:
        """Start as if at ``perf_counter() == t0_s``: the first read bills the time since then.

        Used when a measuring source fails mid-run, so the gap since its last good reading is billed.
        The state at ``t0_s`` is unknown, so the current one stands in for it.
        """
        self._t, self._s = t0_s, self._state()

    def read_j(self) -> float:
        if self._t is None:
            self.start()
            return 0.0
        t, s = time.perf_counter(), self._state()
        dt = t - self._t
        if dt > 0:
            self._energy_j += self._power_w(self._s, s, dt) * dt
        self._t, self._s = t, s
        return self._energy_j


def _process_cpu_s() -> float:
    # user + system time of every thread of this process (children are not ours to bill), from
    # CLOCK_PROCESS_CPUTIME_ID: nanoseconds, where os.times() counts 10 ms clock ticks, which a short
    # window (a few steps, an evaluation) would round to nothing or double. Plus this node's other ranks.
    return time.process_time() + (peer_cpu_s() if _PEER_PIDS else 0.0)


class CpuEstimate(_IntegratingEstimate):
    """CPU package power from TDP and this process's CPU utilisation, scaled by the job's share.

    Args:
        tdp_w: one package's TDP.
        idle_share: share of TDP an idle package draws.
        logical_cpus: the threads the utilisation is relative to (the threads held; default all).
        share: the job's share of the packages (threads held / threads of the packages).
        packages: how many packages ``share`` is a share of.
    """

    kind = "cpu"
    method = "tdp_utilization_estimate"

    def __init__(
        self,
        tdp_w: float,
        idle_share: float = 0.3,
        name: str = "cpu:package-0",
        reason: Optional[str] = None,
        tdp_source: str = "",
        logical_cpus: Optional[float] = None,
        share: float = 1.0,
        packages: int = 1,
        share_basis: Optional[str] = None,
    ):
        super().__init__()
        self.name, self.reason = name, reason
        self.tdp_w, self.idle_share, self.tdp_source = tdp_w, idle_share, tdp_source
        self.logical_cpus = logical_cpus or os.cpu_count() or 1
        self.share, self.packages, self.share_basis = share, packages, share_basis

    def _state(self) -> float:
        return _process_cpu_s()

    def _power_w(self, before: float, after: float, dt: float) -> float:
        util = min(max((after - before) / (dt * self.logical_cpus), 0.0), 1.0)
        return self.packages * self.tdp_w * self.share * (self.idle_share + (1.0 - self.idle_share) * util)

    def extra(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tdp_w": self.tdp_w,
            "tdp_source": self.tdp_source,
            "idle_share": self.idle_share,
        }
        if self.share_basis is not None:
            out.update(share=self.share, share_basis=self.share_basis, packages=self.packages)
        return out


class PerThreadCpuEstimate(_IntegratingEstimate):
    """CPU power from per-thread min/max watts (by microarchitecture) for the threads this job holds.

    Args:
        threads_held: hardware threads (vCPUs) the job may use; may be fractional (a cgroup quota).
        min_w, max_w: watts per thread at 0 % and 100 % utilisation.
        coefficient_source: where min/max come from, or the assumption they are.
    """

    kind = "cpu"
    method = "per_thread_coefficient_estimate"

    def __init__(
        self,
        threads_held: float,
        min_w: float,
        max_w: float,
        coefficient_source: str,
        name: str = "cpu:package-0",
        reason: Optional[str] = None,
        share: Optional[float] = None,
        share_basis: str = "",
    ):
        super().__init__()
        self.name, self.reason = name, reason
        self.threads_held, self.min_w, self.max_w = threads_held, min_w, max_w
        self.coefficient_source, self.share, self.share_basis = coefficient_source, share, share_basis

    def _state(self) -> float:
        return _process_cpu_s()

    def _power_w(self, before: float, after: float, dt: float) -> float:
        util = min(max((after - before) / (dt * self.threads_held), 0.0), 1.0)
        return self.threads_held * (self.min_w + (self.max_w - self.min_w) * util)

    def extra(self) -> dict[str, Any]:
        return {
            "threads_held": self.threads_held,
            "w_per_thread_min": self.min_w,
            "w_per_thread_max": self.max_w,
            "coefficient_source": self.coefficient_source,
            "share": self.share,
            "share_basis": self.share_basis,
        }


class DramEstimate(_IntegratingEstimate):
    """DRAM power proportional to this process's resident memory."""

    kind = "dram"
    method = "memory_size_estimate"

    def __init__(
        self,
        w_per_gb: float = 0.375,
        name: str = "dram:0",
        reason: Optional[str] = None,
        note: Optional[str] = None,
    ):
        super().__init__()
        self.name, self.reason, self.w_per_gb, self.note = name, reason, w_per_gb, note
        self._rss: Optional[_RssReader] = None

    def _state(self) -> int:
        if self._rss is None:
            self._rss = _RssReader()
        return self._rss()

    def _power_w(self, before: int, after: int, dt: float) -> float:
        return self.w_per_gb * (before + after) / 2 / 1e9

    def extra(self) -> dict[str, Any]:
        out: dict[str, Any] = {"w_per_gb": self.w_per_gb, "share_basis": "resident memory of this process"}
        if self.note:
            out["note"] = self.note
        return out

    def stop(self) -> None:
        if self._rss is not None:
            self._rss.close()
            self._rss = None


class GpuEstimate(_IntegratingEstimate):
    """GPU power from its TDP (board power limit) and NVML utilisation, or TDP alone without it.

    Args:
        tdp_w: the board's power limit or TDP in watts.
        util_fn: returns GPU utilisation in [0, 1]; None, or an exception from it, means unreadable,
            and the estimate then bills the full TDP from that read on (an upper bound, flagged).
    """

    kind = "gpu"
    method = "gpu_tdp_utilization_estimate"

    def __init__(
        self,
        tdp_w: float,
        idle_share: float = 0.15,
        util_fn: Optional[Callable[[], float]] = None,
        name: str = "gpu:0",
        reason: Optional[str] = None,
        tdp_source: str = "",
    ):
        super().__init__()
        self.name, self.reason = name, reason
        self.tdp_w, self.idle_share, self.tdp_source = tdp_w, idle_share, tdp_source
        self.util_fn = util_fn
        self.util_error: Optional[str] = None if util_fn is not None else "no utilisation source"

    def _state(self) -> Optional[float]:
        if self.util_fn is None:
            return None
        try:
            return min(max(float(self.util_fn()), 0.0), 1.0)
        except Exception as err:  # the driver boundary: any failure means "unreadable", not a crash
            self.util_error = f"{type(err).__name__}: {err}"
            self.util_fn = None  # a failed driver rarely recovers; stop asking on every read
            return None

    def _power_w(self, before: Optional[float], after: Optional[float], dt: float) -> float:
        if after is None:
            return self.tdp_w
        util = after if before is None else (before + after) / 2
        return self.tdp_w * (self.idle_share + (1.0 - self.idle_share) * util)

    def extra(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tdp_w": self.tdp_w, "tdp_source": self.tdp_source}
        if self.util_fn is None:
            out["constant_tdp"] = True  # no utilisation: full TDP billed, an upper bound
            out["utilization_unreadable"] = self.util_error
        else:
            out["idle_share"] = self.idle_share
        return out
