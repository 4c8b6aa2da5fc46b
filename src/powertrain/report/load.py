"""``load_sweep(dir)``: every run under a sweep or study directory as one row of a pandas DataFrame.

A study directory holds several sub-sweeps and single runs; every job directory found under it
(recursively, see ``summary.job_dirs``) is a row, also when it has no result.json: ``pending`` while its
sweep has not ended (no sweep_summary.json marked ended above it, and the process that runs it is alive),
``missing`` after; jobs of a sweep's plan that never started are rows too. Nothing is dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from powertrain.report.summary import (
    PLAN_FILE,
    SUMMARY_JSON,
    _get,
    _job_sort_key,
    job_dirs,
    sweep_ended,
    sweep_over,
)
from powertrain.results import OPTUNA_STUDY_FILE, load_result

# config keys that differ between runs without being a studied factor (per-run paths, bookkeeping)
# ``repeat`` and the seed are repeats of one variant, ``study.variant`` names it (the ``variant`` column)
NOT_FACTORS = ("resume", "verbose", "save_checkpoint", "tracking.dir", "tracking.group", "paradigm.from_run",
               "paradigm.checkpoint", "dataset.root", "seed", "repeat", "repeats", "study.repeats", "study.variant")
METRICS = ("final_accuracy", "best_accuracy", "epochs", "steps", "target_accuracy", "reached_target",
           "energy_to_target_j", "time_to_target_s")
ENERGY = ("total_j", "train_j", "eval_j", "measured_fraction")
CARBON = ("operational_g", "embodied_g", "total_g")
TIME = ("wall_s", "train_s")
FROM_HISTORY = "derived from history: cumulative energy/time at the end of the first epoch at or above the target"


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(d, dict):
        return out
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = tuple(v) if isinstance(v, list) else v  # hashable, so levels can be counted
    return out


def _part(rel: Path) -> str:
    # a plain sweep's jobs are numbered children (0, 1, ...); anything else is a named part of a study
    if not rel.parts:  # the directory is a single run itself
        return ""
    first = rel.parts[0]
    return first if len(rel.parts) > 1 or not first.isdigit() else ""


def _ended(job_dir: Path, root: Path) -> bool:
    """Whether the sweep of ``job_dir`` is over: its summary says so, or the process that ran it is gone."""
    for d in [job_dir, *job_dir.parents]:
        summary = (d / SUMMARY_JSON).is_file()
        if summary and sweep_ended(d / SUMMARY_JSON):
            return True
        if (d / PLAN_FILE).is_file():
            return sweep_over(d)
        if summary or d == root:
            return False
    return False


def _trials(root: Path) -> dict[Path, int]:
    """Optuna trial number of each job directory, from every optuna_study.json under ``root``."""
    out: dict[Path, int] = {}
    for path in [root / OPTUNA_STUDY_FILE, *root.rglob(OPTUNA_STUDY_FILE)]:
        try:
            study = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for t in study.get("trials", []) if isinstance(study, dict) else []:
            if t.get("job") is not None and t.get("number") is not None:
                out[(path.parent / str(t["job"])).resolve()] = int(t["number"])
    return out


def to_target_from_history(history: Any, target: Optional[float]) -> tuple[Optional[float], Optional[float]]:
    """(energy J, time s) at the end of the first epoch whose accuracy reaches ``target``, from history."""
    if target is None or not isinstance(history, list):
        return None, None
    for h in history:
        acc = h.get("accuracy") if isinstance(h, dict) else None
        if isinstance(acc, (int, float)) and acc >= target:
            return h.get("energy_j"), h.get("wall_s")
    return None, None


def _row(job_dir: Path, root: Path, trials: dict[Path, int]) -> dict[str, Any]:
    result, status, error = load_result(job_dir)
    row: dict[str, Any] = {"run_dir": str(job_dir), "part": _part(job_dir.relative_to(root)),
                           "job": str(job_dir.relative_to(root)) if job_dir != root else job_dir.name,
                           "trial": trials.get(job_dir.resolve()),
                           "status": status, "error": error}
    if result is None:
        from powertrain.report.summary import _planned_overrides, _read_overrides, no_result

        _, row["error"] = no_result(job_dir, status, error)
        if status == "missing" and not _ended(job_dir, root):
            row["status"], row["error"] = "pending", "no result.json yet (the sweep has not ended)"
        row["overrides"] = tuple(_read_overrides(job_dir) or _planned_overrides(job_dir) or ())
        row["_config"] = {}
        row["_from_overrides"] = _parse_overrides(row["overrides"])  # its factor values, if given there
        row["repeat"] = row["_from_overrides"].get("repeat", 0)
        row["variant"] = row["_from_overrides"].get("study.variant")
        return row
    m = result.get("metrics") or {}
    for k in METRICS:
        row[k] = m.get(k)
    row["to_target_source"] = "result" if row["energy_to_target_j"] is not None else None
    if row["energy_to_target_j"] is None and m.get("reached_target") is not False:
        e, t = to_target_from_history(result.get("history"), m.get("target_accuracy"))
        if e is not None:
            row.update(energy_to_target_j=e, time_to_target_s=row["time_to_target_s"] or t,
                       reached_target=True, to_target_source=FROM_HISTORY)
    en = result.get("energy") or {}
    for k in ENERGY:
        row[k] = en.get(k)
    for c in en.get("components") or []:
        if isinstance(c, dict) and c.get("name"):
            row[f"energy.{c['name']}.j"] = c.get("energy_j")
            row[f"energy.{c['name']}.method"] = c.get("method")
    ca = result.get("carbon") or {}
    for k in CARBON:
        row[k] = ca.get(k)
    row["region"] = ca.get("region")
    ti = result.get("time") or {}
    for k in TIME:
        row[k] = ti.get(k)
    row["overrides"] = tuple(_get(result, ("run", "overrides")) or ())
    row["history"] = result.get("history") if isinstance(result.get("history"), list) else []
    row["result"] = result
    row["_config"] = _flatten(result.get("config"))
    row["seed"] = row["_config"].get("seed")
    row["repeat"] = row["_config"].get("repeat", 0)
    row["variant"] = row["_config"].get("study.variant")
    return row


def _parse_overrides(overrides: tuple[str, ...]) -> dict[str, Any]:
    import yaml  # comes with Hydra; a plain reader keeps omegaconf out

    out = {}
    for o in overrides:
        key, sep, value = o.partition("=")
        if sep and not key.startswith(("+", "~", "hydra")):
            try:
                out[key] = yaml.safe_load(value)
            except yaml.YAMLError:
                out[key] = value
    return out


def _varying(rows: list[dict[str, Any]]) -> list[str]:
    configs = [r["_config"] for r in rows if r["_config"]]
    if len(configs) < 2:
        return []
    keys = sorted(set().union(*configs))
    out = []
    for k in keys:
        if k in NOT_FACTORS or k.startswith(("hardware.", "energy.", "tracking.")):
            continue
        values = {repr(c.get(k)) for c in configs}
        if len(values) > 1:
            out.append(k)
    return sorted(out, key=factor_name)  # as they read: optimizer before optimizer.lr


def load_sweep(directory: Any) -> Any:
    """Every run under ``directory`` (a sweep or a study, searched recursively) as a pandas DataFrame.

    Columns: run_dir, part, status, error, the swept factors (dotted config keys that differ across the
    runs, e.g. ``optimizer.lr``) and seed, the metrics, energy (with ``energy.<component>.j`` and
    ``.method``), carbon, time, ``history`` (the per-epoch list) and ``result`` (the whole result.json).
    ``df.attrs["factors"]`` lists the swept factors (see ``factors``).
    """
    import pandas as pd

    root = Path(directory).resolve()
    trials = _trials(root)
    # part by part, jobs in numeric order inside each (job_dirs alone would interleave 0, 0, 1, 1, ...)
    dirs = sorted(job_dirs(root), key=lambda d: (str(d.parent.relative_to(root)) if d != root else "",
                                                 _job_sort_key(d)))
    rows = [_row(d, root, trials) for d in dirs]
    reserved = {"run_dir", "part", "job", "trial", "status", "error", "seed", "repeat", "variant", "to_target_source",
                "region", "overrides", "history", "result", *METRICS, *ENERGY, *CARBON, *TIME}
    # a swept key named like a column (target_accuracy) keeps its config. prefix, so neither hides the other
    swept = {k: (f"config.{k}" if k in reserved else k) for k in _varying(rows)}
    for r in rows:
        cfg = r.pop("_config") or r.pop("_from_overrides", {})
        for k, col in swept.items():
            r[col] = cfg.get(k)
    # study.part names a study's part (the ``part`` column already says it): a label, not a factor
    swept = [c for c in swept.values() if c != "study.part"]
    base = ["run_dir", "part", "job", "trial", "status", "error", *swept, "seed", "repeat", "variant", *METRICS,
            "to_target_source", *ENERGY]
    comp = sorted({k for r in rows for k in r if k.startswith("energy.")})
    cols = [*base, *comp, *CARBON, "region", *TIME, "overrides", "history", "result"]
    df = pd.DataFrame([{c: r.get(c) for c in cols} for r in rows], columns=cols)
    for c in [*METRICS, *ENERGY, *CARBON, *TIME, *(k for k in comp if k.endswith(".j"))]:
        if c not in ("reached_target",):
            df[c] = pd.to_numeric(df[c], errors="coerce")
    for c in swept:  # factor values as given (32, not 32.0 because a pending row has none)
        df[c] = pd.Series([r.get(c) for r in rows], index=df.index, dtype=object)
    df["history"] = [h if isinstance(h, list) else [] for h in df["history"]]
    df.attrs["factors"] = swept
    df.attrs["root"] = str(root)
    return df


def factors(df: Any, include_seed: bool = False) -> list[str]:
    """The swept factors of a ``load_sweep`` frame (seed and repeat, repeats rather than factors, only if
    asked)."""
    swept = list(df.attrs.get("factors", []))
    if not swept:  # a frame that lost its attrs: columns that look like dotted config keys and vary
        known = {"run_dir", "part", "job", "trial", "status", "error", "seed", "repeat", "variant",
                 "to_target_source", "region", "overrides", "history", "result", *METRICS, *ENERGY, *CARBON, *TIME}
        swept = [c for c in df.columns if c not in known and not c.startswith("energy.")
                 and df[c].astype(str).nunique() > 1]
    swept = [c for c in swept if c in df.columns]
    for key in ("seed", "repeat"):
        if include_seed and key in df.columns and df[key].nunique() > 1:
            swept.append(key)
    return swept


def factor_name(key: str) -> str:
    """A factor as the report shows it: the override a user types. A group's choice (``optimizer.name``)
    reads as the group (``optimizer``, as in ``optimizer=sgd``); any other key as its dotted path
    (``optimizer.lr``); a key prefixed ``config.`` to tell it from a metric column loses the prefix."""
    from powertrain.config import GROUPS

    k = key[len("config."):] if key.startswith("config.") else key
    group, _, leaf = k.partition(".")
    return group if leaf == "name" and group in GROUPS else k
