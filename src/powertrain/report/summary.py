"""Sweep summary: every result.json under a sweep directory as tidy rows, a summary, and a table.

A sweep directory is what ``python -m powertrain -m ...`` writes: one job directory per sweep point
(``<sweep>/<n>/``), each with ``.hydra/`` and (normally) ``result.json``. A job directory without a
result.json (a job killed before it could write one) is a row with status ``missing``, never a lost row;
so is a job of the sweep's plan (``sweep_plan.json``, written before the first job) that never started,
and a job whose result.json cannot be read is a ``failed`` row saying so. A job whose result.json still
says ``running`` but whose process is gone reads ``lost``, with the energy and history it had saved.

The summary adds campaign accounting (total energy and carbon of the whole search; rounds-to-best: the
first job, in job order, whose accuracy reaches 99 % of the best, and the energy spent until then) and,
for several objectives, the Pareto front. No Hydra here: the Hydra callback lives in ``callback.py``.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from powertrain.console import num
from powertrain.results import BROKEN, OPTUNA_STUDY_FILE, RESULT_FILE, USABLE, load_result

SUMMARY_SCHEMA = "powertrain.sweep_summary/1"
SUMMARY_JSON = "sweep_summary.json"
SUMMARY_CSV = "sweep_summary.csv"
BEST_SHARE = 0.99  # rounds-to-best: first job within 1 % of the best accuracy

# objective name -> (row key, path in result.json, default direction)
OBJECTIVES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "accuracy": ("accuracy", ("metrics", "final_accuracy"), "maximize"),
    "best_accuracy": ("best_accuracy", ("metrics", "best_accuracy"), "maximize"),
    "loss": ("loss", ("metrics", "final_eval_loss"), "minimize"),
    "energy": ("energy_j", ("energy", "total_j"), "minimize"),
    "carbon": ("carbon_g", ("carbon", "total_g"), "minimize"),
    "energy_to_target": ("energy_to_target_j", ("metrics", "energy_to_target_j"), "minimize"),
    "time": ("wall_s", ("time", "wall_s"), "minimize"),
}

CSV_COLUMNS = ("job", "trial", "status", "overrides", "accuracy", "best_accuracy", "epochs", "energy_j",
               "carbon_g", "energy_to_target_j", "wall_s", "attempts", "error", "dir")


def _get(d: Any, path: Sequence[str]) -> Any:
    for part in path:
        if not isinstance(d, dict):
            return None
        d = d.get(part)
    return d


def _num(v: Any) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def objective_value(result: dict[str, Any], name: str) -> Optional[float]:
    """The value of objective ``name`` (see ``OBJECTIVES``) in a result dict, or None if absent."""
    if name not in OBJECTIVES:
        raise KeyError(f"unknown objective {name!r}; one of {', '.join(OBJECTIVES)}")
    return _num(_get(result, OBJECTIVES[name][1]))


PLAN_FILE = "sweep_plan.json"  # written by launch.preflight before a checked sweep's first job


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job directories of a sweep: those holding a result.json or a ``.hydra/overrides.yaml``, and
    those a ``sweep_plan.json`` names that do not exist (jobs that never started)."""
    sweep_dir = Path(sweep_dir)
    found, plans = [], []
    for root, dirs, files in os.walk(sweep_dir):  # one walk
        d = Path(root)
        marked = RESULT_FILE in files or (".hydra" in dirs and (d / ".hydra" / "overrides.yaml").is_file())
        if marked and d != sweep_dir:  # the sweep root itself is not a job
            found.append(d)
        if PLAN_FILE in files:
            plans.append(d)
        dirs[:] = [n for n in dirs if not n.startswith(".")]  # .hydra, submitit's bookkeeping: not jobs
    have = set(found)
    for root in plans:
        found += [d for d in (root / j["dir"] for j in _plan(root).get("jobs", [])) if d not in have]
    if not found and (sweep_dir / RESULT_FILE).is_file():  # a single run's own directory: that run
        found = [sweep_dir]
    return sorted(found, key=_job_sort_key)


def _plan(sweep_root: Path) -> dict[str, Any]:
    """The sweep's plan ({} without a readable one); callers only read it (it is shared, see below)."""
    path = Path(sweep_root) / PLAN_FILE
    try:
        st = path.stat()
    except OSError:
        return {}
    # a report asks for the plan once per job that lacks a result (its overrides, whether the sweep is
    # over): read it once per version of the file, not once per job of a large, stopped sweep
    return _read_plan(str(path), st.st_ino, st.st_mtime_ns, st.st_size)  # a rewrite is a new version


