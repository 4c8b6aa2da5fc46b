"""The one energy interface: sources (one per hardware component), windows, and the ledger.

A *source* reports the cumulative joules of one component (``gpu:0``, ``cpu:package-0``, ``dram:0``)
since it was started, and says how it knows (``method``) and whether that is a measurement. The
``EnergyMeter`` reads every source at the start and end of a named window and returns a
``Measurement``; the ``Ledger`` adds windows up by phase (train / eval / idle) and epoch.

The training loop only ever sees ``EnergyMeter``: it never branches on which hardware exists.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

log = logging.getLogger(__name__)

J_PER_KWH = 3.6e6  # joules in a kilowatt-hour: the one conversion (carbon, predictions, CodeCarbon CSV)


@dataclass
class ComponentEnergy:
    """Energy of one component over one window (or summed over many)."""

    name: str  # "gpu:0", "cpu:package-0", "dram:0", ...
    kind: str  # gpu | cpu | dram | other
    method: str  # nvml_energy_counter | nvml_power_integration | rapl | tdp_utilization_estimate | ...
    measured: bool  # True only if every joule of energy_j was measured
    energy_j: float
    measured_j: float = 0.0  # the measured part (differs from energy_j after a mid-run fallback)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. shared_device, fallback reason

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        d.update(extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ComponentEnergy:
        """The inverse of ``to_dict``: every key that is not a field goes back into ``extra``."""
        fields = ("name", "kind", "method", "measured", "energy_j", "measured_j")
        return cls(**{k: d[k] for k in fields if k in d}, extra={k: v for k, v in d.items() if k not in fields})

    @property
    def share(self) -> Optional[float]:
        """The share of the component billed to this job (None where unknown)."""
        return self.extra.get("share")


class Source:
    """One component's energy reading. Subclasses implement ``read_j``.

    Attributes:
        name, kind, method, measured: as in ``ComponentEnergy``.
        reason: why this source was chosen over a better one (None if it is the best there is).
        billing: what share of the component is billed to this job and why (the start line).
    """

    name: str = "other"
    kind: str = "other"
    method: str = "unknown"
    measured: bool = False
    reason: Optional[str] = None
    billing: Optional[str] = None

    def start(self) -> None:
        """Begin counting (start sampling threads, take the first reading)."""

    def read_j(self) -> float:
        """Cumulative joules since ``start``; never decreases."""
        raise NotImplementedError

    def measured_j(self) -> float:
        """The measured part of ``read_j()`` (all of it for a measuring source, none for an estimate)."""
        return self.read_j() if self.measured else 0.0

    def read(self) -> tuple[float, float]:
        """``read_j()`` and its measured part, taken together (what a window edge records)."""
        energy_j = self.read_j()
        return energy_j, energy_j if self.measured else 0.0

    def extra(self) -> dict[str, Any]:
        """Labels to carry into the result (e.g. ``{"shared_device": True}``)."""
        return {}

    def window(
        self, energy_j: float, measured_j: float, time_s: float
    ) -> tuple[float, float, dict[str, Any]]:
        """Adjust one window's joules (and add labels) where the counter cannot resolve the window.

        Returns ``(energy_j, measured_j, labels)``; by default the readings as they are. The NVML counter
        uses it for windows shorter than a few of its steps.
        """
        return energy_j, measured_j, {}

    def stop(self) -> None:
        """Stop threads and release handles. Safe to call twice."""

    def describe(self) -> str:
        label = "measured" if self.measured else "estimate"
        text = f"{self.name} {self.method} ({label})"
        return f"{text}: {self.reason}" if self.reason else text


class MeasuringSource(Source):
    """A source that reads a hardware counter and, if the hardware fails mid-run, carries on estimating.

    Subclasses implement ``_begin`` (take the first reading) and ``_measure_j`` (cumulative joules since
    ``_begin``), raising one of ``hardware_errors`` when the hardware cannot be read, and
    ``_make_fallback`` (an estimate for the same component). On the first such error the joules measured
    so far are kept, the estimate bills everything from the last good reading onwards, and the switch is
    flagged in ``extra()``; ``read_j`` never raises. ``measured_j`` stays at the measured part, so a
    result's measured fraction stays honest.
    """

    measured = True
    hardware_errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self) -> None:
        self._lock = threading.RLock()  # the sampling thread and the training thread both read
        self._started = False
        self._measured_total_j = 0.0
        self._t_good: Optional[float] = None  # perf_counter of the last good reading
        self._fallback: Optional[Source] = None
        self._fallback_info: dict[str, Any] = {}

    # --- for subclasses
    def _begin(self) -> None:
        raise NotImplementedError

    def _measure_j(self) -> float:
        raise NotImplementedError

    def _make_fallback(self) -> Source:
        raise NotImplementedError

    # --- Source
    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            self._t_good = time.perf_counter()
            try:
                self._begin()
            except self.hardware_errors as err:
                self._switch(err)

    def read_j(self) -> float:
        with self._lock:
            if not self._started:
                self.start()
            if self._fallback is None:
                try:
                    energy_j = self._measure_j()
                    self._t_good = time.perf_counter()
                    # a counter never runs backwards; guard against a glitchy read all the same
                    self._measured_total_j = max(self._measured_total_j, energy_j)
                    return self._measured_total_j
                except self.hardware_errors as err:
                    self._switch(err)
            assert self._fallback is not None
            return self._measured_total_j + self._fallback.read_j()

    def measured_j(self) -> float:
        """The measured joules as of the last ``read_j`` (frozen after a fallback)."""
        return self._measured_total_j

    def read(self) -> tuple[float, float]:
        # one lock hold: a sampling thread reading in between would otherwise make the measured part
        # outgrow the total it belongs to, and a fully measured window would be labelled an estimate
        with self._lock:
            return self.read_j(), self._measured_total_j

    @property
    def fell_back(self) -> bool:
        return self._fallback is not None

    def _switch(self, err: BaseException) -> None:
        fallback = self._make_fallback()
        start_at = getattr(fallback, "start_at", None)
        if start_at is not None and self._t_good is not None:
            start_at(self._t_good)  # bill the gap since the last good reading to the estimate
        else:
            fallback.start()
        self._fallback_info = {
            "fallback_reason": f"{type(err).__name__}: {err}",
            "fallback_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "measured_method": self.method,
        }
        log.warning(
            "%s: %s failed (%s); keeping %.1f J measured so far and estimating from here (%s)",
            self.name, self.method, self._fallback_info["fallback_reason"], self._measured_total_j,
            fallback.method,
        )  # fmt: skip
        self._fallback = fallback
        self.measured = False
        self.method = fallback.method

    def extra(self) -> dict[str, Any]:
        out = dict(self._fallback_info)
        if self._fallback is not None:
            out.update({k: v for k, v in self._fallback.extra().items() if k not in out})
        return out

    def stop(self) -> None:
        if self._fallback is not None:
            self._fallback.stop()


@dataclass
class Measurement:
    """What one window returns: its duration, each component's joules (each saying how it knows), and
    the operational carbon when the meter knows a grid intensity (``powertrain.Meter(carbon_region=...)``)."""

    name: str
    time_s: float
    components: list[ComponentEnergy]
    carbon_g: Optional[float] = None  # kWh × PUE × g/kWh; None without a region (never a silent zero)

    @property
    def total_j(self) -> float:
        return sum(c.energy_j for c in self.components)

    energy_j = total_j  # the public spelling (Zeus's Measurement has total_energy)

    @property
    def measured_j(self) -> float:
        return sum(c.measured_j for c in self.components)

    @property
    def measured_fraction(self) -> Optional[float]:
        """The share of ``energy_j`` that was measured (None for a window of no energy)."""
        return self.measured_j / self.total_j if self.total_j > 0 else None


def _no_sync() -> None:
    pass


class EnergyMeter:
    """Named begin/end windows over a set of sources.

    Args:
        sources: the components to meter.
        sync: called at both ends of a window (``torch.cuda.synchronize`` on a GPU) so kernels queued
            before the boundary are billed to the right window; None on a CPU.
    """

    def __init__(
        self,
        sources: list[Source],
        sync: Optional[Callable[[], None]] = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.sources = list(sources)
        self.sync = sync or _no_sync
        self.clock = clock  # window durations; a fake clock in tests
        self._open: dict[str, tuple[float, list[float], list[float]]] = {}
        self._started = False

    def start(self) -> None:
        if not self._started:
            for s in self.sources:
                s.start()
            self._started = True

    def describe(self) -> str:
        """One line naming the source and method of every component."""
        return " · ".join(s.describe() for s in self.sources) or "no energy sources"

    def billing_lines(self) -> list[str]:
        """One line per component saying what share of it is billed and why (printed at start)."""
        return [f"{s.name}: {s.billing}" for s in self.sources if s.billing]

    def _read(self) -> tuple[list[float], list[float]]:
        readings = [s.read() for s in self.sources]
        return [r[0] for r in readings], [r[1] for r in readings]

    def begin_window(self, name: str) -> None:
        """Open window ``name`` (ValueError if it is open: a second begin would silently restart it, so it is
        refused, as Zeus does). Differently named windows may overlap; each reads the counters at its own
        edges, so an "epoch" window includes the joules of the "step" windows inside it."""
        if name in self._open:
            raise ValueError(f"energy window {name!r} is already open: end it before beginning it again "
                             "(windows of different names may overlap)")
        self.start()
        self.sync()
        total, measured = self._read()
        self._open[name] = (self.clock(), total, measured)

    def end_window(self, name: str) -> Measurement:
        """Close window ``name`` and return its ``Measurement`` (ValueError if it is not open)."""
        if name not in self._open:
            raise ValueError(f"energy window {name!r} is not open (open: {', '.join(map(repr, self._open)) or 'none'})")
        self.sync()
        t1 = self.clock()
        total, measured = self._read()
        t0, total0, measured0 = self._open.pop(name)
        comps = []
        for s, a, b, ma, mb in zip(self.sources, total0, total, measured0, measured, strict=True):
            e, m, labels = s.window(max(b - a, 0.0), max(mb - ma, 0.0), t1 - t0)
            extra = s.extra()
            extra.update(labels)
            if s.reason:  # the result should say why a component is not measured, not only the log
                extra.setdefault("reason", s.reason)
            comps.append(
                ComponentEnergy(
                    name=s.name,
                    kind=s.kind,
                    method=s.method,
                    measured=s.measured and abs(e - m) <= 1e-9 * max(e, 1.0),
                    energy_j=e,
                    measured_j=min(m, e),
                    extra=extra,
                )
            )
        return Measurement(name=name, time_s=t1 - t0, components=comps)

    def end_open_windows(self) -> list[Measurement]:
        """End every window still open (a run that failed mid-epoch), so its joules are not lost."""
        out = []
        for name in list(self._open):
            try:
                out.append(self.end_window(name))
            except Exception:  # a failing source must not hide the run's own error
                self._open.pop(name, None)
        return out

    def close(self) -> None:
        for s in self.sources:
            try:
                s.stop()
            except Exception:  # closing must never mask the run's own outcome
                pass


@dataclass
class Ledger:
    """Running totals of energy by phase and component, plus per-epoch curves for trackers.

    Serialisable (``to_dict``/``from_dict``) so a preempted run can carry it into its next attempt.
    """

    phases: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    phase_time_s: dict[str, float] = field(default_factory=dict)
    epochs: list[dict[str, Any]] = field(default_factory=list)

    @staticmethod
    def _merge(into: dict[str, dict[str, Any]], c: dict[str, Any]) -> None:
        """Add one component's row (``ComponentEnergy.to_dict`` form) to the row of the same name."""
        acc = into.get(c["name"])
        if acc is None:
            into[c["name"]] = dict(c)
            return
        for k, v in c.items():
            if k in ("energy_j", "measured_j", "package_energy_j"):
                acc[k] += v
            elif k == "measured":
                acc[k] = acc[k] and v
            elif k == "method":  # "a+b": every method that billed part of the joules, once each
                methods = acc[k].split("+")
                acc[k] = "+".join(methods + [x for x in v.split("+") if x not in methods])
            else:  # labels: the latest wins (e.g. a fallback reason stays once it appears)
                acc[k] = v
        if acc.get("package_energy_j"):  # an attributed counter: the share of all the windows together
            acc["share"] = acc["energy_j"] / acc["package_energy_j"]

    def add(self, phase: str, m: Measurement) -> None:
        comps = self.phases.setdefault(phase, {})
        for c in m.components:
            self._merge(comps, c.to_dict())
        self.phase_time_s[phase] = self.phase_time_s.get(phase, 0.0) + m.time_s

    def phase_j(self, phase: str) -> float:
        return sum(c["energy_j"] for c in self.phases.get(phase, {}).values())

    def components(self, phases: tuple[str, ...] = ("train", "eval")) -> list[dict[str, Any]]:
        """Per-component totals over ``phases`` (idle baseline windows are not training energy)."""
        out: dict[str, dict[str, Any]] = {}
        for phase in phases:
            for c in self.phases.get(phase, {}).values():
                self._merge(out, c)
        return list(out.values())

    def total_j(self, phases: tuple[str, ...] = ("train", "eval")) -> float:
        return sum(self.phase_j(p) for p in phases)

    def measured_fraction(self, phases: tuple[str, ...] = ("train", "eval")) -> Optional[float]:
        comps = self.components(phases)
        total = sum(c["energy_j"] for c in comps)
        if total <= 0:
            return None
        return sum(c["measured_j"] for c in comps) / total

    def to_dict(self) -> dict[str, Any]:
        return {"phases": self.phases, "phase_time_s": self.phase_time_s, "epochs": self.epochs}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Ledger:
        return cls(
            phases=d.get("phases", {}),
            phase_time_s=d.get("phase_time_s", {}),
            epochs=d.get("epochs", []),
        )

    def result_section(self) -> dict[str, Any]:
        """The ledger's part of result.json's ``energy``: train + eval = total; setup reported apart."""
        train_j, eval_j = self.phase_j("train"), self.phase_j("eval")
        return {"train_j": train_j, "eval_j": eval_j, "total_j": train_j + eval_j,
                "setup_j": self.phase_j("setup"),  # data loading + model building, outside total_j
                "components": self.components(), "measured_fraction": self.measured_fraction()}


def combine(parts: list[Measurement]) -> Measurement:
    """One measurement for consecutive parts of a window (a train window that progress saves cut up).

    Each component is summed by the ledger's own rules (``Ledger._merge``), so the whole reads exactly as
    the ledger billed its parts: the same per-component joules, in the same order, summed the same way.
    """
    if len(parts) == 1:
        return parts[0]
    comps: dict[str, dict[str, Any]] = {}
    for m in parts:
        for c in m.components:
            Ledger._merge(comps, c.to_dict())
    known = [m.carbon_g for m in parts if m.carbon_g is not None]
    carbon_g = sum(known) if len(known) == len(parts) else None  # never a silent zero for a part
    return Measurement(parts[0].name, sum(m.time_s for m in parts),
                       [ComponentEnergy.from_dict(c) for c in comps.values()], carbon_g)
