"""Knowledge recycling (Geißler et al. 2024): is pretraining worth its energy?

Two sweeps into one study directory: ``pretrain/`` (train ``study.pretrain_dataset`` from scratch for
``max_epochs``, keep the weights; one job per repeat) and ``compare/``: each repeat's pretrained weights
fine-tuned on ``dataset`` to ``target_accuracy`` (variant ``finetune``) and the same model trained on
``dataset`` from scratch to the same target (variant ``scratch``), the two interleaved round by round.
``study.repeats`` (smoke 5, paper 10) runs of each; the seeds vary (repeat r: ``seed + r``), since the
epochs to a target depend on the initialisation. The summary reports the break-even
n* = ceil(E_pre / (E_scratch − E_ft)) of the median energies: after how many fine-tunings pretraining once
has paid for itself, with its 95 % bootstrap interval ("never" where a resample's fine-tuning saves
nothing) and the Mann–Whitney p that fine-tuning and scratch cost the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from powertrain.config import RunConfig, StudyConfig
from powertrain.config.checks import Check, at_least, one_of
from powertrain.config.errors import ConfigError
from powertrain.results import SUCCESS
from powertrain.studies._common import (
    dataset_label,
    finish,
    fmt_j,
    fmt_pct,
    joules,
    ordered_variants,
    override_value,
    part_row,
    repeats,
    seeds_of,
    sweep_results,
    variant_results,
)

if TYPE_CHECKING:
    from powertrain.studies import StudyContext

NAME = "pretrain_finetune"
SMOKE_REPEATS = 5  # Mann–Whitney U at n=5 can reach p=0.008 (n=3 never goes below p=0.1)
PAPER_REPEATS = 10


@dataclass
class Config(StudyConfig):
    pretrain_dataset: str = "digits_0to4"  # dataset preset of the upstream (pretraining) run
    finetune: str = "full"  # paradigm.finetune of the fine-tuning part: full | head | partial
    partial_blocks: int = 1
    reset_classifier: bool = True  # a new label set downstream: a fresh classifier


CHECKS: dict[str, Check] = {"study.finetune": one_of(("full", "head", "partial")),
                            "study.partial_blocks": at_least(1)}


def break_even(e_pre_j: float, e_ft_j: float, e_scratch_j: float) -> Optional[int]:
    """Fine-tunings after which pretraining once + n fine-tunings cost less than n scratch trainings.

    E_pre + n·E_ft < n·E_scratch  ⇔  n > E_pre / (E_scratch − E_ft); None ("never") when E_ft ≥ E_scratch.
    """
    saving_j = e_scratch_j - e_ft_j
    if saving_j <= 0:
        return None
    return max(1, math.ceil(e_pre_j / saving_j))


def break_even_answer(e_pre_j: float, e_ft_j: float, e_scratch_j: float) -> dict[str, Any]:
    """The summary keys of the answer: the saving per fine-tuning, n* and the sentence that explains it."""
    n = break_even(e_pre_j, e_ft_j, e_scratch_j)
    out: dict[str, Any] = {"saving_per_finetune_j": e_scratch_j - e_ft_j, "break_even_n": n}
    if n is None:
        out["break_even"] = "never: fine-tuning to the target costs at least as much as training from scratch"
    else:
        out["break_even"] = (f"after {n} fine-tuning(s): pretraining once + {n} fine-tunings = "
                             f"{fmt_j(e_pre_j + n * e_ft_j)} J < {n} scratch trainings = {fmt_j(n * e_scratch_j)} J")
        out["energy_saved_at_10_reuses_j"] = 10 * (e_scratch_j - e_ft_j) - e_pre_j
    return out


def break_even_lines(answer: dict[str, Any]) -> list[str]:
    n = answer["break_even_n"]
    return [f"  saving per fine-tuning E_scratch − E_ft = {fmt_j(answer['saving_per_finetune_j'])} J",
            "  break-even n* = ceil(E_pre / (E_scratch − E_ft)) = "
            + (answer["break_even"] if n is None else f"{n}: {answer['break_even']}")]


def check(cfg: RunConfig) -> None:
    """A pretraining preset that exists and a target: fine-tuning and scratch meet at the same accuracy."""
    from powertrain.data import dataset_preset

    dataset_preset(cfg.study.pretrain_dataset, "study.pretrain_dataset")
    if cfg.target_accuracy is None:
        raise ConfigError("target_accuracy", None, "a target for experiment=pretrain_finetune "
                          "(fine-tuning and scratch are compared at the same accuracy)")


def _n_star(e_pre: Any, e_ft: Any, e_sc: Any) -> float:
    """n* of the medians of three samples (math.inf for "never"): the statistic the interval resamples."""
    import statistics

    n = break_even(statistics.median(e_pre), statistics.median(e_ft), statistics.median(e_sc))
    return math.inf if n is None else float(n)


def break_even_stats(e_pre: list[float], e_ft: list[float], e_sc: list[float]) -> dict[str, Any]:
    """n* of the medians with its 95 % interval, and the fine-tuning-vs-scratch change with its test, from
    every repeat's energies (pure). "never" stands for an infinite n* in the JSON."""
    from powertrain.report import stats

    ci = stats.bootstrap_ci([e_pre, e_ft, e_sc], _n_star)
    point = _n_star(e_pre, e_ft, e_sc)
    saving = stats.change(e_sc, e_ft, floor=stats.noise_floor(e_sc))  # fine-tuning relative to scratch
    saving["verdict"] = stats.verdict("fine-tuning vs scratch, energy to target", saving,
                                      floor_of="repeated scratch runs")
    n = stats.effect(point, ci, [len(e_pre), len(e_ft), len(e_sc)], saving["p"],
                     "Mann-Whitney U, two-sided, of E_ft against E_scratch")
    n["verdict"] = stats.verdict("break-even n*", n, fmt=_fmt_n, p_label="p of the saving")
    never = "never"
    n["estimate"] = never if point == math.inf else point
    n["ci"] = None if ci is None else [never if v == math.inf else v for v in ci]
    return {"break_even_effect": n, "break_even_ci": n["ci"], "saving_effect": saving,
            "noise_floor": saving["noise_floor"]}