@functools.lru_cache(maxsize=32)
def _read_plan(path: str, ino: int, mtime_ns: int, size: int) -> dict[str, Any]:
    try:
        plan = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(plan, dict):
        return {}
    for j in plan.get("jobs", []):  # the directory of each job, relative to the sweep root
        j.setdefault("dir", j.get("job"))
    return plan


def sweep_over(sweep_root: Path) -> bool:
    """Whether the process that ran the sweep at ``sweep_root`` has ended (by its plan; False if unknown)."""
    from powertrain.results import liveness

    plan = _plan(sweep_root)
    info = plan.get("run")
    return bool(info) and liveness.why_dead(info, Path(sweep_root) / PLAN_FILE) is not None


def _planned_overrides(job_dir: Path) -> Optional[list[str]]:
    for j in _plan(job_dir.parent).get("jobs", []):
        if j.get("dir") == job_dir.name:
            return [str(o) for o in j.get("overrides", [])]
    return None


NEVER_STARTED = "never started (its sweep stopped before launching it)"


def no_result(job_dir: Path, status: str, error: Optional[str]) -> tuple[str, Optional[str]]:
    """(reason, error) of a job without a readable result.json, from ``load_result``'s status and error:
    the reason is what the campaign counts it as (never started, no result.json, unreadable result.json);
    a job of the plan whose directory was never made never started."""
    if status == "missing" and not Path(job_dir).exists():
        return "never started", NEVER_STARTED
    return ("unreadable result.json" if status == "failed" else "no result.json"), error


def _job_sort_key(d: Path) -> tuple[int, Any]:
    return (0, int(d.name)) if d.name.isdigit() else (1, str(d))


