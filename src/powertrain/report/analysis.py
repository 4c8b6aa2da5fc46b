"""What a report concludes from a ``load_sweep`` frame: Pareto front, worst/best ratio, per-factor effects,
search curves, campaign totals, carbon and provenance. Plain pandas; each function returns numbers or
``Table``s, never figures."""

from __future__ import annotations

from typing import Any, Optional

from powertrain.report.load import factor_name, factors
from powertrain.report.sections import Table
from powertrain.report.summary import BEST_SHARE
from powertrain.results import USABLE

MAX_LEVELS = 12  # a factor with more distinct values is continuous (a search), not a grid axis


def _parts(df: Any) -> list[tuple[str, Any]]:
    """(part, its rows) in order of first appearance; one ("", df) for a plain sweep."""
    return [(str(p), df[df["part"] == p]) for p in dict.fromkeys(df["part"])]


def label(row: Any, keys: list[str], by_part: bool = True) -> str:
    """A short label of a run: its part and its factor values as overrides (``optimizer=sgd
    optimizer.lr=0.1``), else its job. ``by_part=False`` where every run shares one part (a study's one
    grid): the part tells them nothing."""
    bits = [f"{factor_name(k)}={row[k]}" for k in keys if k in row.index and row[k] is not None]
    text = " ".join(bits)
    part = row["part"] if by_part else None
    if part and (not text or len(text) > 24):  # a study part is named for what it changes: shorter
        return str(part)
    if not text or len(text) > 40:  # many factors (runs of different presets): the job path says it shorter
        return str(row["job"])
    return f"{part}: {text}" if part else text


def run_labels(df: Any, keys: list[str]) -> list[str]:
    """``label`` of each row of ``df``, naming parts only where the runs belong to several."""
    by_part = df["part"].nunique(dropna=True) > 1
    return [label(r, keys, by_part) for _, r in df.iterrows()]


def pareto_mask(df: Any) -> Any:
    """Boolean Series: runs with a usable status on the accuracy-max / energy-min Pareto front."""
    ok = df["status"].isin(USABLE) & df["final_accuracy"].notna() & df["total_j"].notna()
    mask = ok.copy()
    pts = df.loc[ok, ["final_accuracy", "total_j"]]
    for i, (a, e) in pts.iterrows():
        mask[i] = not ((pts["final_accuracy"] >= a) & (pts["total_j"] <= e)
                       & ((pts["final_accuracy"] > a) | (pts["total_j"] < e))).any()
    return mask


