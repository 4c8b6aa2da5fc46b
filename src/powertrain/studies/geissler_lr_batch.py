"""Learning rate × batch size (Geißler et al. 2024, "The Power of Training"): what a badly set pair costs.

One part, ``grid``: a Hydra multirun over ``study.lrs`` × ``study.batch_sizes`` × ``study.seeds``, every
run trained to ``target_accuracy`` (or ``max_epochs``). The seeds are the repeats (they vary: epochs to a
target depend on the initialisation, and the paper averages over seeds): the grid runs once per seed,
interleaved round by round with the cells rotated (``powertrain.launch.repeats``), and ``study.repeats``
(default 1) runs each cell and seed that many times more. The answer, computed from the runs' result.json
files: energy-to-target per cell (median over its runs, with a 95 % interval and the spread), the cells
that never reached the target, and the worst/best ratio among the cells that did ("N× the energy for the
same accuracy") with its 95 % interval, the Kruskal–Wallis p that all cells cost the same, and a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from powertrain.config import RunConfig, StudyConfig
from powertrain.config.checks import Check, at_least, each, positive
from powertrain.config.errors import ConfigError
from powertrain.results import SUCCESS
from powertrain.studies._common import finish, repeats

if TYPE_CHECKING:
    from powertrain.report import Section
    from powertrain.studies import StudyContext

NAME = "geissler_lr_batch"

# the paper's kind of grid (CIFAR-10 / ResNet class; a decade of learning rates, batch 32..1024, 3 seeds)
PAPER_LRS = (1e-4, 1e-3, 1e-2, 1e-1)
PAPER_BATCH_SIZES = (32, 128, 512, 1024)
PAPER_SEEDS = (0, 1, 2, 3, 4)  # n=5 per cell: a pair of cells can differ at p=0.008


@dataclass
class Config(StudyConfig):
    lrs: list[float] = field(default_factory=lambda: [0.1, 0.02, 0.005])  # smoke grid (README "Seed studies")
    batch_sizes: list[int] = field(default_factory=lambda: [32, 128, 512])


CHECKS: dict[str, Check] = {"study.lrs": each(positive), "study.batch_sizes": each(at_least(1))}


def grid(cfg: RunConfig, given: set[str] = frozenset()) -> tuple[list[float], list[int], list[int]]:
    """The learning rates, batch sizes and seeds to sweep: the preset's, or at ``study.scale=paper`` the
    paper's grid for every one of the three not ``given`` on the command line."""
    s = cfg.study
    paper = s.scale == "paper"
    lrs = list(PAPER_LRS) if paper and "study.lrs" not in given else list(s.lrs)
    batches = list(PAPER_BATCH_SIZES) if paper and "study.batch_sizes" not in given else list(s.batch_sizes)
    seeds = list(PAPER_SEEDS) if paper and "study.seeds" not in given else list(s.seeds)
    return lrs, batches, seeds


def check(cfg: RunConfig) -> None:
    """A target accuracy: the study compares the energy to reach the same accuracy."""
    if cfg.target_accuracy is None:
        raise ConfigError("target_accuracy", None, "a number in (0, 1]: the study compares energy to the same "
                          "accuracy (e.g. target_accuracy=0.9)")


def _csv(values: list[Any]) -> str:
    return ",".join(str(v) for v in values)


def run(ctx: StudyContext) -> dict[str, Any]:
    """Sweep the grid, then read the runs back and conclude (see the module doc)."""
    given = {o.split("=", 1)[0] for o in ctx.study_overrides}
    lrs, batches, seeds = grid(ctx.cfg, given)
    n = repeats(ctx.cfg, 1, 1)  # identical runs per cell and seed, beyond the seeds
    sweep_dir = ctx.sweep("grid", [f"optimizer.lr={_csv(lrs)}", f"batch_size={_csv(batches)}",
                                   f"seed={_csv(seeds)}"], repeats=n)
    from powertrain.report import load_sweep
    from powertrain.report.analysis import worst_best

    df = load_sweep(ctx.out_dir)
    wb = next(iter(worst_best(df)), {})
    runs = len(df)
    done = int(df["status"].isin(SUCCESS).sum())
    summary: dict[str, Any] = {"status": "completed" if done == runs and runs else "failed",
                               "grid": {"lrs": lrs, "batch_sizes": batches, "seeds": seeds}, "repeats": n,
                               "seeds_vary": True,
                               "sweep_dir": str(sweep_dir), "runs": runs, "runs_finished": done,
                               "target_accuracy": ctx.cfg.target_accuracy, **_plain(wb)}
    return finish(summary, headline(summary), ctx.cfg.verbose)