def _read_overrides(job_dir: Path) -> list[str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return []
    import yaml  # PyYAML comes with Hydra; a plain reader keeps omegaconf out of the report

    try:
        items = yaml.safe_load(path.read_text()) or []
    except yaml.YAMLError:
        return []
    return [str(v) for v in items] if isinstance(items, list) else []


def row_from_job(job_dir: Path, sweep_dir: Path) -> dict[str, Any]:
    """One tidy row for a job directory (status ``missing`` if it has no readable result.json)."""
    job_dir = Path(job_dir)
    row: dict[str, Any] = {
        "job": str(job_dir.relative_to(sweep_dir)) if job_dir != Path(sweep_dir) else job_dir.name, "job_num": int(job_dir.name) if job_dir.name.isdigit() else None,
        "trial": None, "status": "missing", "overrides": _read_overrides(job_dir), "error": None,
        "accuracy": None, "best_accuracy": None, "loss": None, "epochs": None, "energy_j": None,
        "carbon_g": None, "energy_to_target_j": None, "wall_s": None, "attempts": None, "dir": str(job_dir),
        "no_result": None,  # without a readable result.json: why (what campaign() counts it as)
    }
    result, row["status"], row["error"] = load_result(job_dir)
    if result is None:
        row["no_result"], row["error"] = no_result(job_dir, row["status"], row["error"])
        if not job_dir.exists():
            row["overrides"] = _planned_overrides(job_dir) or []
        return row
    row["overrides"] = list(_get(result, ("run", "overrides")) or row["overrides"])
    for name in OBJECTIVES:
        row[OBJECTIVES[name][0]] = objective_value(result, name)
    row["epochs"] = _get(result, ("metrics", "epochs"))
    row["attempts"] = _get(result, ("run", "attempts"))
    return row


def load_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """Tidy rows, one per job directory, in job order."""
    sweep_dir = Path(sweep_dir)
    return [row_from_job(d, sweep_dir) for d in job_dirs(sweep_dir)]


def pareto_front(rows: Sequence[dict[str, Any]], objectives: Sequence[str],
                 directions: Sequence[str]) -> list[dict[str, Any]]:
    """Rows not dominated by any other row (only rows with a usable status and every objective)."""
    keys = [OBJECTIVES[o][0] for o in objectives]
    sign = [1.0 if d == "maximize" else -1.0 for d in directions]
    cand = [r for r in rows if r["status"] in USABLE and all(r.get(k) is not None for k in keys)]

    def score(r: dict[str, Any]) -> list[float]:
        return [s * r[k] for s, k in zip(sign, keys)]

    front = []
    for r in cand:
        sr = score(r)
        dominated = any(
            all(a >= b for a, b in zip(so, sr)) and any(a > b for a, b in zip(so, sr))
            for so in (score(o) for o in cand if o is not r)
        )
        if not dominated:
            front.append({"job": r["job"], "trial": r.get("trial"), "overrides": r["overrides"],
                          **{o: r[k] for o, k in zip(objectives, keys)}})
    return front


def campaign(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What the whole search cost, and how soon (in job order) it found its best accuracy."""
    energies = [r["energy_j"] for r in rows if r["energy_j"] is not None]
    carbons = [r["carbon_g"] for r in rows if r["carbon_g"] is not None]
    lacking = Counter(_why_no_energy(r) for r in rows if r["energy_j"] is None)
    out: dict[str, Any] = {
        "jobs": len(rows),
        "total_energy_j": sum(energies),
        "jobs_without_energy": len(rows) - len(energies),
        "without_energy": dict(lacking),  # why: never started, no result.json, unreadable result.json, ...
        "total_carbon_g": sum(carbons) if carbons else None,
        "total_wall_s": sum(r["wall_s"] or 0.0 for r in rows),
        "best_job": None, "best_accuracy": None, "rounds_to_best": None, "energy_to_best_j": None,
    }
    scored = [r for r in rows if r["status"] in USABLE and r["accuracy"] is not None]
    if not scored:
        return out
    best = max(scored, key=lambda r: r["accuracy"])
    spent = 0.0
    for i, r in enumerate(rows, start=1):
        spent += r["energy_j"] or 0.0  # failed jobs cost energy too
        if r in scored and r["accuracy"] >= BEST_SHARE * best["accuracy"]:
            out.update(best_job=best["job"], best_accuracy=best["accuracy"], rounds_to_best=i,
                       rounds_to_best_job=r["job"], energy_to_best_j=spent)
            break
    return out


def _why_no_energy(row: dict[str, Any]) -> str:
    if row.get("no_result"):  # no_result() said why when the row was made
        return row["no_result"]
    if row["status"] in ("missing", "pending"):
        return "no result.json" if row["status"] == "missing" else "pending"
    return f"{row['status']} before training"


def summarize(sweep_dir: Path, objectives: Optional[Sequence[str]] = None,
              directions: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """The sweep summary: rows, status counts, campaign accounting and (several objectives) Pareto front.

    Objectives and directions default to those recorded by the Optuna sweeper, if any.
    """
    sweep_dir = Path(sweep_dir).resolve()
    rows = load_rows(sweep_dir)
    study = None
    study_path = sweep_dir / OPTUNA_STUDY_FILE
    if study_path.exists():
        study = json.loads(study_path.read_text())
        by_job = {t.get("job"): t for t in study.get("trials", [])}
        for r in rows:
            t = by_job.get(r["job"])
            if t is not None:
                r["trial"] = t.get("number")
        if not objectives:  # the study's directions belong to the study's objectives only
            objectives = study.get("objectives")
            directions = directions or study.get("directions")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    summary: dict[str, Any] = {
        "schema": SUMMARY_SCHEMA, "sweep_dir": str(sweep_dir), "status_counts": counts,
        "objectives": list(objectives) if objectives else ["accuracy"], "pareto_front": None,
        "campaign": campaign(rows), "rows": rows,
    }
    if objectives:
        directions = list(directions or [OBJECTIVES[o][2] for o in objectives])
        summary["directions"] = directions
        if len(objectives) > 1:
            summary["pareto_front"] = pareto_front(rows, objectives, directions)
    if study is not None:
        summary["study"] = {k: v for k, v in study.items() if k != "trials"}
    return summary


def write_summary(summary: dict[str, Any], sweep_dir: Path) -> tuple[Path, Path]:
    """Write ``sweep_summary.json`` and ``sweep_summary.csv`` at the sweep root; return both paths."""
    from powertrain.results import write_json_atomic

    sweep_dir = Path(sweep_dir)
    json_path, csv_path = sweep_dir / SUMMARY_JSON, sweep_dir / SUMMARY_CSV
    write_json_atomic(json_path, summary)
    tmp = csv_path.with_name("." + csv_path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in summary["rows"]:
            w.writerow({**r, "overrides": " ".join(r["overrides"])})
    tmp.replace(csv_path)
    return json_path, csv_path


def _varying(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    # the table shows what differs between jobs; overrides shared by every job are noise there
    common = set.intersection(*(set(r["overrides"]) for r in rows)) if len(rows) > 1 else set()
    return [[o for o in r["overrides"] if o not in common] for r in rows]


def _cut(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_table(summary: dict[str, Any]) -> str:
    """A plain-text table of the rows plus the campaign lines, for the terminal."""
    rows = summary["rows"]
    if not rows:
        return f"sweep {summary['sweep_dir']}: no jobs found"
    header = ("job", "status", "accuracy", "energy_J", "carbon_g", "E_to_target_J", "overrides")
    lines = [header]
    for r, ov in zip(rows, _varying(rows)):
        lines.append((r["job"] if r["trial"] is None else f"{r['job']} (t{r['trial']})", r["status"],
                      _fmt(None if r["accuracy"] is None else r["accuracy"] * 100, ".2f"),
                      _fmt(r["energy_j"], ".1f"), "-" if r["carbon_g"] is None else num(r["carbon_g"], 4),
                      _fmt(r["energy_to_target_j"], ".1f"), " ".join(ov)))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    c = summary["campaign"]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary["status_counts"].items()))
    out.append(f"jobs: {c['jobs']} ({counts})")
    carbon = "" if c["total_carbon_g"] is None else f", {num(c['total_carbon_g'], 4)} gCO2e"
    lacks = c.get("without_energy") or {}
    gap = ("" if not lacks else f" (lacks the energy of {sum(lacks.values())} of {c['jobs']} jobs: "
           + ", ".join(f"{n} {why}" for why, n in sorted(lacks.items())) + ")")
    out.append(f"campaign: {c['total_energy_j']:.1f} J = {c['total_energy_j'] / 3600:.4f} Wh{carbon}, "
               f"{c['total_wall_s']:.1f} s of job time{gap}")
    broken = [r for r in rows if r["status"] in BROKEN]
    if broken:
        out.append(f"jobs that gave no result: {len(broken)}: " + "; ".join(
            f"job {r['job']} {r['status']}" + (f" ({_cut(r['error'])})" if r.get("error") else "")
            for r in broken[:10]) + (f"; and {len(broken) - 10} more" if len(broken) > 10 else ""))
    if c["rounds_to_best"] is not None:
        out.append(f"best accuracy {c['best_accuracy'] * 100:.2f}% (job {c['best_job']}); within "
                   f"{(1 - BEST_SHARE) * 100:.0f}% of it after {c['rounds_to_best']} jobs, "
                   f"{c['energy_to_best_j']:.1f} J")
    study = summary.get("study")
    if study and study.get("n_trials_in_study", 0) > study.get("n_trials_this_sweep", 0):
        out.append(f"optuna study {study['study_name']!r}: {study['n_trials_in_study']} trials over all its "
                   f"sweeps, {study['study_energy_j']:.1f} J")
    if summary.get("pareto_front"):
        objs = summary["objectives"]
        out.append(f"pareto front ({', '.join(f'{o} {d}' for o, d in zip(objs, summary['directions']))}):")
        for p in summary["pareto_front"]:
            vals = ", ".join(f"{o}={_fmt(p[o], '.4g')}" for o in objs)
            out.append(f"  job {p['job']}: {vals}")
    return "\n".join(out)


def sweep_ended(summary_path: Path) -> bool:
    """Whether the sweep_summary.json at ``summary_path`` says its sweep has ended (older files: yes)."""
    try:
        return bool(json.loads(Path(summary_path).read_text()).get("ended", True))
    except (OSError, ValueError, AttributeError):
        return False


def report(sweep_dir: Path, objectives: Optional[Sequence[str]] = None,
           directions: Optional[Sequence[str]] = None, write: bool = True,
           ended: Optional[bool] = None) -> dict[str, Any]:
    """Summarize a sweep directory, write the summary files (unless ``write=False``), return it.

    ``ended=True`` (the end-of-multirun callback) marks the sweep as over, so a job without a result.json
    is ``missing`` rather than ``pending`` in ``load_sweep``; ``None`` keeps what an earlier summary said,
    so re-reporting a half-finished sweep by hand does not turn its queued jobs into missing ones.
    """
    summary = summarize(sweep_dir, objectives, directions)
    path = Path(sweep_dir) / SUMMARY_JSON
    summary["ended"] = ended if ended is not None else (path.exists() and sweep_ended(path))
    if write:
        write_summary(summary, sweep_dir)
    return summary


__all__ = ["OBJECTIVES", "PLAN_FILE", "SUMMARY_JSON", "SUMMARY_CSV", "campaign", "format_table", "job_dirs",
           "load_rows", "objective_value", "pareto_front", "report", "row_from_job", "summarize",
           "sweep_ended", "sweep_over", "write_summary"]
