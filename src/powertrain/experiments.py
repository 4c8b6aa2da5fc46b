"""Experiments that need several runs: the paradigm comparisons of Geißler et al. (2024).

One ``python -m powertrain`` job is one run, so a comparison is a small driver that calls
``powertrain.run.run`` in-process for each part, into subdirectories of one experiment directory, and
writes ``experiment.json`` there (each part keeps its own result.json, so sweep reports see them too):

- ``pretrain_finetune``: pretrain on ``paradigm.pretrain_dataset`` (fixed ``max_epochs``), fine-tune that
  run's weights on ``dataset`` to ``target_accuracy``, and train the same model on ``dataset`` from
  scratch to the same target. Reports the break-even n* = ceil(E_pre / (E_scratch − E_ft)).
- ``multitask_vs_single``: the multitask run, then one single-task run per task to the same targets.
  Reports the energy saved (or lost) by sharing.

Start one with ``python -m powertrain experiment=NAME [overrides]`` (the preset in conf/experiment
selects the driver; sweeps work as usual) or ``python -m powertrain.experiments NAME [overrides]``.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from powertrain.config import ConfigError, ParadigmConfig, RunConfig

SCHEMA = "powertrain.experiment/1"
SUCCESS = ("completed", "target_reached")


def break_even(e_pre_j: float, e_ft_j: float, e_scratch_j: float) -> Optional[int]:
    """Fine-tunings after which pretraining once + n fine-tunings cost less than n scratch trainings.

    E_pre + n·E_ft < n·E_scratch  ⇔  n > E_pre / (E_scratch − E_ft); None ("never") when E_ft ≥ E_scratch.
    """
    saving_j = e_scratch_j - e_ft_j
    if saving_j <= 0:
        return None
    return max(1, math.ceil(e_pre_j / saving_j))


def _part(result: dict[str, Any], label: str) -> dict[str, Any]:
    m, e = result["metrics"], result["energy"]
    return {"label": label, "dir": result["run"]["dir"], "status": result["status"], "error": result.get("error"),
            "final_accuracy": m["final_accuracy"], "epochs": m["epochs"], "reached_target": m["reached_target"],
            "energy_j": e["total_j"], "energy_to_target_j": m["energy_to_target_j"],
            "carbon_g": (result.get("carbon") or {}).get("total_g")}


def _run(cfg: RunConfig, out_dir: Path, part: str, overrides: list[str], exp_id: str,
         changes: dict[str, Any], dataset_key: str = "paradigm.tasks") -> dict[str, Any]:
    """Run ``part``: ``cfg`` with ``changes``, each written as its command-line override would be.

    ``paradigm=NAME`` / ``dataset=NAME`` select a preset (an unknown dataset preset is a ConfigError on
    ``dataset_key``), ``paradigm.KEY`` sets one paradigm value, any other key a top-level value.
    """
    from powertrain.data import dataset_preset
    from powertrain.run import run

    part_cfg = copy.deepcopy(cfg)
    for key, value in changes.items():
        if key == "paradigm":
            part_cfg.paradigm = ParadigmConfig(name=value)
        elif key == "dataset":
            part_cfg.dataset = dataset_preset(value, dataset_key)
        elif key.startswith("paradigm."):
            setattr(part_cfg.paradigm, key.split(".", 1)[1], value)
        else:
            setattr(part_cfg, key, value)
    changed = [f"{k}={_override_value(v)}" for k, v in changes.items()]
    if cfg.verbose:
        print(f"\n=== {exp_id}: {part} ({' '.join(changed) or 'as configured'}) ===", flush=True)
    # the driver's own changes are listed after the user's overrides, as if given on the command line
    return run(part_cfg, out_dir / part, overrides + changed, sweep_id=exp_id)


def _override_value(v: Any) -> str:
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def _finish(out_dir: Path, summary: dict[str, Any], lines: list[str], verbose: bool) -> dict[str, Any]:
    from powertrain.results import now_iso, write_json_atomic

    summary["finished_at"] = now_iso()
    summary["report"] = lines
    write_json_atomic(out_dir / "experiment.json", summary)
    if verbose:
        print("\n" + "\n".join(lines) + f"\nexperiment: {out_dir / 'experiment.json'}", flush=True)
    return summary


def _start(name: str, out_dir: Path, overrides: list[str], sweep_id: Optional[str]) -> tuple[Path, str, dict[str, Any]]:
    """The experiment directory (absolute), its id for the parts' sweep_id, and the summary to fill in."""
    from powertrain.results import now_iso

    out_dir = Path(out_dir).resolve()
    exp_id = out_dir.name if sweep_id is None else f"{sweep_id}/{out_dir.name}"
    return out_dir, exp_id, {"schema": SCHEMA, "experiment": name, "status": "failed", "dir": str(out_dir),
                             "overrides": overrides, "sweep_id": sweep_id, "started_at": now_iso(), "runs": {}}


