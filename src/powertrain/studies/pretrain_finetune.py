"""Knowledge recycling (Geißler et al. 2024): is pretraining worth its energy?

Three parts into one study directory: ``pretrain`` (train ``study.pretrain_dataset`` from scratch for
``max_epochs``, keep the weights), ``finetune`` (those weights fine-tuned on ``dataset`` to
``target_accuracy``) and ``scratch`` (the same model on ``dataset`` from scratch, to the same target). The
summary reports the break-even n* = ceil(E_pre / (E_scratch − E_ft)): after how many fine-tunings
pretraining once has paid for itself.
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
    joules,
    override_value,
    part_row,
    pct,
    to_target,
)

if TYPE_CHECKING:
    from powertrain.studies import StudyContext

NAME = "pretrain_finetune"


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


def run(ctx: StudyContext) -> dict[str, Any]:
    """Pretrain, fine-tune from that run, and train from scratch; the break-even (see module doc)."""
    cfg, s = ctx.cfg, ctx.cfg.study
    summary: dict[str, Any] = {"status": "failed", "runs": {}}
    # pretraining runs its epochs (no target) on the whole upstream preset and keeps its weights
    r_pre = ctx.single("pretrain", [f"dataset={s.pretrain_dataset}", "dataset.limit_train=null", "paradigm=scratch",
                                    "target_accuracy=null", "save_checkpoint=true"])
    summary["runs"]["pretrain"] = part_row(r_pre, f"pretrain on {s.pretrain_dataset}")
    if r_pre["status"] not in SUCCESS:
        return finish(summary, [f"pretraining ended {r_pre['status']}: {r_pre.get('error') or ''}"], cfg.verbose)

    r_ft = ctx.single("finetune", ["paradigm=pretrained", f"paradigm.from_run={ctx.out_dir / 'pretrain'}",
                                   f"paradigm.finetune={s.finetune}", f"paradigm.partial_blocks={s.partial_blocks}",
                                   f"paradigm.reset_classifier={override_value(s.reset_classifier)}"])
    summary["runs"]["finetune"] = part_row(r_ft, f"fine-tune ({s.finetune}) on {cfg.dataset.name}")
    r_sc = ctx.single("scratch", ["paradigm=scratch"])
    summary["runs"]["scratch"] = part_row(r_sc, f"scratch on {cfg.dataset.name}")

    e_pre = r_pre["energy"]["total_j"]
    e_ft, e_sc = r_ft["metrics"]["energy_to_target_j"], r_sc["metrics"]["energy_to_target_j"]
    target = cfg.target_accuracy
    lines = [f"pretrain_finetune: {cfg.model.family} pretrained on {s.pretrain_dataset}, then trained to accuracy "
             f"{target} on {dataset_label(cfg)}",
             f"  E_pre     pretraining ({r_pre['metrics']['epochs']} epochs, acc {pct(r_pre)})  {joules(e_pre)}",
             f"  E_ft      fine-tuning to target ({to_target(r_ft)})  {joules(e_ft)}",
             f"  E_scratch scratch to target ({to_target(r_sc)})  {joules(e_sc)}"]
    summary.update(target_accuracy=target, energy_pretrain_j=e_pre, energy_finetune_j=e_ft, energy_scratch_j=e_sc,
                   saving_per_finetune_j=None, break_even_n=None)
    if e_ft is None or e_sc is None:
        missing = [k for k, v in (("fine-tuning", e_ft), ("scratch", e_sc)) if v is None]
        summary["break_even"] = f"not comparable: {' and '.join(missing)} did not reach {target}"
        lines.append(f"  break-even: {summary['break_even']} (raise max_epochs or lower target_accuracy)")
        return finish(summary, lines, cfg.verbose)
    summary.update(status="completed", **break_even_answer(e_pre, e_ft, e_sc))
    lines += break_even_lines(summary)
    return finish(summary, lines, cfg.verbose)


def analyze(df: Any, study: dict[str, Any]) -> list:
    """No extra report sections yet: the summary's lines say it all."""
    return []
