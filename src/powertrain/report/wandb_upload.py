"""The report's figures and tables as one W&B run (job_type ``report``) in the sweep's group, when the runs
tracked to W&B. Offline unless the runs' ``tracking.mode`` (or ``$WANDB_MODE``) says otherwise, like the
per-run tracker; a W&B error is one warning line, never a failed report."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Optional

from powertrain.report.sections import Table


def _tracking(df: Any) -> Optional[tuple[dict[str, Any], Optional[str]]]:
    """(tracking config, sweep id) of the first run that tracked to W&B, or None if none did."""
    for res in df["result"]:
        if not isinstance(res, dict):
            continue
        t = (res.get("config") or {}).get("tracking") or {}
        if t.get("name") == "wandb":
            return t, (res.get("run") or {}).get("sweep_id")
    return None


def _cell(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v if v is None or isinstance(v, (int, float, str, bool)) else str(v)


def _kind(v: Any) -> str:
    return "bool" if isinstance(v, bool) else "number" if isinstance(v, (int, float)) else "text"


def table_data(rows: list[list[Any]]) -> list[list[Any]]:
    """Rows as W&B takes them: one type per column. A column that mixes numbers and names (the
    per-factor table's ``level``: 0.1 beside sgd) becomes text, which W&B would otherwise refuse."""
    data = [[_cell(v) for v in r] for r in rows]
    for j in range(max((len(r) for r in data), default=0)):
        kinds = {_kind(r[j]) for r in data if j < len(r) and r[j] is not None}
        if len(kinds) > 1:
            for r in data:
                if j < len(r) and r[j] is not None:
                    r[j] = str(r[j])
    return data


def study_answers(root: Path) -> dict[str, Any]:
    """A study's answers for the W&B summary: every effect in study.json's summary (a dict with a verdict)
    as ``answers/<path>/<estimate|ci_low|ci_high|n|p|significant|verdict>``, and the noise floor."""
    import json

    from powertrain.results import STUDY_FILE

    try:
        summary = json.loads((Path(root) / STUDY_FILE).read_text()).get("summary") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    out: dict[str, Any] = {}
    if isinstance(summary.get("noise_floor"), (int, float)):
        out["answers/noise_floor"] = summary["noise_floor"]

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict) and "verdict" in node and "estimate" in node:
            ci = node.get("ci") or [None, None]
            for k, v in (("estimate", node["estimate"]), ("ci_low", ci[0]), ("ci_high", ci[1]),
                         ("n", node.get("n")), ("p", node.get("p")), ("significant", node.get("significant")),
                         ("verdict", node["verdict"])):
                out[f"answers/{path}/{k}"] = _cell(v) if not isinstance(v, list) else "/".join(map(str, v))
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else str(k))

    walk(summary, "")
    return out


def upload_if_tracked(df: Any, root: Path, title: str, items: list[tuple[str, Any]]) -> Optional[str]:
    """Log ``items`` ((name, Table) or (name, png path)) to one W&B run; return its directory, or None."""
    found = _tracking(df)
    if found is None:
        return None
    cfg, sweep_id = found
    try:
        import wandb

        from powertrain.tracking.wandb import wandb_mode

        run = wandb.init(project=cfg.get("project") or "powertrain", entity=cfg.get("entity"),
                         group=str(cfg.get("group") or sweep_id or Path(root).resolve().name), job_type="report",
                         name=title, dir=str(root), mode=wandb_mode(cfg.get("mode") or "offline"),
                         config={"report_dir": str(Path(root).resolve()), "runs": len(df)}, reinit="create_new",
                         settings=wandb.Settings(init_timeout=float(cfg.get("init_timeout_s") or 30),
                                                 console="off", silent=True))
        try:
            logged: dict[str, Any] = {}
            for name, item in items:
                key = name.replace("/", "-")
                if isinstance(item, Table):
                    logged[f"tables/{key}"] = wandb.Table(columns=[str(c) for c in item.columns],
                                                          data=table_data(item.rows))
                else:
                    logged[f"figures/{key}"] = wandb.Image(str(item))
            run.log(logged)
            run.summary.update({"runs": len(df), "energy_total_j": float(df["total_j"].sum()),
                                **study_answers(Path(root))})
        finally:
            run.finish()
        return str(Path(root) / "wandb")
    except Exception as e:  # the report files are written; a W&B problem must not take them away
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""  # W&B's messages run to many lines
        print(f"powertrain report: W&B upload skipped ({type(e).__name__}: {first})", file=sys.stderr)
        return None