def pretrain_finetune(cfg: RunConfig, out_dir: Path, overrides: list[str], sweep_id: Optional[str] = None) -> dict[str, Any]:
    """Pretrain, fine-tune from that run, and train from scratch; report the break-even (see module doc)."""
    p = cfg.paradigm
    if p.name != "pretrained" or not p.pretrain_dataset:
        raise ConfigError("paradigm.pretrain_dataset", p.pretrain_dataset,
                          "a dataset preset to pretrain on, with paradigm=pretrained (see conf/experiment/pretrain_finetune.yaml)")
    if p.weights or p.checkpoint or p.from_run:
        raise ConfigError("paradigm.from_run", p.from_run or p.checkpoint or p.weights,
                          "unset: experiment=pretrain_finetune pretrains and sets the weight source itself")
    if cfg.target_accuracy is None:
        raise ConfigError("target_accuracy", None, "a target for experiment=pretrain_finetune "
                          "(fine-tuning and scratch are compared at the same accuracy)")
    out_dir, exp_id, summary = _start("pretrain_finetune", out_dir, overrides, sweep_id)

    # pretraining runs its epochs (no target) and keeps its weights
    r_pre = _run(cfg, out_dir, "pretrain", overrides, exp_id,
                 {"dataset": p.pretrain_dataset, "paradigm": "scratch", "target_accuracy": None, "save_checkpoint": True},
                 dataset_key="paradigm.pretrain_dataset")
    summary["runs"]["pretrain"] = _part(r_pre, f"pretrain on {p.pretrain_dataset}")
    if r_pre["status"] not in SUCCESS:
        return _finish(out_dir, summary, [f"pretraining ended {r_pre['status']}: {r_pre.get('error') or ''}"], cfg.verbose)

    r_ft = _run(cfg, out_dir, "finetune", overrides, exp_id, {"paradigm.from_run": str(out_dir / "pretrain")})
    summary["runs"]["finetune"] = _part(r_ft, f"fine-tune ({p.finetune}) on {cfg.dataset.name}")

    r_sc = _run(cfg, out_dir, "scratch", overrides, exp_id, {"paradigm": "scratch"})
    summary["runs"]["scratch"] = _part(r_sc, f"scratch on {cfg.dataset.name}")

    e_pre = r_pre["energy"]["total_j"]
    e_ft, e_sc = r_ft["metrics"]["energy_to_target_j"], r_sc["metrics"]["energy_to_target_j"]
    target = cfg.target_accuracy
    lines = [f"pretrain_finetune: {cfg.model.family} pretrained on {p.pretrain_dataset}, then trained to accuracy "
             f"{target} on {_dataset_label(cfg)}",
             f"  E_pre     pretraining ({r_pre['metrics']['epochs']} epochs, acc {_pct(r_pre)})  {e_pre:10.1f} J",
             f"  E_ft      fine-tuning to target ({_to_target(r_ft)})  {_j(e_ft)}",
             f"  E_scratch scratch to target ({_to_target(r_sc)})  {_j(e_sc)}"]
    summary.update(target_accuracy=target, energy_pretrain_j=e_pre, energy_finetune_j=e_ft, energy_scratch_j=e_sc,
                   saving_per_finetune_j=None, break_even_n=None)
    if e_ft is None or e_sc is None:
        missing = [k for k, v in (("fine-tuning", e_ft), ("scratch", e_sc)) if v is None]
        summary["break_even"] = f"not comparable: {' and '.join(missing)} did not reach {target}"
        lines.append(f"  break-even: {summary['break_even']} (raise max_epochs or lower target_accuracy)")
        return _finish(out_dir, summary, lines, cfg.verbose)
    n = break_even(e_pre, e_ft, e_sc)
    summary.update(status="completed", saving_per_finetune_j=e_sc - e_ft, break_even_n=n)
    if n is None:
        summary["break_even"] = "never: fine-tuning to the target costs at least as much as training from scratch"
    else:
        summary["break_even"] = (f"after {n} fine-tuning(s): pretraining once + {n} fine-tunings = "
                                 f"{e_pre + n * e_ft:.1f} J < {n} scratch trainings = {n * e_sc:.1f} J")
        summary["energy_saved_at_10_reuses_j"] = 10 * (e_sc - e_ft) - e_pre
    lines.append(f"  saving per fine-tuning E_scratch − E_ft = {e_sc - e_ft:.1f} J")
    lines.append(f"  break-even n* = ceil(E_pre / (E_scratch − E_ft)) = {n if n is not None else 'never'}: "
                 f"{summary['break_even']}")
    return _finish(out_dir, summary, lines, cfg.verbose)


