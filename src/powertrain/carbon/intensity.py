"""Grid carbon intensity: the packaged tables, the region lookup and the one-line hint.

Everything here is offline: intensities come from tables packaged in ``powertrain/resources`` (see
docs/carbon.md for their attribution), never from a live API or IP geolocation, because compute
nodes are often offline and a silent guess of the region would make figures incomparable.

The figures are *average* (attributional) grid intensities, not marginal ones; the result says so.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any, Optional

from powertrain.config import CarbonConfig, ConfigError
from powertrain.config.errors import close_matches

# IEA's world average (≈475 gCO2/kWh, Global Energy & CO2 Status Report 2019); the figure most tools
# (CodeCarbon, Green Algorithms) fall back to. Used only when the user opts in, and labelled.
WORLD_AVERAGE_G_PER_KWH = 475.0
WORLD_AVERAGE_SOURCE = (
    "world average fallback (IEA ~475 g/kWh), labelled: not the grid this run used; "
    "set carbon.region for a real figure"
)
OVERRIDE_SOURCE = "carbon.intensity_g_per_kwh override"

COUNTRY_TABLE = "grid_carbon_intensity_by_country.csv"
CLOUD_TABLE = "cloud_region_carbon_intensity.csv"
# The packaged cloud table (as compiled by CodeCarbon) misspells this GCP region; accept both.
CLOUD_ALIASES = {"gcp:me-central1": "gcp:me-cenrtal1"}


@dataclass(frozen=True)
class Intensity:
    """A resolved grid carbon intensity and where it came from."""

    region: Optional[str]
    g_per_kwh: float
    source: str
    kind: str  # "country_table" | "cloud_table" | "override" | "world_average_fallback"


@dataclass(frozen=True)
class _Row:
    key: str
    g_per_kwh: float
    source: str


def _open(name: str) -> Any:
    return resources.files("powertrain.resources").joinpath(name).open(encoding="utf-8", newline="")


@functools.lru_cache(maxsize=1)
def table() -> dict[str, _Row]:
    """Every known region key (``DEU``, ``gcp:europe-west4``) mapped to its intensity and source."""
    rows: dict[str, _Row] = {}
    with _open(COUNTRY_TABLE) as f:
        for r in csv.DictReader(f):
            iso3 = r["iso3"].strip().upper()
            rows[iso3] = _Row(
                iso3,
                float(r["carbon_intensity_g_per_kwh"]),
                f"{r['country']} ({iso3}) {r['year']} annual average, life-cycle, production-based: "
                f"Our World in Data (Ember, Energy Institute), CC BY 4.0, via CodeCarbon's table "
                f"[{COUNTRY_TABLE}]",
            )
    with _open(CLOUD_TABLE) as f:
        for r in csv.DictReader(f):
            key = f"{r['provider'].strip().lower()}:{r['region'].strip().lower()}"
            where = ", ".join(x for x in (r["city"], r["country_name"]) if x)
            rows[key] = _Row(
                key,
                float(r["impact"]),
                f"{r['providerName']} {r['region']} ({where}): provider-published figure via "
                f"CodeCarbon's table [{CLOUD_TABLE}], {r['source']}",
            )
    return rows


def _normalise(region: str) -> str:
    region = str(region).strip()
    if ":" in region:
        provider, _, name = region.partition(":")
        key = f"{provider.strip().lower()}:{name.strip().lower()}"
        return CLOUD_ALIASES.get(key, key)
    return region.upper()


@functools.lru_cache(maxsize=1)
def _by_country_name() -> dict[str, _Row]:
    # a country's English name is accepted too ("Germany"), since it is unambiguous in the table
    return {r.source.split(" (")[0].lower(): r for k, r in table().items() if ":" not in k}


def _lookup(region: str) -> Optional[_Row]:
    row = table().get(_normalise(region))
    return row if row is not None else _by_country_name().get(str(region).strip().lower())


def region_problem(region: Any) -> Optional[str]:
    """None if ``region`` is in the packaged tables, else the one-line text of what is allowed."""
    return None if _lookup(str(region)) is not None else _unknown_region(str(region))


def _unknown_region(region: str) -> str:
    key = _normalise(region)
    keys = list(table())
    pool = [k for k in keys if ":" in k] if ":" in key else [k for k in keys if ":" not in k]
    provider = key.partition(":")[0] if ":" in key else None
    text = "an ISO 3166 alpha-3 country code (e.g. DEU) or a cloud region in the packaged table"
    if provider and provider not in {k.partition(":")[0] for k in pool}:
        # the packaged cloud table holds GCP only; another provider's regions are no equivalent
        known = ", ".join(sorted({k.partition(":")[0] for k in pool}))
        return text + (
            f" (it has no {provider} regions, only {known}: use the country the region is in, "
            "e.g. USA, or set carbon.intensity_g_per_kwh)"
        )
    close = close_matches(key, pool, n=4)
    if close:
        text += "; close matches: " + ", ".join(close)
    return text


def resolve(cfg: CarbonConfig) -> Optional[Intensity]:
    """The grid intensity a run is accounted at. Call before any data is loaded.

    Returns:
        None when no region, no override and no opted-in fallback are configured (see ``hint``).

    Raises:
        ConfigError: ``carbon.region`` is not in the packaged tables; the message lists close matches.
    """
    row = None
    if cfg.region is not None:
        row = _lookup(str(cfg.region))
        if row is None:
            raise ConfigError("carbon.region", cfg.region, _unknown_region(str(cfg.region)))
    if cfg.intensity_g_per_kwh is not None:
        region = row.key if row else None
        return Intensity(region, float(cfg.intensity_g_per_kwh), OVERRIDE_SOURCE, "override")
    if row is not None:
        kind = "cloud_table" if ":" in row.key else "country_table"
        return Intensity(row.key, row.g_per_kwh, row.source, kind)
    if cfg.world_average_fallback:
        return Intensity(
            "world_average", WORLD_AVERAGE_G_PER_KWH, WORLD_AVERAGE_SOURCE, "world_average_fallback"
        )
    return None


def hint() -> str:
    """One line for the user when no region is configured."""
    return (
        "carbon: no region set, so carbon figures are null; set carbon.region=DEU (ISO 3166 alpha-3) "
        "or e.g. gcp:europe-west4, or carbon.intensity_g_per_kwh=<g/kWh>, "
        "or opt into carbon.world_average_fallback=true"
    )
