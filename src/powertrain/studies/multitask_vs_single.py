"""Knowledge sharing (Geißler et al. 2024): one shared backbone for several tasks vs one model per task.

Parts: ``multitask`` (``study.tasks`` with one shared backbone, until every task reaches its target), then
``single_<task>`` (one scratch model per task, to the same target). The summary reports the energy saved
(or lost) by sharing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from powertrain.config import RunConfig, StudyConfig
from powertrain.config.checks import Check, each, fraction_open_closed, one_of
from powertrain.config.errors import ConfigError
from powertrain.studies._common import finish, fmt_j, fmt_pct, joules, override_value, part_row, pct

if TYPE_CHECKING:
    from powertrain.studies import StudyContext

NAME = "multitask_vs_single"


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


def run(ctx: StudyContext) -> dict[str, Any]:
    """The multitask run and one single-task run per task, each to the same targets; the energy saved."""
    cfg, s = ctx.cfg, ctx.cfg.study
    by_task = dict(zip(s.tasks, targets(cfg)))
    summary: dict[str, Any] = {"status": "failed", "runs": {}}
    r_mt = ctx.single("multitask", ["paradigm=multitask", f"paradigm.tasks={override_value(list(s.tasks))}",
                                    f"paradigm.task_targets={override_value(list(by_task.values()))}",
                                    f"paradigm.mixing={s.mixing}"])
    summary["runs"]["multitask"] = part_row(r_mt, "multitask " + "+".join(s.tasks))
    mt_tasks = r_mt["metrics"].get("tasks") or {}
    singles: dict[str, dict[str, Any]] = {}
    for name, target in by_task.items():
        singles[name] = ctx.single(f"single_{name}", ["paradigm=scratch", f"dataset={name}",
                                                      f"target_accuracy={target}"])
        summary["runs"][f"single_{name}"] = part_row(singles[name], f"single-task {name}")

    e_mt = r_mt["metrics"]["energy_to_target_j"]
    e_single = [r["metrics"]["energy_to_target_j"] for r in singles.values()]
    lines = [f"multitask_vs_single: {cfg.model.family}, tasks {', '.join(s.tasks)} ({s.mixing}), "
             f"targets {', '.join(f'{n} {t}' for n, t in by_task.items())}"]
    per_task = {}
    for name in s.tasks:
        sm, m = singles[name]["metrics"], mt_tasks.get(name) or {}
        per_task[name] = {"target": by_task[name],
                          "multitask_accuracy": m.get("accuracy"), "multitask_energy_to_target_j": m.get("energy_to_target_j"),
                          "single_accuracy": sm["final_accuracy"], "single_energy_to_target_j": sm["energy_to_target_j"]}
        lines.append(f"  {name:<16} single: acc {pct(singles[name])}, {joules(sm['energy_to_target_j'])} to target | "
                     f"multitask: acc {fmt_pct(m.get('accuracy'))}, target hit at {joules(m.get('energy_to_target_j'))}")
    summary.update(targets=by_task, tasks=per_task, energy_multitask_j=e_mt,
                   energy_single_sum_j=None, energy_saved_j=None, energy_saved_fraction=None)
    lines.append(f"  multitask, every task at its target: {joules(e_mt)}")
    if e_mt is None or any(e is None for e in e_single):
        missing = (["multitask"] if e_mt is None else []) + [n for n, e in zip(s.tasks, e_single) if e is None]
        summary["comparison"] = f"not comparable: {', '.join(missing)} did not reach the target(s)"
        lines.append(f"  {summary['comparison']} (raise max_epochs or lower the targets)")
        return finish(summary, lines, cfg.verbose)
    total = sum(e_single)  # type: ignore[arg-type]
    saved = total - e_mt
    summary.update(status="completed", energy_single_sum_j=total, energy_saved_j=saved,
                   energy_saved_fraction=saved / total if total else None)
    summary["comparison"] = (f"multitask {'saves' if saved >= 0 else 'costs'} {fmt_j(abs(saved))} J "
                             f"({abs(saved) / total * 100:.0f} % of the single-task runs' {fmt_j(total)} J)")
    lines.append(f"  single-task runs together:           {joules(total)}")
    lines.append(f"  {summary['comparison']}")
    return finish(summary, lines, cfg.verbose)


def analyze(df: Any, study: dict[str, Any]) -> list:
    """No extra report sections yet: the summary's lines say it all."""
    return []
