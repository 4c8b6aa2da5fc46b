"""Carbon of a run: operational (energy × PUE × grid intensity) and embodied (the hardware's share).

The one operational formula (``operational_g``) serves the result's carbon section and its per-epoch rows;
``account`` writes the result's ``carbon`` section.
"""

from __future__ import annotations

from typing import Any, Optional

from powertrain.carbon.intensity import Intensity, hint
from powertrain.config import CarbonConfig, HardwareConfig
from powertrain.energy.base import J_PER_KWH

S_PER_YEAR = 365.25 * 24 * 3600
TYPICAL_PUE = 1.56  # Uptime Institute Global Data Center Survey 2024, industry average annual PUE


def embodied_g(hardware: HardwareConfig, wall_s: float, devices: int = 1) -> Optional[float]:
    """Embodied emissions charged to a run: device count × embodied × run time / (lifetime × utilisation).

    Returns None when the profile lacks any of the three life-cycle figures.
    """
    if None in (hardware.embodied_kgco2e, hardware.lifetime_years, hardware.utilization):
        return None
    busy_s = hardware.lifetime_years * S_PER_YEAR * hardware.utilization
    return devices * hardware.embodied_kgco2e * 1000.0 * wall_s / busy_s


def operational_g(cfg: CarbonConfig, intensity: Optional[Intensity], energy_j: float) -> Optional[float]:
    """Grid emissions of ``energy_j`` of IT energy: kWh × PUE × g/kWh; None without an intensity.

    The one operational-carbon formula: ``account`` and the per-epoch rows both use it.
    """
    if intensity is None:
        return None
    return energy_j / J_PER_KWH * cfg.pue * intensity.g_per_kwh


def device_count(components: list[dict[str, Any]], kind: str) -> int:
    """How many devices of the profile's ``kind`` the run's meter saw (GPUs: one component each)."""
    if kind != "gpu":
        return 1  # a CPU profile is the package(s) of one host
    return max(1, sum(1 for c in components if c.get("kind") == "gpu"))


def account(
    cfg: CarbonConfig,
    intensity: Optional[Intensity],
    hardware: HardwareConfig,
    energy_j: float,
    wall_s: float,
    devices: int = 1,
) -> dict[str, Any]:
    """The ``carbon`` section of result.json.

    Embodied emissions do not depend on the grid, so they are computed even without a region;
    ``total_g`` is only given when both parts are known (a partial sum labelled "total" would make
    runs on different hardware or regions look comparable when they are not).

    Args:
        cfg: the carbon config (for the PUE).
        intensity: from ``resolve``; None when no region is configured.
        hardware: the hardware profile in use (from ``profiles.select_profile``).
        energy_j: the energy billed to the run (IT energy, before PUE), in joules.
        wall_s: the run's wall-clock time, over which the hardware is occupied.
        devices: how many devices of the profile the run used (e.g. GPUs).
    """
    energy_kwh = energy_j / J_PER_KWH
    operational = operational_g(cfg, intensity, energy_j)
    embodied = embodied_g(hardware, wall_s, devices)
    total = None if operational is None or embodied is None else operational + embodied

    assumptions = [f"hardware profile {hardware.name}: {a}" for a in hardware.assumptions]
    notes = [
        "grid intensities are annual averages (attributional), not marginal emissions",
        "embodied covers the accelerator(s) of the hardware profile only, not the host server",
    ]
    if cfg.pue == 1.0:
        assumptions.append(
            f"carbon.pue=1.0 counts no facility overhead; a typical data centre is ~{TYPICAL_PUE} "
            "(Uptime Institute 2024 average)"
        )
    if intensity is None:
        notes.append(hint())
    elif intensity.kind == "world_average_fallback":
        notes.append("operational carbon uses the labelled world-average fallback, not a real grid")
    if embodied is None:
        notes.append(
            f"hardware profile {hardware.name} lacks embodied_kgco2e, lifetime_years or utilization: "
            "embodied_g and total_g are null"
        )

    return {
        "region": None if intensity is None else intensity.region,
        "intensity_g_per_kwh": None if intensity is None else intensity.g_per_kwh,
        "intensity_source": None if intensity is None else intensity.source,
        "intensity_kind": None if intensity is None else intensity.kind,
        "pue": cfg.pue,
        "energy_kwh": energy_kwh,
        "facility_energy_kwh": energy_kwh * cfg.pue,
        "operational_g": operational,
        "embodied_g": embodied,
        "total_g": total,
        "embodied": {
            "profile": hardware.name,
            "devices": devices,
            "embodied_kgco2e_per_device": hardware.embodied_kgco2e,
            "lifetime_years": hardware.lifetime_years,
            "utilization": hardware.utilization,
            "run_s": wall_s,
            "sources": dict(hardware.sources),
        },
        "estimate": "average",
        "assumptions": assumptions,
        "notes": notes,
    }
