"""A per-run CSV in CodeCarbon's emissions.csv layout, so dashboards and scripts that read CodeCarbon files
read powertrain's runs, and CodeCarbon's own file writer appends to ours. Columns powertrain cannot fill
stay empty, never invented.

The columns and their order are the fields of CodeCarbon's ``EmissionsData`` dataclass: the packaged copy
(resources/codecarbon_emissions_layout.json, which names the CodeCarbon version it was taken from, and
which a test compares with that version's dataclass) unless another CodeCarbon version is installed, whose
dataclass is then read. Importing codecarbon costs about 0.1 s at every run's end, so its installed version
(package metadata, no import) decides whether its layout may differ.
Units, as CodeCarbon's: energy in kWh, emissions in kg CO2e (operational only: CodeCarbon has no embodied
share), power in W, duration in s, emissions_rate in kg/s, ram_total_size in GB.

The span: ``duration`` is the run's train + eval time (``time.train_s + time.eval_s``), the same windows
that ``energy.total_j`` and every component's joules cover, so ``*_power = *_energy / duration`` is the
mean power while training and evaluating. Setup (loading data, building the model) is metered apart in
result.json (``energy.setup_j``) and is in none of these columns.
"""

from __future__ import annotations

import csv
import functools
import json
from pathlib import Path
from typing import Any, Optional

from powertrain.energy.base import J_PER_KWH

LAYOUT_FILE = "codecarbon_emissions_layout.json"
KIND_COLUMN = {"cpu": "cpu", "gpu": "gpu", "dram": "ram"}  # powertrain component kind -> CodeCarbon prefix


@functools.lru_cache(maxsize=1)
def layout() -> tuple[tuple[str, ...], str]:
    """(columns in order, the CodeCarbon version they come from): the packaged layout, or the installed
    library's ``EmissionsData`` where a different CodeCarbon version is installed."""
    from importlib import resources

    data = json.loads(resources.files("powertrain.resources").joinpath(LAYOUT_FILE).read_text("utf-8"))
    packaged = tuple(data["columns"]), str(data["codecarbon_version"])
    try:
        if installed_version() in (None, packaged[1]):
            return packaged  # not installed (it is not a dependency), or the version the copy was taken from
        import dataclasses

        import codecarbon
        from codecarbon.output_methods.emissions_data import EmissionsData

        return tuple(f.name for f in dataclasses.fields(EmissionsData)), str(codecarbon.__version__)
    except (ImportError, TypeError):  # a version without the module or the dataclass this reads
        return packaged


def installed_version() -> Optional[str]:
    """The installed CodeCarbon's version from its package metadata (no import), or None."""
    from importlib import metadata

    try:
        return metadata.version("codecarbon")
    except metadata.PackageNotFoundError:
        return None


def row(result: Optional[dict[str, Any]], job: str) -> dict[str, Any]:
    """One emissions.csv row for a result.json dict (None: a run without a result, only its id is known)."""
    columns, version = layout()
    out: dict[str, Any] = dict.fromkeys(columns, "")
    out["run_id"] = job
    if not result:
        return out
    run, en, ca = result.get("run") or {}, result.get("energy") or {}, result.get("carbon") or {}
    hw, cfg, ti = result.get("hardware") or {}, result.get("config") or {}, result.get("time") or {}
    span_s = _span_s(ti)
    out.update(timestamp=str(run.get("finished_at") or "")[:19], run_id=run.get("id") or job,
               project_name=(cfg.get("tracking") or {}).get("project") or "powertrain",
               experiment_id=run.get("sweep_id") or "", duration=_v(span_s), os=hw.get("platform") or "",
               python_version=hw.get("python") or "", codecarbon_version=version,
               cpu_count=_v(hw.get("cpu_count")), cpu_model=hw.get("cpu_model") or "",
               ram_total_size=_v(hw.get("ram_total_gb")), pue=_v(ca.get("pue")),
               tracking_mode=_tracking_mode(en.get("components") or []))
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
        if span_s:  # mean power over the same windows the energy covers
            out[f"{kind}_power"] = j / span_s
    if ca.get("operational_g") is not None:  # CodeCarbon's emissions are operational only
        out["emissions"] = ca["operational_g"] / 1000
        if span_s:
            out["emissions_rate"] = out["emissions"] / span_s
    out.update(_location(ca.get("region")))
    return {k: v for k, v in out.items() if k in columns}


def _span_s(time_section: dict[str, Any]) -> Optional[float]:
    """train + eval seconds: the windows ``energy.total_j`` covers (None when neither was recorded)."""
    parts = [time_section.get("train_s"), time_section.get("eval_s")]
    parts = [float(p) for p in parts if isinstance(p, (int, float))]
    return sum(parts) if parts else None


def _tracking_mode(components: list[dict[str, Any]]) -> str:
    """CodeCarbon's ``machine`` when every CPU/DRAM component was billed whole, else ``process`` (a share:
    this process's threads, CPU time or memory)."""
    host = [c for c in components if c.get("kind") in ("cpu", "dram")]
    if not host:
        return ""
    return "machine" if all(c.get("share") == 1.0 for c in host) else "process"


def _location(region: Any) -> dict[str, Any]:
    """Country or cloud columns from ``carbon.region`` (an ISO 3166 alpha-3 code or ``provider:region``)."""
    region = str(region or "")
    if not region:
        return {}
    if ":" in region:
        provider, _, name = region.partition(":")
        return {"cloud_provider": provider, "cloud_region": name, "on_cloud": "Y"}
    out: dict[str, Any] = {"on_cloud": "N"}
    if len(region) == 3 and region.isalpha():
        out["country_iso_code"] = region.upper()
        try:
            from powertrain.carbon.intensity import table

            hit = table().get(region.upper())
            if hit is not None:
                out["country_name"] = hit.source.split(" (")[0]
        except Exception:  # the name is a nicety; the code is the key
            pass
    else:
        out["region"] = region
    return out


def _v(x: Any) -> Any:
    return "" if x is None else x


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` (from ``row``) as emissions.csv at ``path``."""
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=layout()[0])
        w.writeheader()
        w.writerows(rows)
    return path


def write(path: Path, df: Any) -> Path:
    """Write emissions.csv for every run of a ``load_sweep`` frame (runs without a result: id only)."""
    return write_rows(path, [row(r["result"] if isinstance(r["result"], dict) else None, r["run_dir"])
                             for _, r in df.iterrows()])


def write_run(run_dir: Path, result: dict[str, Any]) -> Path:
    """emissions.csv of a single run, in its own directory (a sweep's is written at the sweep root)."""
    return write_rows(Path(run_dir) / "emissions.csv", [row(result, str(run_dir))])
