"""CPU package and DRAM energy from Intel/AMD RAPL counters through Linux powercap.

Layout (``/sys/class/powercap``; AMD exposes its package domains under the same ``intel-rapl`` names):
``intel-rapl:N`` is socket N's package (``name`` = ``package-N``), ``intel-rapl:N:M`` its subdomains
(``core``, ``uncore``, ``dram``). Only packages and ``dram`` are counted: ``core`` and ``uncore`` are
already inside the package, and ``psys`` (a top-level ``intel-rapl:N`` on laptops) spans the whole SoC,
so adding any of them would count the same joules twice.

``energy_uj`` is a µJ counter that wraps at ``max_energy_range_uj``. One background thread reads every
counter often enough that it cannot wrap twice between two reads; ``read_j`` reads too, so windows are
exact at their edges.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from powertrain.energy.base import MeasuringSource, Source
from powertrain.energy.periodic import PeriodicThread

DEFAULT_POWERCAP_ROOT = "/sys/class/powercap"
PERMISSION_FIX = (
    "grant read permission: sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj "
    "/sys/class/powercap/intel-rapl:*:*/energy_uj (reset at boot: use a udev rule or tmpfiles.d to keep it)"
)
# Power no single RAPL domain of a server reaches; sets the poll interval so a counter cannot wrap twice.
ASSUMED_MAX_DOMAIN_POWER_W = 500.0
MAX_POLL_INTERVAL_S = 1.0
MIN_POLL_INTERVAL_S = 0.01

_PACKAGE_DIR = re.compile(r"^intel-rapl:(\d+)$")
_SUBDOMAIN_DIR = re.compile(r"^intel-rapl:(\d+):(\d+)$")


@dataclass
class RaplDomain:
    """One counted RAPL domain."""

    path: str  # the domain's directory
    rapl_name: str  # contents of its ``name`` file: package-0, dram
    component: str  # cpu:package-0, dram:0
    kind: str  # cpu | dram
    max_range_uj: Optional[int]  # None: the file is missing, a wrap cannot be corrected

    @property
    def energy_path(self) -> str:
        return os.path.join(self.path, "energy_uj")


def _read_text(path: str) -> str:
    with open(path) as f:  # the hardware boundary: every sysfs read goes through here
        return f.read().strip()


def read_energy_uj(path: str) -> int:
    """One RAPL counter reading in µJ (raises OSError/ValueError if it cannot be read)."""
    return int(_read_text(path))


def _optional_int(path: str) -> Optional[int]:
    try:
        value = int(_read_text(path))
    except (OSError, ValueError):
        return None
    return value if value > 0 else None


def discover_rapl(root: str = DEFAULT_POWERCAP_ROOT) -> tuple[list[RaplDomain], Optional[str]]:
    """The package and DRAM domains under ``root``, and why there are none if so.

    Every domain is read once, so an unreadable counter is found here rather than mid-run.

    Returns:
        (domains, None) when RAPL is readable, else ([], reason) with a reason fit to show a user.
    """
    if not os.path.isdir(root):
        return [], f"{root} absent"
    try:
        entries = set(os.listdir(root))
    except OSError as err:
        return [], f"cannot list {root}: {err}"
    packages = sorted((int(m.group(1)), e) for e in entries if (m := _PACKAGE_DIR.match(e)))
    domains: list[RaplDomain] = []
    for n, pkg in packages:
        pkg_path = os.path.join(root, pkg)
        try:
            pkg_name = _read_text(os.path.join(pkg_path, "name"))
        except OSError:
            pkg_name = f"package-{n}"
        if not pkg_name.startswith("package"):
            continue  # psys: the whole platform, overlapping the packages
        socket = pkg_name[len("package-") :] or str(n)
        pkg_range_uj = _optional_int(os.path.join(pkg_path, "max_energy_range_uj"))
        domains.append(RaplDomain(pkg_path, pkg_name, f"cpu:{pkg_name}", "cpu", pkg_range_uj))
        # subdomains appear both nested in the package and as symlinks at the top of the class dir
        try:
            nested = set(os.listdir(pkg_path))
        except OSError:
            nested = set()
        subs: dict[str, str] = {}
        for e in entries | nested:
            m = _SUBDOMAIN_DIR.match(e)
            if m and int(m.group(1)) == n:
                subs.setdefault(e, os.path.join(root if e in entries else pkg_path, e))
        for _, sub_path in sorted(subs.items()):
            try:
                sub_name = _read_text(os.path.join(sub_path, "name"))
            except OSError:
                continue
            if sub_name == "dram":  # core/uncore are part of the package: counting them doubles
                sub_range_uj = _optional_int(os.path.join(sub_path, "max_energy_range_uj"))
                domains.append(RaplDomain(sub_path, sub_name, f"dram:{socket}", "dram", sub_range_uj))
    if not any(d.kind == "cpu" for d in domains):
        return [], f"no intel-rapl package domain under {root} (a VM or container without RAPL)"
    for d in domains:
        try:
            read_energy_uj(d.energy_path)
        except PermissionError:
            return [], (
                f"permission denied reading {d.energy_path} (root-only since the 2020 PLATYPUS fix, "
                f"CVE-2020-8694); {PERMISSION_FIX}"
            )
        except (OSError, ValueError) as err:
            return [], f"cannot read {d.energy_path}: {type(err).__name__}: {err}"
    return domains, None


def poll_interval_s(domains: list[RaplDomain], max_power_w: float = ASSUMED_MAX_DOMAIN_POWER_W) -> float:
    """How often to read so no counter wraps twice between reads: a quarter of the fastest wrap time."""
    interval = MAX_POLL_INTERVAL_S
    for d in domains:
        if d.max_range_uj:
            interval = min(interval, d.max_range_uj / 1e6 / max_power_w / 4)
    return max(interval, MIN_POLL_INTERVAL_S)


class RaplPoller:
    """The one thread that reads every RAPL source in between windows."""

    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self._sources: list[RaplSource] = []
        self._lock = threading.Lock()
        self._thread: Optional[PeriodicThread] = None

    def attach(self, source: RaplSource) -> None:
        with self._lock:
            if source not in self._sources:
                self._sources.append(source)
            if self._thread is None:
                self._thread = PeriodicThread(self.poll, self.interval_s, "powertrain-rapl-poll")
                self._thread.start()

    def detach(self, source: RaplSource, join: bool = True) -> None:
        """Stop polling ``source``; the thread ends with the last one (``join=False``: do not wait)."""
        with self._lock:
            if source in self._sources:
                self._sources.remove(source)
            if not self._sources and self._thread is not None:
                self._thread.stop(timeout_s=2.0 if join else 0.0)
                self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.alive

    def poll(self) -> None:
        for s in list(self._sources):
            s.read_j()


class RaplSource(MeasuringSource):
    """One RAPL domain's energy; falls back to the given estimate if the counter becomes unreadable."""

    method = "rapl"
    hardware_errors = (OSError, ValueError)

    def __init__(self, domain: RaplDomain, poller: Optional[RaplPoller], fallback: Callable[[], Source]):
        super().__init__()
        self.domain, self.poller, self._fallback_factory = domain, poller, fallback
        self.name, self.kind = domain.component, domain.kind
        self._last_uj = 0
        self._total_uj = 0
        self.labels: dict[str, Any] = {}  # e.g. the share billed and why, set by whoever builds the meter
        self.wraps = 0
        self.wraps_uncorrected = 0

    def start(self) -> None:
        super().start()
        if self.poller is not None and not self.fell_back:
            self.poller.attach(self)

    def _begin(self) -> None:
        self._last_uj = read_energy_uj(self.domain.energy_path)
        self._total_uj = 0

    def _measure_j(self) -> float:
        raw_uj = read_energy_uj(self.domain.energy_path)
        if raw_uj >= self._last_uj:
            self._total_uj += raw_uj - self._last_uj
        elif self.domain.max_range_uj:
            self.wraps += 1
            self._total_uj += self.domain.max_range_uj - self._last_uj + raw_uj
        else:
            # The range is unknown, so only the part after the wrap can be counted. Polling keeps the
            # lost part under one poll interval's energy per wrap; the result says it happened.
            self.wraps_uncorrected += 1
            self._total_uj += raw_uj
        self._last_uj = raw_uj
        return self._total_uj / 1e6

    def _make_fallback(self) -> Source:
        if self.poller is not None:
            # no join: the poll thread may be waiting for the lock this thread holds
            self.poller.detach(self, join=False)
        return self._fallback_factory()

    def extra(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rapl_domain": os.path.basename(self.domain.path), **self.labels}
        if self.domain.max_range_uj is None:
            out["max_energy_range_uj"] = None
        if self.wraps_uncorrected:
            out["wraps_uncorrected"] = self.wraps_uncorrected
            out["note"] = (
                "max_energy_range_uj missing: each counter wrap undercounts by up to one poll interval"
            )
        out.update(super().extra())
        return out

    def stop(self) -> None:
        if self.poller is not None:
            self.poller.detach(self)
        super().stop()


def build_rapl_sources(
    root: str,
    cpu_fallback: Callable[[str], Source],
    dram_fallback: Callable[[str, int], Source],
    cpu_tdp_w: Optional[float] = None,
) -> tuple[list[RaplSource], Optional[str]]:
    """RAPL sources for every package and DRAM domain, or ([], why not).

    Args:
        root: the powercap class directory (``/sys/class/powercap``; a temp dir in tests).
        cpu_fallback: builds the estimate for a package component name, used if its counter fails.
        dram_fallback: builds the estimate for a DRAM component name, given the number of DRAM domains.
        cpu_tdp_w: the CPU's TDP, to size the poll interval (2 × TDP or 500 W, whichever is more).
    """
    domains, reason = discover_rapl(root)
    if reason is not None:
        return [], reason
    max_power_w = max(ASSUMED_MAX_DOMAIN_POWER_W, 2 * (cpu_tdp_w or 0.0))
    poller = RaplPoller(poll_interval_s(domains, max_power_w))
    n_dram = sum(d.kind == "dram" for d in domains)
    sources = []
    for d in domains:
        if d.kind == "cpu":
            fallback = functools.partial(cpu_fallback, d.component)
        else:
            fallback = functools.partial(dram_fallback, d.component, n_dram)
        sources.append(RaplSource(d, poller, fallback))
    return sources, None


class AttributedSource(Source):
    """The job's part of a shared counter: each interval's joules × the job's share over that interval.

    The counter itself stays a measurement (``measured`` follows it) and its joules are kept as
    ``package_energy_j``; the share and how it was found are labels. Intervals run from one read to the
    next, so with sequential windows the labels of ``extra()`` describe the window just ended. After the
    counter falls back to an estimate, the estimate is already the job's part and is not scaled again.

    Args:
        inner: the whole-package source (a ``RaplSource``).
        share_fn: the job's share of the interval since this source's previous read, or None when it
            cannot be told (then ``fallback_share`` is used).
        fallback_share: the allocation share, used when busy time gives no answer (an idle interval).
        basis: how the share is found, for the result and the start line.
    """

    def __init__(
        self,
        inner: Source,
        share_fn: Callable[[AttributedSource], Optional[float]],
        fallback_share: float,
        basis: str,
    ):
        self.inner, self.share_fn, self.fallback_share, self.basis = inner, share_fn, fallback_share, basis
        self.name, self.kind, self.reason = inner.name, inner.kind, inner.reason
        self._last = (0.0, 0.0)
        self._energy_j = self._measured_j = 0.0
        self._window = {"package_energy_j": 0.0, "share": fallback_share}

    @property
    def measured(self) -> bool:  # type: ignore[override]
        return self.inner.measured

    @property
    def method(self) -> str:  # type: ignore[override]
        inner = self.inner.method
        return "rapl_attributed" if inner == "rapl" else f"rapl_attributed+{inner}"

    def start(self) -> None:
        self.inner.start()
        self._last = self.inner.read()
        self.share_fn(self)  # the first busy-time snapshot

    def read(self) -> tuple[float, float]:
        total_j, measured_j = self.inner.read()
        d_total, d_measured = total_j - self._last[0], measured_j - self._last[1]
        self._last = (total_j, measured_j)
        share = self.share_fn(self)
        share = self.fallback_share if share is None else min(max(share, 0.0), 1.0)
        self._energy_j += d_measured * share + max(d_total - d_measured, 0.0)
        self._measured_j += d_measured * share
        self._window = {"package_energy_j": d_total, "share": share}
        return self._energy_j, self._measured_j

    def read_j(self) -> float:
        return self.read()[0]

    def measured_j(self) -> float:
        return self._measured_j

    def extra(self) -> dict[str, Any]:
        out = self.inner.extra()
        out.update(self._window)
        out["share_basis"] = self.basis
        return out

    def stop(self) -> None:
        self.inner.stop()
