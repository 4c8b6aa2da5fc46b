"""A per-run CSV in CodeCarbon's emissions.csv column layout, so dashboards that read CodeCarbon files read
powertrain's runs. Columns powertrain cannot fill stay empty, never invented.

The columns are the fields of CodeCarbon's ``EmissionsData`` dataclass (codecarbon/output_methods/
emissions_data.py, the 3.x layout with utilisation and water columns), in its order, with its units:
energy in kWh, emissions in kg CO2e, power in W, duration in s, emissions_rate in kg/s.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Optional

from powertrain.energy.base import J_PER_KWH

COLUMNS = ("timestamp", "project_name", "run_id", "experiment_id", "duration", "emissions", "emissions_rate",
           "cpu_utilization_percent", "ram_utilization_percent", "ram_used_gb", "cpu_power", "gpu_power",
           "ram_power", "cpu_energy", "gpu_energy", "ram_energy", "energy_consumed", "water_consumed",
           "country_name", "country_iso_code", "region", "cloud_provider", "cloud_region", "os",
           "python_version", "codecarbon_version", "cpu_count", "cpu_model", "gpu_count", "gpu_model",
           "longitude", "latitude", "ram_total_size", "tracking_mode", "on_cloud", "pue", "wue")
KIND_COLUMN = {"cpu": "cpu", "gpu": "gpu", "dram": "ram"}  # powertrain component kind -> CodeCarbon prefix


def row(result: Optional[dict[str, Any]], job: str) -> dict[str, Any]:
    """One emissions.csv row for a result.json dict (None: a run without a result, only its id is known)."""
    out: dict[str, Any] = dict.fromkeys(COLUMNS, "")
    out["run_id"] = job
    if not result:
        return out
    run, en, ca = result.get("run") or {}, result.get("energy") or {}, result.get("carbon") or {}
    hw, cfg = result.get("hardware") or {}, result.get("config") or {}
    wall_s = (result.get("time") or {}).get("wall_s")
    out.update(timestamp=str(run.get("finished_at") or "")[:19], run_id=run.get("id") or job,
               project_name=(cfg.get("tracking") or {}).get("project") or "powertrain",
               experiment_id=run.get("sweep_id") or "", duration=_v(wall_s), os=hw.get("platform") or "",
               cpu_count=_v(hw.get("cpu_count")), cpu_model=hw.get("cpu_model") or "", pue=_v(ca.get("pue")))
    gpus = hw.get("gpus") or []
    out.update(gpu_count=len(gpus), gpu_model=", ".join(map(str, gpus)))
    if en.get("total_j") is not None:
        out["energy_consumed"] = en["total_j"] / J_PER_KWH
    per_kind: dict[str, float] = {}
    for c in en.get("components") or []:
        kind = KIND_COLUMN.get(c.get("kind"))
        if kind and c.get("energy_j") is not None:
            per_kind[kind] = per_kind.get(kind, 0.0) + float(c["energy_j"])
    for kind, j in per_kind.items():
        out[f"{kind}_energy"] = j / J_PER_KWH
        if wall_s:  # mean power over the run, the only power figure a whole-run record supports
            out[f"{kind}_power"] = j / wall_s
    if ca.get("operational_g") is not None:  # CodeCarbon's emissions are operational only
        out["emissions"] = ca["operational_g"] / 1000
        if wall_s:
            out["emissions_rate"] = out["emissions"] / wall_s
    region = str(ca.get("region") or "")
    if ":" in region:
        out["cloud_provider"], _, out["cloud_region"] = region.partition(":")
        out["on_cloud"] = "Y"
    elif len(region) == 3 and region.isalpha():
        out["country_iso_code"] = region.upper()
    elif region:
        out["region"] = region
    return out


def _v(x: Any) -> Any:
    return "" if x is None else x


def write(path: Path, df: Any) -> Path:
    """Write emissions.csv for every run of a ``load_sweep`` frame (runs without a result: id only)."""
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for _, r in df.iterrows():
            w.writerow(row(r["result"] if isinstance(r["result"], dict) else None, r["run_dir"]))
    return path