def cells(df: Any) -> Any:
    """One row per grid cell (part + swept factors, seeds pooled): median energy/time-to-target over the
    seeds that reached the target, their spread, and how many runs reached it."""
    import pandas as pd

    keys = ["part", *factors(df)]
    out = []
    df = _with_result(df)  # a pending or missing run has no config, so no cell: it is listed under Runs
    df = _groupable(df, keys)
    for key, g in df.groupby(keys, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        hit = g[g["energy_to_target_j"].notna()]
        out.append({**dict(zip(keys, key)), "runs": len(g), "reached": len(hit),
                    "energy_runs": [float(v) for v in hit["energy_to_target_j"]],
                    "energy_to_target_j": hit["energy_to_target_j"].median() if len(hit) else None,
                    "energy_min_j": hit["energy_to_target_j"].min() if len(hit) else None,
                    "energy_max_j": hit["energy_to_target_j"].max() if len(hit) else None,
                    "time_to_target_s": hit["time_to_target_s"].median() if len(hit) else None,
                    "final_accuracy": g["final_accuracy"].median(),
                    "statuses": ", ".join(sorted(set(g["status"])))})
    return pd.DataFrame(out, columns=[*keys, "runs", "reached", "energy_runs", "energy_to_target_j", "energy_min_j",
                                      "energy_max_j", "time_to_target_s", "final_accuracy", "statuses"])


def _groupable(df: Any, keys: list[str]) -> Any:
    # a sequence-valued factor (e.g. dataset.classes) as its override text: pandas cannot sort tuples
    # mixed with missing values when it groups
    return df.assign(**{k: df[k].map(lambda v: "[" + ",".join(map(str, v)) + "]" if isinstance(v, (list, tuple))
                                     else v)
                        for k in keys if df[k].map(lambda v: isinstance(v, (list, tuple))).any()})


def _with_result(df: Any) -> Any:
    return df[df["result"].map(lambda r: isinstance(r, dict))]


def worst_best(df: Any) -> list[dict[str, Any]]:
    """Per part: the best and worst cell among those that reached the target (median over seeds) and
    their energy ratio, with its 95 % interval, Kruskal–Wallis p across the cells and a verdict
    (``ratio_effect``, see ``stats.worst_best_ratio``); plus the cells that never reached it."""
    from powertrain.report import stats

    out = []
    keys = factors(df)
    c = cells(df)
    for part, g in _parts(c):
        hit = g[g["energy_to_target_j"].notna()].sort_values("energy_to_target_j")
        missed = g[g["energy_to_target_j"].isna()]
        item: dict[str, Any] = {"part": part, "cells": len(g), "reached": len(hit),
                                "not_reached": [_cell_name(r, keys) for _, r in missed.iterrows()]}
        if len(hit):
            best, worst = hit.iloc[0], hit.iloc[-1]
            item.update(best=_cell_name(best, keys), worst=_cell_name(worst, keys),
                        best_j=float(best["energy_to_target_j"]), worst_j=float(worst["energy_to_target_j"]),
                        best_s=best["time_to_target_s"], worst_s=worst["time_to_target_s"],
                        ratio=float(worst["energy_to_target_j"] / best["energy_to_target_j"])
                        if best["energy_to_target_j"] > 0 else None)
            eff = stats.worst_best_ratio(list(hit["energy_runs"]))
            eff["verdict"] = stats.verdict("worst/best energy to target", eff, fmt=_times,
                                           what="a ratio of this size", floor_of="the runs of one cell")
            item.update(ratio_ci=eff["ci"], ratio_p=eff["p"], ratio_effect=eff, noise_floor=eff["noise_floor"])
        out.append(item)
    return out


def _times(v: Optional[float]) -> str:
    return "n/a" if v is None else "never" if v == float("inf") else f"{v:.2f}x"


def _cell_name(row: Any, keys: list[str]) -> str:
    return " ".join(f"{factor_name(k)}={row[k]}" for k in keys) or "(one cell)"


def worst_best_table(df: Any) -> Table:
    """The worst/best ratio table (one row per part)."""
    rows = []
    for w in worst_best(df):
        ci = w.get("ratio_ci")
        rows.append([w["part"] or "-", w.get("best", "-"), w.get("best_j"), w.get("best_s"),
                     w.get("worst", "-"), w.get("worst_j"), w.get("worst_s"),
                     None if w.get("ratio") is None else f"{w['ratio']:.2f}x",
                     "-" if not ci else f"{_times(ci[0])} to {_times(ci[1])}", w.get("ratio_p"),
                     f"{w['reached']}/{w['cells']}", "; ".join(w["not_reached"]) or "none"])
    seeds = df["seed"].nunique() > 1 or ("repeat" in df and df["repeat"].nunique() > 1)
    return Table(["part", "best cell", "best E->target (J)", "best t->target (s)", "worst cell",
                  "worst E->target (J)", "worst t->target (s)", "worst/best", "95 % interval",
                  "p (Kruskal-Wallis, cells)", "cells reached", "cells that never reached the target"], rows,
                 "Energy to reach the target accuracy: the worst cell that reached it against the best"
                 + (" (median over seeds and repeats per cell; interval: bootstrap, worst and best picked "
                    "again in each resample; p: Kruskal-Wallis test that all cells cost the same)." if seeds else "."))


def factor_effects(df: Any) -> Optional[Table]:
    """For each swept key of a grid: min/median/max energy-to-target and accuracy across the other
    factors (and seeds), per level. None when there is no grid factor (a search or a single run)."""
    keys = [k for k in factors(df) if 1 < df[k].astype(str).nunique() <= MAX_LEVELS]
    if not keys:
        return None
    # without a target (yarally_layers: a fixed number of epochs) the energy spent is what compares
    targeted = bool(df["target_accuracy"].notna().any())
    rows = []
    for k in keys:
        for level, g in _with_result(df).groupby(k, dropna=False, sort=True):
            e = g["energy_to_target_j" if targeted else "total_j"].dropna()
            a = g["final_accuracy"].dropna() * 100
            reached = [int(g["energy_to_target_j"].notna().sum())] if targeted else []
            rows.append([factor_name(k), level, len(g), *reached,
                         *(_stats(e) if len(e) else [None] * 3), *(_stats(a) if len(a) else [None] * 3)])
    energy = ["reached target", "E->target min (J)", "E->target median (J)", "E->target max (J)"] if targeted \
        else ["energy min (J)", "energy median (J)", "energy max (J)"]
    return Table(["factor", "level", "runs", *energy, "accuracy min (%)", "accuracy median (%)",
                  "accuracy max (%)"], rows,
                 "Per-factor effects: each level of one factor across every value of the others"
                 + ("." if targeted else " (no target accuracy: total energy per run)."))


def noise_section(df: Any) -> Optional[tuple[str, Table]]:
    """The run-to-run spread of repeated settings and, per swept factor, whether its effect stands out of
    it: (text, table of the settings that ran 2+ times), or None when no setting ran twice.

    A setting is a part with its factor values; its seeds and repeats are its runs. The noise floor is the
    median coefficient of variation over those settings; per factor, a Kruskal–Wallis test across its levels
    (the other factors pooled) says whether the runs of its levels differ more than noise would.
    """
    from powertrain.report import stats

    keys = factors(df)
    d = _groupable(_with_result(df), keys)
    if d.empty:
        return None
    targeted = bool(d["target_accuracy"].notna().any())
    col = "energy_to_target_j" if targeted else "total_j"
    rows, floors = [], []
    for part, g in _parts(d):
        for _, c in (g.groupby(keys, dropna=False, sort=True) if keys else [((), g)]):
            vals = [float(v) for v in c[col].dropna()]
            if len(vals) < 2:
                continue
            m, cv = stats.median_ci(vals), stats.noise_floor(vals)
            floors += [] if cv is None else [cv]
            name = _cell_name(c.iloc[0], keys) if keys else "(one setting)"
            rows.append([part or "-", name, len(c), len(vals), m["median"],
                         f"{m['ci'][0]:.4g} to {m['ci'][1]:.4g}", None if cv is None else cv * 100])
    if not rows:
        return None
    floor = stats.median(floors)
    seeds = d["seed"].nunique() > 1
    what = "energy to target" if targeted else "energy"
    # no setting with a spread to measure (e.g. every repeat metered 0 J): no floor to state, the table stays
    lines = [] if floor is None else [
        f"Run-to-run spread: repeated runs of one setting differ in {what} by ±{floor * 100:.1f} % (median "
        f"coefficient of variation over {len(rows)} settings with 2+ runs"
        + ("; seeds vary between them, so this includes the seed's effect)." if seeds else
           "; identical runs).") + " A difference smaller than that is inside the noise."]
    for k in [k for k in keys if 1 < d[k].astype(str).nunique() <= MAX_LEVELS]:
        groups = [[float(v) for v in g[col].dropna()] for _, g in d.groupby(k, dropna=False, sort=True)]
        p = stats.kruskal_p(groups)
        if p is not None:
            lines.append(f"{k}: Kruskal-Wallis p={p:.2g} across its levels (others pooled): "
                         + ("distinguishable from noise." if p < stats.ALPHA else "not distinguishable from noise."))
    return "\n".join(lines), Table(["part", "setting", "runs", f"runs with {what}", f"median {what} (J)",
                                    "95 % interval (J)", "spread (CV %)"], rows,
                                   "Settings that ran more than once: median of their runs, 95 % bootstrap "
                                   "interval and coefficient of variation.")


def _stats(s: Any) -> list[float]:
    return [float(s.min()), float(s.median()), float(s.max())]


def search_curves(df: Any) -> dict[str, Any]:
    """Per Optuna search (a part whose jobs are trials): trials in order with best-so-far accuracy and
    cumulative energy (failed and pruned trials cost energy too)."""
    out = {}
    for part, g in _parts(df[df["trial"].notna()]):
        g = g.sort_values("trial")
        acc = g["final_accuracy"].where(g["status"].isin(USABLE))
        out[part or "search"] = {"round": list(range(1, len(g) + 1)), "best": list(acc.cummax()),
                                 "energy_j": list(g["total_j"].fillna(0).cumsum())}
    return out


def campaign_table(df: Any) -> Table:
    """Campaign totals per part and overall: runs by status, energy, carbon, time, rounds-to-best."""
    rows = []
    parts = _parts(df)
    for part, g in parts + ([("all", df)] if len(parts) > 1 else []):
        order = g.sort_values("trial") if g["trial"].notna().all() and len(g) else g
        ok = order[order["status"].isin(USABLE) & order["final_accuracy"].notna()]
        rounds = energy_to_best = best = None
        if len(ok):
            best = ok["final_accuracy"].max()
            spent = order["total_j"].fillna(0).cumsum()
            first = (order["status"].isin(USABLE) & (order["final_accuracy"] >= BEST_SHARE * best)).to_numpy()
            i = int(first.argmax())
            rounds, energy_to_best = i + 1, float(spent.iloc[i])
        e = g["total_j"].sum()
        counts = g["status"].value_counts()
        rows.append([part or "-", len(g), ", ".join(f"{n} {s}" for s, n in counts.items()), float(e), e / 3600,
                     float(g["total_g"].sum()) if g["total_g"].notna().any() else None,
                     float(g["wall_s"].sum()), _measured(g),
                     None if best is None else best * 100, rounds, energy_to_best])
    return Table(["part", "runs", "statuses", "energy (J)", "energy (Wh)", "carbon (gCO2e)", "job time (s)",
                  "measured share", "best accuracy (%)", "rounds to 99% of best", "energy until then (J)"], rows,
                 "Campaign totals: every run counts, failed and pruned ones included (their energy was spent).")


def _measured(g: Any) -> Optional[float]:
    ok = g["total_j"].notna() & g["measured_fraction"].notna()
    total = g.loc[ok, "total_j"].sum()
    return float((g.loc[ok, "total_j"] * g.loc[ok, "measured_fraction"]).sum() / total) if total > 0 else None


def carbon_table(df: Any) -> tuple[Optional[Table], str]:
    """Operational and embodied carbon per part when a region is set; else None and the reason."""
    with_region = df[df["region"].notna()]
    embodied = df["embodied_g"].sum()
    if with_region.empty:
        return None, (f"No carbon.region was set, so operational carbon is not computed; embodied hardware "
                      f"emissions (which do not depend on the grid) add up to {embodied:.4g} gCO2e.")
    rows = []
    for part, g in _parts(with_region):
        rows.append([part or "-", ", ".join(sorted(set(map(str, g["region"])))), len(g),
                     float(g["operational_g"].sum()), float(g["embodied_g"].sum()), float(g["total_g"].sum())])
    return Table(["part", "region", "runs", "operational (gCO2e)", "embodied (gCO2e)", "total (gCO2e)"], rows,
                 "Carbon: grid intensity x PUE x energy (operational) plus the run's share of hardware "
                 "manufacturing (embodied)."), ""


def provenance(df: Any) -> tuple[list[str], Table]:
    """Lines on how the numbers were obtained (measured share, methods, hardware, version) and the table
    of command lines."""
    from powertrain import __version__

    lines = []
    frac = _measured(df)
    if frac is not None and frac == 0:
        lines.append("Every energy and carbon figure in this report is an ESTIMATE: no component was measured "
                     "(no RAPL or NVML counter was readable); see the methods below.")
    elif frac is not None:
        lines.append(f"Measured share of the energy: {frac * 100:.1f} % (the rest is estimated).")
    methods: dict[str, float] = {}
    hardware: set[str] = set()
    versions: set[str] = set()
    for res in df["result"]:
        if not isinstance(res, dict):
            continue
        for c in (res.get("energy") or {}).get("components") or []:
            key = f"{c.get('name')}: {c.get('method')} ({'measured' if c.get('measured') else 'estimated'})"
            methods[key] = methods.get(key, 0.0) + float(c.get("energy_j") or 0.0)
        hw = res.get("hardware") or {}
        gpus = ", ".join(map(str, hw.get("gpus") or [])) or "no GPU"
        hardware.add(f"{hw.get('device')} / CPU {hw.get('cpu_model')} x{hw.get('cpu_count')} / {gpus} / "
                     f"profile {hw.get('profile')}")
        v = (res.get("run") or {}).get("powertrain_version") or res.get("powertrain_version")
        if v:
            versions.add(str(v))
    lines.append("Methods: " + ("; ".join(f"{k} {j:.1f} J" for k, j in methods.items()) or "none recorded"))
    lines.append("Hardware: " + (" | ".join(sorted(hardware)) or "not recorded"))
    lines.append(f"powertrain {__version__} wrote this report" +
                 (f"; runs by powertrain {', '.join(sorted(versions))}" if versions else ""))
    cmd_rows = [[r["job"], r["status"], "powertrain " + " ".join(r["overrides"] or ())] for _, r in df.iterrows()]
    return lines, Table(["job", "status", "command line"], cmd_rows, "Command lines (run.overrides).")


def runs_table(df: Any) -> Table:
    """Every run with its status (none dropped), its factors and its headline numbers."""
    keys = factors(df, include_seed=True)
    rows = []
    for _, r in df.iterrows():
        rows.append([r["job"], r["status"], *(r[k] for k in keys),
                     None if r["final_accuracy"] != r["final_accuracy"] else r["final_accuracy"] * 100,
                     r["total_j"], r["energy_to_target_j"], r["time_to_target_s"], r["wall_s"], r["error"] or ""])
    return Table(["job", "status", *map(factor_name, keys), "accuracy (%)", "energy (J)", "E->target (J)", "t->target (s)",
                  "wall (s)", "error"], rows, "Every run under the directory, whatever its status.")