def _fmt_n(v: Any) -> str:
    return "n/a" if v is None else "never" if v == math.inf else f"{v:.0f}"


def _median_line(label: str, results: list[dict[str, Any]], e: list[float], target: bool) -> str:
    """``label (median epochs, accuracy, how many reached)  median J [interval]``."""
    from powertrain.report import stats

    ok = [r for r in results if r["metrics"]["reached_target"]] if target else results
    epochs = stats.median([r["metrics"]["epochs"] for r in ok])
    acc = stats.median([r["metrics"]["final_accuracy"] for r in ok])
    what = f"median {epochs:g} epochs, acc {fmt_pct(acc)}" if ok else "not reached"
    reached = f", {len(ok)}/{len(results)} reached" if target else ""
    ci = stats.median_ci(e)["ci"]
    interval = f" [{fmt_j(ci[0])}, {fmt_j(ci[1])}]" if ci else ""
    return f"  {f'{label} ({what}{reached})':<72}{joules(stats.median(e))}{interval}"


def run(ctx: StudyContext) -> dict[str, Any]:
    """Pretrain, fine-tune from each pretraining and train from scratch, interleaved; the break-even."""
    cfg, s = ctx.cfg, ctx.cfg.study
    n = repeats(cfg, SMOKE_REPEATS, PAPER_REPEATS)
    seeds = seeds_of(cfg, n)
    summary: dict[str, Any] = {"status": "failed", "runs": {}, "repeats": n, "seeds": seeds, "seeds_vary": True}
    # pretraining runs its epochs (no target) on the whole upstream preset and keeps its weights
    pre_dir = ctx.sweep("pretrain", [f"dataset={s.pretrain_dataset}", "dataset.limit_train=null", "paradigm=scratch",
                                     "target_accuracy=null", "save_checkpoint=true",
                                     f"seed={','.join(map(str, seeds))}"])
    pre = [(d, r) for d, r in sweep_results(pre_dir)]
    if len(pre) != n or any(r is None or r["status"] not in SUCCESS for _, r in pre):
        bad = next((r for _, r in pre if r is None or r["status"] not in SUCCESS), None)
        why = "a pretraining left no result" if bad is None else f"{bad['status']}: {bad.get('error') or ''}"
        return finish(summary, [f"pretraining ended {why}"], cfg.verbose)
    summary["runs"]["pretrain"] = part_row(pre[0][1], f"pretrain on {s.pretrain_dataset}")  # type: ignore[arg-type]

    def overrides(name: str, r: int) -> list[str]:
        if name == "scratch":
            return ["paradigm=scratch"]
        return ["paradigm=pretrained", f"paradigm.from_run={pre[r][0]}", f"paradigm.finetune={s.finetune}",
                f"paradigm.partial_blocks={s.partial_blocks}",
                f"paradigm.reset_classifier={override_value(s.reset_classifier)}"]

    cmp_dir = ctx.sweep("compare", [], variants=ordered_variants(["finetune", "scratch"], overrides, n, seeds))
    by = variant_results(cmp_dir)
    r_pre, r_ft, r_sc = [r for _, r in pre], by.get("finetune", []), by.get("scratch", [])
    for part, rs, label in (("finetune", r_ft, f"fine-tune ({s.finetune}) on {cfg.dataset.name}"),
                            ("scratch", r_sc, f"scratch on {cfg.dataset.name}")):
        if rs:
            summary["runs"][part] = part_row(rs[0], label)
    e_pre = [r["energy"]["total_j"] for r in r_pre]  # type: ignore[index]
    e_ft = [r["metrics"]["energy_to_target_j"] for r in r_ft if r["metrics"]["energy_to_target_j"] is not None]
    e_sc = [r["metrics"]["energy_to_target_j"] for r in r_sc if r["metrics"]["energy_to_target_j"] is not None]
    target = cfg.target_accuracy
    lines = [f"pretrain_finetune: {cfg.model.family} pretrained on {s.pretrain_dataset}, then trained to accuracy "
             f"{target} on {dataset_label(cfg)}; {n} repeats (seeds {seeds[0]}-{seeds[-1]}; fine-tuning and "
             "scratch interleaved), medians [95 % intervals]",
             _median_line("E_pre     pretraining", r_pre, e_pre, False),  # type: ignore[arg-type]
             _median_line("E_ft      fine-tuning to target", r_ft, e_ft, True),
             _median_line("E_scratch scratch to target", r_sc, e_sc, True)]
    from powertrain.report.stats import median

    m_pre, m_ft, m_sc = median(e_pre), median(e_ft), median(e_sc)
    summary.update(target_accuracy=target, energy_pretrain_j=m_pre, energy_finetune_j=m_ft, energy_scratch_j=m_sc,
                   energy_pretrain_runs_j=e_pre, energy_finetune_runs_j=e_ft, energy_scratch_runs_j=e_sc,
                   saving_per_finetune_j=None, break_even_n=None)
    if m_ft is None or m_sc is None:
        missing = [k for k, v in (("fine-tuning", m_ft), ("scratch", m_sc)) if v is None]
        summary["break_even"] = f"not comparable: {' and '.join(missing)} did not reach {target}"
        lines.append(f"  break-even: {summary['break_even']} (raise max_epochs or lower target_accuracy)")
        return finish(summary, lines, cfg.verbose)
    summary.update(status="completed", **break_even_answer(m_pre, m_ft, m_sc), **break_even_stats(e_pre, e_ft, e_sc))
    lines += break_even_lines(summary)
    lines += [f"  {summary['break_even_effect']['verdict']}", f"  {summary['saving_effect']['verdict']}"]
    if summary["noise_floor"] is not None:
        lines.append(f"  noise floor: scratch runs differ by ±{summary['noise_floor'] * 100:.0f} % (coefficient of "
                     f"variation, n={len(e_sc)}; seeds vary)")
    return finish(summary, lines, cfg.verbose)


def analyze(df: Any, study: dict[str, Any]) -> list:
    """No extra report sections yet: the summary's lines say it all."""
    return []
