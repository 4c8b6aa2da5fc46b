"""Filling result.json from what a run measured, and the summary printed at its end.

``results.py`` defines the file (schema, statuses, atomic write); this module fills its sections: metrics
from the fit, energy from the ledger (``Ledger.result_section``), carbon from ``carbon.account``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from powertrain.config import RunConfig
from powertrain.config.errors import ConfigError
from powertrain.console import metric_text, num, say
from powertrain.results import RESULT_FILE, now_iso


def fill_result(result: dict[str, Any], cfg: RunConfig, fit_result: Any, ledger: Any, wall_s: float,
                 intensity: Any, profile: Any) -> None:
    result["run"]["finished_at"] = now_iso()
    result["time"]["wall_s"] = wall_s
    if fit_result is not None:
        st = fit_result.state
        m = result["metrics"]
        m.update({
            "final_accuracy": fit_result.final_metrics.get("accuracy"),
            "best_accuracy": st.best_accuracy if st.epoch else None,
            "final_loss": fit_result.final_loss,
            "final_eval_loss": fit_result.final_metrics.get("loss"),
            "epochs": st.epoch, "steps": st.steps,
            "reached_target": st.energy_to_target_j is not None,
            "energy_to_target_j": st.energy_to_target_j,
            "time_to_target_s": st.time_to_target_s,
            "metric": cfg.task.metric,  # what final/best "accuracy" and the target are (task.evaluate's key)
        })
        if "tasks" in fit_result.final_metrics:
            m["tasks"] = fit_result.final_metrics["tasks"]
        result["time"].update({"train_s": st.train_s, "eval_s": st.eval_s})
        result["history"] = [{k: v for k, v in row.items() if k != "epoch_components_j"} for row in st.history]
    if ledger is not None and ledger.phases:
        e = result["energy"]
        e.update(ledger.result_section())
        if e.get("layer_attribution"):
            from powertrain.energy.layers import with_energy

            with_energy(e["layer_attribution"], e.get("train_j"))
        if e["idle_baseline_w"] is not None:
            idle_j = e["idle_baseline_w"] * ((result["time"]["train_s"] or 0) + (result["time"]["eval_s"] or 0))
            e["above_idle_j"] = max(e["total_j"] - idle_j, 0.0)
        upstream = result.get("upstream")
        if upstream:
            e["upstream_j"] = upstream.get("energy_j_amortized")
            # unknown upstream energy (e.g. published weights) must not read as zero
            e["total_with_upstream_j"] = None if e["upstream_j"] is None else e["total_j"] + e["upstream_j"]
    try:
        from powertrain import carbon

        hw = profile or cfg.hardware
        devices = carbon.device_count(result["energy"]["components"], getattr(hw, "kind", "cpu"))
        result["carbon"] = carbon.account(cfg.carbon, intensity, hw, energy_j=result["energy"]["total_j"] or 0.0,
                                          wall_s=wall_s, devices=devices)
        upstream = result.get("upstream")
        if upstream and result["carbon"] is not None:
            c = result["carbon"]
            c["upstream_g"] = upstream.get("carbon_g_amortized")
            c["total_with_upstream_g"] = (None if c.get("total_g") is None or c["upstream_g"] is None
                                          else c["total_g"] + c["upstream_g"])
    except ConfigError:
        result["carbon"] = None
    except Exception as e:  # accounting must not lose the result file
        result["carbon"] = {"error": f"{type(e).__name__}: {e}"}


def print_summary(result: dict[str, Any], run_dir: Path) -> None:
    m, e, c, t = result["metrics"], result["energy"], result.get("carbon") or {}, result["time"]
    name = m.get("metric") or "accuracy"  # task.metric: what "accuracy" is for a step of the user's own
    acc = metric_text(name, m["final_accuracy"]) if m["final_accuracy"] is not None else "n/a"
    lines = [f"status: {result['status']}" + (f" ({result['error']})" if result["error"] else "")]
    lines.append(f"{name}: {acc} (best {metric_text(name, m['best_accuracy'])})" if m["best_accuracy"] is not None
                 else f"{name}: {acc}")
    if e["total_j"] is not None:
        share = e["measured_fraction"]
        share_txt = f"{share * 100:.0f}% measured" if share is not None else "nothing metered"
        setup = f"; setup {num(e['setup_j'])} J not in total" if e.get("setup_j") else ""
        lines.append(f"energy: {num(e['total_j'])} J = {num(e['total_j'] / 3600, 4)} Wh ({share_txt}; "
                     f"train {num(e['train_j'])} J, eval {num(e['eval_j'])} J{setup})")
    layers = e.get("layer_attribution")
    if layers and layers.get("energy_j"):
        parts = sorted(layers["share"].items(), key=lambda kv: -kv[1])
        lines.append("train energy by layer type (attribution by profiled time, not measured): " + ", ".join(
            f"{k} {v * 100:.0f}%" for k, v in parts if v >= 0.005))
    if m["energy_to_target_j"] is not None:
        target = m["target_accuracy"] if m["target_accuracy"] is not None else "(every task's)"
        lines.append(f"energy to target {target}: {num(m['energy_to_target_j'])} J")
    if c.get("total_g") is not None:
        lines.append(f"carbon: {num(c['total_g'], 4)} gCO2e ({c['region']}, {c['intensity_g_per_kwh']:.0f} g/kWh, "
                     f"operational {num(c['operational_g'], 4)} g + embodied {num(c['embodied_g'], 4)} g)")
    lines.append(f"time: {t['wall_s']:.1f} s wall")
    lines.append(f"result: {run_dir / RESULT_FILE}")
    say("\n".join(lines))
