"""Knowledge sharing (Geißler et al. 2024): one shared backbone for several tasks vs one model per task.

One sweep, ``runs/``: the variant ``multitask`` (``study.tasks`` with one shared backbone, until every task
reaches its target) and ``single_<task>`` (one scratch model per task, to the same target), interleaved
round by round, ``study.repeats`` times each (smoke 4, paper 10). The seed stays fixed (identical runs):
the preset's targets sit near what the shared model reaches at all (digits peaks at 92-93 %), so another
seed may miss one and leave a repeat without an answer; the spread is then the machine's run-to-run noise.
The summary reports the energy saved (or lost) by sharing: the single-task runs' medians summed against
the multitask median, with a 95 % bootstrap interval of the saved fraction and the Mann–Whitney p that the
multitask runs cost what each repeat's single-task runs cost together; the single-task side counts only the
repeats (by recorded repeat index) in which every single-task run reached its target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from powertrain.config import RunConfig, StudyConfig
from powertrain.config.checks import Check, each, fraction_open_closed, one_of
from powertrain.config.errors import ConfigError
from powertrain.studies._common import (
    finish,
    fmt_j,
    fmt_pct,
    joules,
    ordered_variants,
    override_value,
    part_row,
    repeats,
    variant_results,
)

if TYPE_CHECKING:
    from powertrain.studies import StudyContext

NAME = "multitask_vs_single"
SMOKE_REPEATS = 4  # the smallest n at which Mann–Whitney U can reach p < 0.05 (p=0.029); the multitask run is slow
PAPER_REPEATS = 10


@dataclass
class Config(StudyConfig):
    tasks: list[str] = field(default_factory=lambda: ["digits", "synthetic"])  # dataset presets
    task_targets: list[float] = field(default_factory=list)  # one per task; [] = target_accuracy for each
    mixing: str = "round_robin"  # paradigm.mixing of the multitask part


CHECKS: dict[str, Check] = {"study.mixing": one_of(("round_robin", "proportional")),
                            "study.task_targets": each(fraction_open_closed)}


def targets(cfg: RunConfig) -> list[float]:
    return list(cfg.study.task_targets) or [cfg.target_accuracy] * len(cfg.study.tasks)


def check(cfg: RunConfig) -> None:
    """Two or more known presets, and one target per task: both sides are compared at the same accuracies."""
    from powertrain.data import dataset_preset

    s = cfg.study
    if len(s.tasks) < 2:
        raise ConfigError("study.tasks", list(s.tasks), "two or more dataset presets")
    for name in s.tasks:
        dataset_preset(name, "study.tasks")
    t = targets(cfg)
    if len(t) != len(s.tasks) or any(x is None for x in t):
        raise ConfigError("study.task_targets", list(s.task_targets), "one target per task (or target_accuracy): "
                          "multitask and single-task runs are compared at the same accuracies")


def saving_stats(e_mt: list[float], singles: list[list[float]]) -> dict[str, Any]:
    """The saved fraction (Σ median single − median multitask) / Σ median single, its 95 % interval, and
    the Mann–Whitney p of the multitask runs against each repeat's summed single-task runs (pure).

    ``singles[t][i]`` is task t's run of the i-th complete repeat. The point (the summary's
    ``energy_single_sum_j``, ``energy_saved_j``, ``energy_saved_fraction``) comes from these same samples,
    so the printed number, its interval and its verdict always describe the same runs.
    """
    import numpy as np

    from powertrain.report import stats

    def saved(mt: Any, *single: Any) -> float:
        total = sum(float(np.median(x)) for x in single)
        return (total - float(np.median(mt))) / total

    sums = [sum(x) for x in zip(*singles)]  # repeat r's single-task runs together
    m_mt, total = stats.median(e_mt), sum(stats.median(x) or 0.0 for x in singles)
    point = None if m_mt is None or not total else (total - m_mt) / total
    floor = stats.noise_floor(sums)
    eff = stats.effect(point, stats.bootstrap_ci([e_mt, *singles], saved) if point is not None else None,
                       [len(e_mt), len(sums)], stats.mann_whitney_p(e_mt, sums), "Mann-Whitney U, two-sided, of "
                       "the multitask runs against the summed single-task runs", floor=floor,
                       needed=stats.repeats_needed(point, stats.log_sd(e_mt, sums)))
    eff["verdict"] = stats.verdict("energy saved by sharing", eff, floor_of="the summed single-task runs")
    return {"energy_single_sum_j": total, "energy_saved_j": None if m_mt is None else total - m_mt,
            "energy_saved_fraction": point, "saved_effect": eff, "energy_saved_fraction_ci": eff["ci"],
            "noise_floor": floor}


def reached_by_repeat(rs: list[dict[str, Any]]) -> dict[int, float]:
    """Energy to target by the repeat index each run recorded (``repeat=r``), of the runs that reached it.

    Not by place in the list: ``variant_results`` leaves out a job without a readable result.json, which
    would shift every later run of that variant onto another repeat's runs.
    """
    out: dict[int, float] = {}
    for r in rs:
        e = r["metrics"]["energy_to_target_j"]
        if e is not None:
            out[int((r.get("config") or {}).get("repeat", 0))] = e
    return out


def run(ctx: StudyContext) -> dict[str, Any]:
    """The multitask run and one single-task run per task, each to the same targets, interleaved and
    repeated; the energy saved."""
    from powertrain.report.stats import median

    cfg, s = ctx.cfg, ctx.cfg.study
    by_task = dict(zip(s.tasks, targets(cfg)))
    n = repeats(cfg, SMOKE_REPEATS, PAPER_REPEATS)
    seeds = [int(cfg.seed)] * n  # identical runs (see the module doc)
    summary: dict[str, Any] = {"status": "failed", "runs": {}, "repeats": n, "seeds": seeds[:1], "seeds_vary": False}

    def overrides(name: str, r: int) -> list[str]:
        if name == "multitask":
            return ["paradigm=multitask", f"paradigm.tasks={override_value(list(s.tasks))}",
                    f"paradigm.task_targets={override_value(list(by_task.values()))}", f"paradigm.mixing={s.mixing}"]
        task = name.removeprefix("single_")
        return ["paradigm=scratch", f"dataset={task}", f"target_accuracy={by_task[task]}"]

    names = ["multitask", *(f"single_{t}" for t in s.tasks)]
    by = variant_results(ctx.sweep("runs", [], variants=ordered_variants(names, overrides, n, seeds)))
    r_mt, singles = by.get("multitask", []), {t: by.get(f"single_{t}", []) for t in s.tasks}
    if r_mt:
        summary["runs"]["multitask"] = part_row(r_mt[0], "multitask " + "+".join(s.tasks))
    for name, rs in singles.items():
        if rs:
            summary["runs"][f"single_{name}"] = part_row(rs[0], f"single-task {name}")

    def e(rs: list[dict[str, Any]]) -> list[Optional[float]]:
        return [r["metrics"]["energy_to_target_j"] for r in rs]

    lines = [f"multitask_vs_single: {cfg.model.family}, tasks {', '.join(s.tasks)} ({s.mixing}), "
             f"targets {', '.join(f'{t} {v}' for t, v in by_task.items())}; {n} repeats (seed {seeds[0]} fixed, "
             "interleaved), medians"]
    per_task = {}
    for name in s.tasks:
        mt_task = [(r["metrics"].get("tasks") or {}).get(name) or {} for r in r_mt]
        per_task[name] = {"target": by_task[name],
                          "multitask_accuracy": median([m.get("accuracy") for m in mt_task]),
                          "multitask_energy_to_target_j": median([m.get("energy_to_target_j") for m in mt_task]),
                          "single_accuracy": median([r["metrics"]["final_accuracy"] for r in singles[name]]),
                          "single_energy_to_target_j": median(e(singles[name])),
                          "single_reached": f"{sum(v is not None for v in e(singles[name]))}/{len(singles[name])}"}
        t = per_task[name]
        lines.append(f"  {name:<16} single: acc {fmt_pct(t['single_accuracy'])}, {joules(t['single_energy_to_target_j'])} "
                     f"to target ({t['single_reached']} reached) | multitask: acc {fmt_pct(t['multitask_accuracy'])}, "
                     f"target hit at {joules(t['multitask_energy_to_target_j'])}")
    e_mt = median(e(r_mt))
    summary.update(targets=by_task, tasks=per_task, energy_multitask_j=e_mt, energy_multitask_runs_j=e(r_mt),
                   energy_single_runs_j={t: e(rs) for t, rs in singles.items()},
                   energy_single_sum_j=None, energy_saved_j=None, energy_saved_fraction=None)
    lines.append(f"  multitask, every task at its target: {joules(e_mt)} "
                 f"({sum(v is not None for v in e(r_mt))}/{len(r_mt)} reached)")
    by_rep = {t: reached_by_repeat(rs) for t, rs in singles.items()}
    complete = sorted(set.intersection(*(set(v) for v in by_rep.values())))  # every task reached in that repeat
    if e_mt is None or not complete:
        missing = (["multitask"] if e_mt is None else []) + [t for t, rs in singles.items() if median(e(rs)) is None]
        summary["comparison"] = f"not comparable: {', '.join(missing) or 'no repeat'} did not reach the target(s)"
        lines.append(f"  {summary['comparison']} (raise max_epochs or lower the targets)")
        return finish(summary, lines, cfg.verbose)
    summary.update(status="completed", **saving_stats([v for v in e(r_mt) if v is not None],
                                                      [[by_rep[t][r] for r in complete] for t in s.tasks]))
    total, saved = summary["energy_single_sum_j"], summary["energy_saved_j"]
    share = f"{abs(saved) / total * 100:.0f} %"
    # "costs 3.72 J (101 % of ...)" read as if multitask cost about what the single-task runs did: say "more"
    summary["comparison"] = (f"multitask saves {fmt_j(saved)} J ({share} of the single-task runs' {fmt_j(total)} J)"
                             if saved >= 0 else f"multitask costs {fmt_j(-saved)} J more ({share} more than the "
                             f"single-task runs' {fmt_j(total)} J)")
    lines.append(f"  single-task runs together:           {joules(total)}")
    lines.append(f"  {summary['comparison']}")
    lines.append(f"  {summary['saved_effect']['verdict']}")
    if summary["noise_floor"] is not None:
        lines.append(f"  noise floor: the summed single-task runs differ by ±{summary['noise_floor'] * 100:.0f} % "
                     f"(coefficient of variation, n={len(complete)}; identical runs)")
    return finish(summary, lines, cfg.verbose)


def analyze(df: Any, study: dict[str, Any]) -> list:
    """No extra report sections yet: the summary's lines say it all."""
    return []
