"""``powertrain.Meter``: the joules and carbon of any PyTorch code, not only the loops powertrain runs.

    from powertrain import Meter
    meter = Meter(carbon_region="DEU")
    meter.begin_window("epoch")
    ...                                   # your own training code
    m = meter.end_window("epoch")         # m.energy_j, m.time_s, m.components, m.carbon_g

The same machinery as the CLI's loop, so the library and the CLI cannot disagree: components chosen by
``energy.select.build_meter`` (NVML, RAPL, or labelled estimates, each with its method, ``measured`` flag
and billed ``share``), the hardware profile ``hardware=auto`` picks, carbon from the same tables and the
one formula (``carbon.operational_g``). Windows synchronise the device at both ends, so kernels queued
before an edge are billed to the right window. A name that is already open is refused; differently named
windows may overlap (an "epoch" window includes the joules of the "step" windows inside it).

Under ``torch.distributed`` (a process group initialised before the Meter is built) every rank builds its
Meter (a collective), each physical device is metered by exactly one rank, and ``end_window`` (also a
collective: every rank calls it) returns the same run-wide ``Measurement`` on every rank, its components
named per node (``node0/cpu:package-0``).

Layer: above energy, hardware and carbon (carbon sits above energy, so the public meter cannot live in
``energy/``); nothing in powertrain imports it.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any, Optional

from powertrain.energy.base import Measurement

__all__ = ["Meter", "Measurement", "Window"]
KEPT_WINDOWS = 10_000  # Meter.measurements keeps this many of the latest windows


class Window(contextlib.ContextDecorator):
    """``with meter.window("epoch") as w: ...`` (then ``w.measurement``), or ``@meter.window("step")`` on
    a function: every call is one window. Ended windows are also kept in ``meter.measurements`` (the latest
    ``KEPT_WINDOWS``)."""

    def __init__(self, meter: Meter, name: str):
        self.meter, self.name = meter, name
        self.measurement: Optional[Measurement] = None

    def __enter__(self) -> Window:
        self.meter.begin_window(self.name)
        return self

    def __exit__(self, *exc: Any) -> bool:
        self.measurement = self.meter.end_window(self.name)
        return False


def _energy_config(energy: Optional[Mapping[str, Any]]) -> Any:
    """An ``EnergyConfig`` with the given fields (``{"meter": "estimate", "cpu_share": 0.5}``), checked as
    the CLI checks ``energy.<key>``."""
    from powertrain.config import ConfigError, EnergyConfig
    from powertrain.config.checks import check_value, one_of, run_check
    from powertrain.config.errors import did_you_mean
    from powertrain.energy.select import METER_MODES

    cfg = EnergyConfig()
    names = [f.name for f in fields(EnergyConfig)]
    for key, value in (energy or {}).items():
        if key not in names:
            raise ConfigError(f"energy.{key}", value, f"an EnergyConfig field{did_you_mean(key, names)}")
        check_value(f"energy.{key}", value)
    run_check("energy.meter", (energy or {}).get("meter", cfg.meter), one_of(METER_MODES))
    return replace(cfg, **dict(energy or {}))


def _profile(hardware: str, device: Any) -> Any:
    from powertrain.config import ConfigError, HardwareConfig
    from powertrain.hardware.profiles import load_profile, profile_names, select_profile

    if hardware == "auto":
        return select_profile(HardwareConfig(), device)
    try:
        return select_profile(load_profile(hardware), device)
    except FileNotFoundError:
        raise ConfigError("hardware", hardware, f"auto or a profile: {', '.join(profile_names())}") from None


class Meter:
    """Energy (and carbon) windows around any code; see the module docstring.

    Args:
        carbon_region: ISO 3166 alpha-3 country (``"DEU"``) or cloud region (``"gcp:europe-west4"``) for
            ``Measurement.carbon_g``; None leaves carbon None (never a silent zero).
        device: what the code runs on: ``"auto"`` (CUDA if present), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or
            a ``torch.device``. Only that GPU is billed and synchronised.
        pue: the data centre's power usage effectiveness (>= 1).
        intensity_g_per_kwh: a grid intensity of your own instead of the table's.
        energy: ``energy.*`` settings as on the command line, e.g. ``{"meter": "estimate"}``,
            ``{"cpu_share": 0.25}``, ``{"threads_total": 128}``.
        hardware: a hardware profile name (``"a100_sxm"``) for the TDP of estimates; ``"auto"`` picks it
            from the device, as the CLI does.

    Raises:
        ConfigError: an unknown region, profile or ``energy`` key, or a value the CLI would refuse.
    """

    def __init__(self, carbon_region: Optional[str] = None, *, device: Any = "auto", pue: float = 1.0,
                 intensity_g_per_kwh: Optional[float] = None, energy: Optional[Mapping[str, Any]] = None,
                 hardware: str = "auto"):
        from powertrain import carbon
        from powertrain.config import CarbonConfig
        from powertrain.config.checks import check_value
        from powertrain.hardware.device import resolve_device

        check_value("carbon.pue", pue)
        check_value("carbon.intensity_g_per_kwh", intensity_g_per_kwh)
        self.carbon = CarbonConfig(region=carbon_region, intensity_g_per_kwh=intensity_g_per_kwh, pue=pue)
        self.intensity = carbon.resolve(self.carbon)  # an unknown region fails here, before any work
        self.energy = _energy_config(energy)
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.profile = _profile(hardware, self.device)
        # the most recent ended windows, oldest first (bounded: a window per step must not grow memory)
        self.measurements: collections.deque[Measurement] = collections.deque(maxlen=KEPT_WINDOWS)
        self._meter = self._build()

    def _build(self) -> Any:
        from powertrain.hardware.profiles import tdp_split

        tdp = tdp_split(self.profile, self.device.type == "cuda")
        if _world_size() > 1:
            from powertrain.energy.distributed import join, rank_meter

            _, assignments = join(self.device)
            return rank_meter(self.energy, self.device, assignments, _rank(), **tdp)
        from powertrain.energy.select import build_meter

        return build_meter(self.energy, self.device, **tdp)

    def describe(self) -> str:
        """One line naming every component's source and method (what the CLI prints at start)."""
        return self._meter.describe()

    def billing_lines(self) -> list[str]:
        """One line per component: what share of it is billed, and why."""
        return self._meter.billing_lines()

    def begin_window(self, name: str) -> None:
        """Open window ``name`` (ValueError if a window of that name is open)."""
        self._meter.begin_window(name)

    def end_window(self, name: str) -> Measurement:
        """Close window ``name``: its ``Measurement``, with ``carbon_g`` when a region or intensity is set
        (ValueError if it is not open)."""
        from powertrain.carbon import operational_g

        m = self._meter.end_window(name)
        m.carbon_g = operational_g(self.carbon, self.intensity, m.total_j)
        self.measurements.append(m)
        return m

    def window(self, name: str) -> Window:
        """A context manager and decorator for one window named ``name``."""
        return Window(self, name)

    def close(self) -> None:
        """Stop the sampling threads and release the hardware handles (open windows are dropped)."""
        self._meter.close()

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _world_size() -> int:
    import sys

    dist = sys.modules.get("torch.distributed")  # a process group needs torch.distributed imported first
    return dist.get_world_size() if dist is not None and dist.is_available() and dist.is_initialized() else 1


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank()