def _plain(wb: dict[str, Any]) -> dict[str, Any]:
    """worst_best's row with plain floats (numpy scalars and NaN are not JSON)."""
    out = {}
    for k, v in wb.items():
        v = float(v) if hasattr(v, "item") and not isinstance(v, (list, str)) else v
        out[k] = None if isinstance(v, float) and v != v else v
    return out


def headline(s: dict[str, Any]) -> list[str]:
    """The study's answer in a few lines (printed, and kept in study.json)."""
    target = s.get("target_accuracy")
    tgt = f"{target * 100:g} %" if target is not None else "the target"
    g = s["grid"]
    reps = f" × {s['repeats']} repeats" if (s.get("repeats") or 1) > 1 else ""
    lines = [f"geissler_lr_batch: {len(g['lrs'])} learning rates × {len(g['batch_sizes'])} batch sizes × "
             f"{len(g['seeds'])} seeds{reps}, to {tgt} ({s['runs_finished']}/{s['runs']} runs finished; seeds vary, "
             "cells interleaved)"]
    if s.get("ratio") is not None:
        ci = s.get("ratio_ci")
        interval = f" [{ci[0]:.1f}×, {ci[1]:.1f}×]" if ci else ""
        lines.append(f"  the worst setting that reaches {tgt} costs {s['ratio']:.1f}×{interval} the energy of the "
                     f"best: {s['worst']} {s['worst_j']:.1f} J vs {s['best']} {s['best_j']:.1f} J (median over seeds)")
        if s.get("ratio_effect"):
            lines.append(f"  {s['ratio_effect']['verdict']}")
        if s.get("noise_floor") is not None:
            lines.append(f"  noise floor: runs of one cell differ by ±{s['noise_floor'] * 100:.0f} % (median coefficient "
                         "of variation over the cells; seeds vary)")
        if s.get("best_s") is not None and s.get("worst_s") is not None:
            lines.append(f"  time to target: {s['worst_s']:.1f} s vs {s['best_s']:.1f} s")
    else:
        lines.append(f"  no cell reached {tgt}: no ratio")
    missed = s.get("not_reached") or []
    lines.append(f"  cells that never reached {tgt}: {'; '.join(missed) if missed else 'none'}")
    return lines


def analyze(df: Any, study: dict[str, Any]) -> list[Section]:
    """The headline, the worst/best table and energy-to-target per cell (from the runs, not study.json,
    so a half-finished study reports what has finished)."""
    from powertrain.report import Section, Table, stats
    from powertrain.report.analysis import cells, worst_best_table

    c = cells(df)
    rows = []
    for _, r in c.iterrows():
        ci, cv = stats.median_ci(r["energy_runs"])["ci"], stats.noise_floor(r["energy_runs"])
        rows.append([r.get("optimizer.lr"), r.get("batch_size"), r["energy_to_target_j"],
                     "-" if not ci else f"{ci[0]:.3g} to {ci[1]:.3g}", r["energy_min_j"], r["energy_max_j"],
                     None if cv is None else cv * 100, r["time_to_target_s"], f"{r['reached']}/{r['runs']}",
                     r["final_accuracy"]])
    per_cell = Table(["lr", "batch size", "median E->target (J)", "95 % interval (J)", "min (J)", "max (J)",
                      "spread (CV %)", "median t->target (s)", "runs reached", "median final accuracy"], rows,
                     "Energy to reach the target per cell: median over its runs (seeds, repeats) with a 95 % "
                     "bootstrap interval, min-max and the coefficient of variation.")
    summary = study.get("summary") or {}
    text = "\n".join(headline(summary)) if summary.get("grid") else "The study has not finished: the tables show "\
        "the runs that have."
    return [Section("Learning rate × batch size (Geißler et al. 2024)", text,
                    [worst_best_table(df), per_cell])]
