"""The report's "Predicted vs actual" section, when a ``predict=true`` run left predict.json in the directory.

Jobs are matched by their overrides (``predict``, ``verbose`` and other bookkeeping aside), so the comparison holds whatever the job
numbers; a predicted job that has not run yet, and a run nobody predicted, are shown as such.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from powertrain.report.sections import Section, Table

PREDICT_JSON = "predict.json"  # powertrain.launch.predict.PREDICT_JSON (not imported: predict pulls in torch)


# overrides that change neither what trains nor what it costs: not part of a job's identity here
IGNORED = ("predict", "verbose", "save_checkpoint", "tracking", "hydra")


def _key(overrides: Any) -> tuple[str, ...]:
    return tuple(sorted(str(o) for o in overrides or ()
                        if str(o).lstrip("+~").split("=", 1)[0].split(".", 1)[0] not in IGNORED))


def _err(pred: Optional[float], actual: Optional[float]) -> Optional[float]:
    if pred is None or actual is None or actual != actual or actual <= 0:
        return None
    return (pred - actual) / actual * 100


def compare(record: dict[str, Any], actual: list[dict[str, Any]]) -> dict[str, Any]:
    """Predicted vs actual per job and in total.

    Args:
        record: predict.json as a dict.
        actual: one dict per run with ``overrides``, ``energy_j``, ``wall_s`` and ``status``.

    Returns:
        ``{"jobs": [...], "total": {...}}``; errors in % of the actual value; the total compares the jobs
        that both were predicted and ran to their end as predicted (not pruned, failed or stopped early).
    """
    by_key = {_key(a["overrides"]): a for a in actual}
    jobs, pred_sum, act_sum = [], 0.0, 0.0
    for p in record.get("jobs", []):
        a = by_key.get(_key(p.get("overrides")))
        e_act = None if a is None else a.get("energy_j")
        row = {"job": p.get("job"), "overrides": p.get("overrides"), "status": None if a is None else a["status"],
               "predicted_j": p.get("energy_j"), "uncertainty_j": p.get("uncertainty_j"), "actual_j": e_act,
               "energy_error_pct": _err(p.get("energy_j"), e_act), "predicted_wall_s": p.get("wall_s"),
               "actual_wall_s": None if a is None else a.get("wall_s"),
               "wall_error_pct": _err(p.get("wall_s"), None if a is None else a.get("wall_s"))}
        jobs.append(row)
        if e_act is not None and row["status"] in ("completed", "budget_exhausted"):
            pred_sum += p["energy_j"]
            act_sum += e_act
    return {"jobs": jobs, "total": {"predicted_j": pred_sum, "actual_j": act_sum,
                                    "energy_error_pct": _err(pred_sum, act_sum),
                                    "predicted_all_j": (record.get("total") or {}).get("energy_j")}}


def predicted_sections(root: Path, df: Any) -> list[Section]:
    """One section comparing predict.json with the runs of ``df`` (none without predict.json)."""
    path = Path(root) / PREDICT_JSON
    if not path.is_file():
        return []
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return [Section("Predicted vs actual", f"predict.json is unreadable ({e}).")]
    actual = [{"overrides": r["overrides"], "energy_j": r["total_j"], "wall_s": r["wall_s"], "status": r["status"]}
              for _, r in df.iterrows()]
    c = compare(record, actual)
    rows = [[j["job"], " ".join(j["overrides"] or []), j["status"] or "not run", j["predicted_j"], j["uncertainty_j"],
             j["actual_j"], j["energy_error_pct"], j["predicted_wall_s"], j["actual_wall_s"], j["wall_error_pct"]]
            for j in c["jobs"]]
    t = c["total"]
    rows.append(["total", "jobs that ran to their end", "", t["predicted_j"], None, t["actual_j"],
                 t["energy_error_pct"], None, None, None])
    text = (f"Predicted before the sweep ran ({record.get('method', '')}); model error stated as "
            f"{(record.get('model_error_share') or 0) * 100:.0f} %. Energy is total_j (training + evaluation; "
            "setup apart). A target, budget or pruner may stop a run before the epochs the prediction assumed.")
    return [Section("Predicted vs actual", text, [Table(
        ["job", "overrides", "status", "predicted (J)", "± (J)", "actual (J)", "error (%)", "predicted wall (s)",
         "actual wall (s)", "wall error (%)"], rows, "Per job and in total; error = (predicted - actual) / actual.")])]