def multitask_vs_single(cfg: RunConfig, out_dir: Path, overrides: list[str], sweep_id: Optional[str] = None) -> dict[str, Any]:
    """The multitask run and one single-task run per task, each to the same targets; the energy saved."""
    p = cfg.paradigm
    if p.name != "multitask" or len(p.tasks) < 2:
        raise ConfigError("paradigm.tasks", list(p.tasks), "two or more dataset presets with paradigm=multitask")
    targets = list(p.task_targets) or [cfg.target_accuracy] * len(p.tasks)
    if len(targets) != len(p.tasks) or any(t is None for t in targets):
        raise ConfigError("paradigm.task_targets", list(p.task_targets), "one target per task (or target_accuracy): "
                          "multitask and single-task runs are compared at the same accuracies")
    by_task = dict(zip(p.tasks, targets))
    out_dir, exp_id, summary = _start("multitask_vs_single", out_dir, overrides, sweep_id)

    r_mt = _run(cfg, out_dir, "multitask", overrides, exp_id, {})
    summary["runs"]["multitask"] = _part(r_mt, "multitask " + "+".join(p.tasks))
    mt_tasks = r_mt["metrics"].get("tasks") or {}
    singles: dict[str, dict[str, Any]] = {}
    for name, target in by_task.items():
        singles[name] = _run(cfg, out_dir, f"single_{name}", overrides, exp_id,
                             {"paradigm": "scratch", "dataset": name, "target_accuracy": target})
        summary["runs"][f"single_{name}"] = _part(singles[name], f"single-task {name}")

    e_mt = r_mt["metrics"]["energy_to_target_j"]
    e_single = [r["metrics"]["energy_to_target_j"] for r in singles.values()]
    lines = [f"multitask_vs_single: {cfg.model.family}, tasks {', '.join(p.tasks)} ({p.mixing}), "
             f"targets {', '.join(f'{n} {t}' for n, t in by_task.items())}"]
    per_task = {}
    for name in p.tasks:
        s, m = singles[name]["metrics"], mt_tasks.get(name) or {}
        per_task[name] = {"target": by_task[name],
                          "multitask_accuracy": m.get("accuracy"), "multitask_energy_to_target_j": m.get("energy_to_target_j"),
                          "single_accuracy": s["final_accuracy"], "single_energy_to_target_j": s["energy_to_target_j"]}
        lines.append(f"  {name:<16} single: acc {_pct(singles[name])}, {_j(s['energy_to_target_j'])} to target | "
                     f"multitask: acc {_fmt_pct(m.get('accuracy'))}, target hit at {_j(m.get('energy_to_target_j'))}")
    summary.update(targets=by_task, tasks=per_task, energy_multitask_j=e_mt,
                   energy_single_sum_j=None, energy_saved_j=None, energy_saved_fraction=None)
    lines.append(f"  multitask, every task at its target: {_j(e_mt)}")
    if e_mt is None or any(e is None for e in e_single):
        missing = (["multitask"] if e_mt is None else []) + [n for n, e in zip(p.tasks, e_single) if e is None]
        summary["comparison"] = f"not comparable: {', '.join(missing)} did not reach the target(s)"
        lines.append(f"  {summary['comparison']} (raise max_epochs or lower the targets)")
        return _finish(out_dir, summary, lines, cfg.verbose)
    total = sum(e_single)  # type: ignore[arg-type]
    saved = total - e_mt
    summary.update(status="completed", energy_single_sum_j=total, energy_saved_j=saved,
                   energy_saved_fraction=saved / total if total else None)
    summary["comparison"] = (f"multitask {'saves' if saved >= 0 else 'costs'} {abs(saved):.1f} J "
                             f"({abs(saved) / total * 100:.0f} % of the single-task runs' {total:.1f} J)")
    lines.append(f"  single-task runs together:           {total:10.1f} J")
    lines.append(f"  {summary['comparison']}")
    return _finish(out_dir, summary, lines, cfg.verbose)


def _dataset_label(cfg: RunConfig) -> str:
    return cfg.dataset.name + (f" classes {list(cfg.dataset.classes)}" if cfg.dataset.classes else "")


def _j(v: Optional[float]) -> str:
    return f"{v:10.1f} J" if v is not None else "  not reached"


def _fmt_pct(v: Optional[float]) -> str:
    return f"{v * 100:.1f}%" if v is not None else "n/a"


def _pct(result: dict[str, Any]) -> str:
    return _fmt_pct(result["metrics"]["final_accuracy"])


def _to_target(result: dict[str, Any]) -> str:
    m = result["metrics"]
    return f"{m['epochs']} epochs, acc {_pct(result)}" if m["reached_target"] else f"not reached in {m['epochs']} epochs"


Driver = Callable[[RunConfig, Path, list[str], Optional[str]], dict[str, Any]]
DRIVERS: dict[str, Driver] = {"pretrain_finetune": pretrain_finetune, "multitask_vs_single": multitask_vs_single}


def main() -> None:
    """``python -m powertrain.experiments NAME [overrides]`` = ``python -m powertrain experiment=NAME [overrides]``."""
    if len(sys.argv) < 2 or sys.argv[1] not in DRIVERS:
        print(f"usage: python -m powertrain.experiments {{{','.join(DRIVERS)}}} [overrides]", file=sys.stderr)
        sys.exit(2)
    from powertrain.__main__ import main as powertrain_main

    sys.argv = [sys.argv[0], f"experiment={sys.argv[1]}", *sys.argv[2:]]
    powertrain_main()


if __name__ == "__main__":
    main()
