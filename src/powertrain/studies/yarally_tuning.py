"""Hyperparameter search strategies (Yarally et al. 2023): what grid, random and Bayesian search cost.

For every model in ``study.models``, strategy in ``study.strategies`` and search seed in ``study.seeds``
one part, ``<model>-<strategy>-s<seed>``: an Optuna search (powertrain's sweeper) of ``study.rounds``
trials over Adam's learning rate, β1, β2, ε and weight decay. Random, TPE and GP search the paper's ranges
(``study.space``, β2 really searched); grid walks ``study.grid`` (64 points: the paper's 64 rounds) in a
seeded random order, as Optuna's grid sampler does. Each trial trains ``max_epochs``; the objective is
its final accuracy.

The search seeds are the repeats (they vary: a search with the same seed would ask for the same trials):
smoke 3 seeds, paper 5 (``study.repeats=N`` asks for N seeds from the first of ``study.seeds``). The
searches run round by round, one seed per round, the model × strategy pairs rotated each round, so slow
drift in machine load hits every strategy alike.

The answer, per model and strategy as the median over the search seeds with a 95 % interval: the rounds a
search needs to reach 99 % of its own final best, the campaign energy until then and in total, and
best-so-far accuracy against round and against cumulative energy (failed trials cost energy and count as
rounds); per model, the Kruskal–Wallis p that the strategies need the same number of rounds, and a verdict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from powertrain.config import RunConfig, StudyConfig
from powertrain.config.checks import Check, at_least, each, one_of, optional
from powertrain.config.errors import ConfigError
from powertrain.report import stats
from powertrain.results import OPTUNA_STUDY_FILE, load_result
from powertrain.studies._common import finish, fmt_pct, interleave

if TYPE_CHECKING:
    from powertrain.report import Section
    from powertrain.studies import StudyContext

NAME = "yarally_tuning"
STRATEGIES = ("grid", "random", "tpe", "gp")  # gp and tpe: Optuna's Bayesian samplers
MODELS = ("dense_poly", "dense_linear", "simple_cnn")
BEST_SHARE = 0.99  # "rounds to best": the first round within 1 % of the search's final best
PAPER_ROUNDS = 64
PAPER_SEEDS = (0, 1, 2, 3, 4)
# Yarally et al. 2023: 64 rounds per strategy; Bayesian search found its best after about 27 of them
PAPER = "64 rounds per strategy; Bayesian search reached its best after ~27 rounds (Yarally et al. 2023)"


def _space() -> dict[str, str]:
    # the paper's ranges (Yarally et al. 2023, see docs/DESIGN.md); Adam needs β < 1, so [0.1, 1) ends at 0.999 (β2 at 0.9999)
    return {"optimizer.lr": "tag(log,interval(1e-5,0.1))", "optimizer.beta1": "interval(0.1,0.999)",
            "optimizer.beta2": "interval(0.8,0.9999)", "optimizer.eps": "tag(log,interval(1e-9,1e-7))",
            "optimizer.weight_decay": "interval(0.0,0.1)"}


def _grid() -> dict[str, list[float]]:
    # 4 × 2 × 2 × 2 × 2 = 64 points, one per paper round, inside the same ranges
    return {"optimizer.lr": [1e-5, 1e-4, 1e-3, 1e-2], "optimizer.beta1": [0.5, 0.9],
            "optimizer.beta2": [0.9, 0.999], "optimizer.eps": [1e-9, 1e-7], "optimizer.weight_decay": [0.0, 0.05]}


@dataclass
class Config(StudyConfig):
    models: list[str] = field(default_factory=lambda: list(MODELS))
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))
    rounds: int = 8  # trials per search (paper scale: 64)
    startup_rounds: Optional[int] = None  # tpe/gp: random rounds before the model (None: Optuna's 10)
    n_jobs: int = 1  # trials launched together per search batch (a Slurm array per batch); 1 = sequential
    space: dict[str, str] = field(default_factory=_space)  # key -> Optuna search expression (random/tpe/gp)
    grid: dict[str, list[float]] = field(default_factory=_grid)  # key -> values (grid)


CHECKS: dict[str, Check] = {"study.models": each(one_of(MODELS)), "study.strategies": each(one_of(STRATEGIES)),
                            "study.rounds": at_least(1), "study.n_jobs": at_least(1),
                            "study.startup_rounds": optional(at_least(0))}


def check(cfg: RunConfig) -> None:
    """Adam is what the study tunes; something to compare."""
    if cfg.optimizer.name != "adam":
        raise ConfigError("optimizer", cfg.optimizer.name, "adam (the study searches Adam's lr, betas, eps and "
                          "weight decay)")
    for key in ("models", "strategies"):
        if not getattr(cfg.study, key):
            raise ConfigError(f"study.{key}", [], "a non-empty list")


def plan(cfg: RunConfig, given: set[str] = frozenset()) -> tuple[int, list[int], Optional[int]]:
    """Rounds, search seeds and TPE/GP start-up rounds: the preset's, or at ``study.scale=paper`` the
    paper's 64 rounds, 5 seeds and Optuna's default start-up, for each not ``given`` on the command line."""
    s = cfg.study
    paper = s.scale == "paper"
    rounds = PAPER_ROUNDS if paper and "study.rounds" not in given else s.rounds
    seeds = list(PAPER_SEEDS) if paper and "study.seeds" not in given else list(s.seeds)
    if s.repeats is not None:  # N searches per model and strategy: N seeds from the first one
        seeds = [seeds[0] + r for r in range(s.repeats)]
    startup = None if paper and "study.startup_rounds" not in given else s.startup_rounds
    return rounds, seeds, startup


def part_name(model: str, strategy: str, seed: int) -> str:
    return f"{model}-{strategy}-s{seed}"


def parse_part(part: str) -> Optional[tuple[str, str, int]]:
    """(model, strategy, seed) of a part name, or None for anything else."""
    model, _, rest = part.rpartition("-s")
    model, _, strategy = model.rpartition("-")
    return (model, strategy, int(rest)) if model and strategy in STRATEGIES and rest.isdigit() else None


def search_overrides(cfg: RunConfig, model: str, strategy: str, seed: int, rounds: int,
                     startup: Optional[int] = None) -> list[str]:
    """The multirun overrides of one search."""
    s = cfg.study
    if strategy == "grid":
        space = [f"{k}=choice({','.join(str(v) for v in vals)})" for k, vals in s.grid.items()]
    else:
        space = [f"{k}={expr}" for k, expr in s.space.items()]
    return [f"model={model}", f"seed={seed}", "hydra/sweeper=optuna", f"hydra.sweeper.sampler={strategy}",
            f"hydra.sweeper.seed={seed}", f"hydra.sweeper.n_trials={rounds}", f"hydra.sweeper.n_jobs={s.n_jobs}",
            "hydra.sweeper.objective=accuracy", *space,
            *([] if startup is None or strategy not in ("tpe", "gp") else [f"hydra.sweeper.n_startup_trials={startup}"]),
            # one report for the whole study at its end, not one per search
            "hydra.callbacks.sweep_summary.write_report=false"]


def curve(trials: list[tuple[str, Optional[float], Optional[float]]]) -> dict[str, Any]:
    """A search's progress from its trials in order, each (status, accuracy, energy_j).

    Returns best-so-far accuracy and cumulative energy per round, the final best, the rounds to reach
    ``BEST_SHARE`` of it, the energy spent until then and in total. A failed trial is a round that
    costs energy and improves nothing.
    """
    from powertrain.results import USABLE

    best: list[Optional[float]] = []
    spent: list[float] = []
    b, e = None, 0.0
    for status, acc, energy_j in trials:
        if status in USABLE and acc is not None:
            b = acc if b is None else max(b, acc)
        e += energy_j or 0.0
        best.append(b)
        spent.append(e)
    final = b
    rounds = energy_to_best = None
    if final is not None:
        rounds = next(i + 1 for i, x in enumerate(best) if x is not None and x >= BEST_SHARE * final)
        energy_to_best = spent[rounds - 1]
    return {"best": best, "energy_j": spent, "final_best": final, "rounds_to_best": rounds,
            "energy_to_best_j": energy_to_best, "total_j": e, "rounds": len(trials)}


def _trials_of(sweep_dir: Path) -> list[tuple[str, Optional[float], Optional[float]]]:
    """(status, accuracy, energy_j) of a finished search's trials in order, from its optuna_study.json."""
    try:
        records = json.loads((sweep_dir / OPTUNA_STUDY_FILE).read_text())["trials"]
    except (OSError, ValueError, KeyError):
        return []
    out = []
    for r in sorted(records, key=lambda r: r["number"]):
        result = load_result(sweep_dir / r["job"])[0]
        acc = (result.get("metrics") or {}).get("final_accuracy") if result else None
        out.append((r["status"], acc, r.get("energy_j")))
    return out


def aggregate(curves: dict[tuple[str, str, int], dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, strategy): medians over the search seeds, with the range."""
    rows = []
    order = {m: i for i, m in enumerate(MODELS)}
    pairs = sorted(dict.fromkeys((m, s) for m, s, _ in curves),
                   key=lambda p: (order.get(p[0], len(order)), p[0], STRATEGIES.index(p[1])))
    for model, strategy in pairs:
        cs = [c for (m, s, _), c in curves.items() if (m, s) == (model, strategy)]
        rounds = [c["rounds_to_best"] for c in cs if c["rounds_to_best"] is not None]
        energy = [c["energy_to_best_j"] for c in cs]
        rows.append({"model": model, "strategy": strategy, "repeats": len(cs),
                     "rounds": stats.median([c["rounds"] for c in cs]),
                     "final_best": stats.median([c["final_best"] for c in cs]),
                     "rounds_to_best": stats.median(rounds), "rounds_to_best_range": [min(rounds), max(rounds)] if
                     rounds else None, "rounds_to_best_runs": rounds,
                     "rounds_to_best_ci": stats.median_ci(rounds)["ci"],
                     "energy_to_best_j": stats.median(energy), "energy_to_best_ci": stats.median_ci(energy)["ci"],
                     "total_j": stats.median([c["total_j"] for c in cs]),
                     "total_cv": stats.noise_floor([c["total_j"] for c in cs])})
    return rows


def strategy_tests(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model: do the strategies need the same rounds to 99 % of their best? Kruskal–Wallis across
    them over the search seeds, the spread of the fewest-to-most median rounds, and a verdict (pure)."""
    out = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        rs = [r for r in rows if r["model"] == model and r["rounds_to_best"] is not None]
        if len(rs) < 2:
            continue
        fast, slow = min(rs, key=lambda r: r["rounds_to_best"]), max(rs, key=lambda r: r["rounds_to_best"])
        eff = stats.effect(slow["rounds_to_best"] - fast["rounds_to_best"], None,
                           [len(r["rounds_to_best_runs"]) for r in rs],
                           stats.kruskal_p([r["rounds_to_best_runs"] for r in rs]), "Kruskal-Wallis across strategies")
        eff["fastest"], eff["slowest"] = fast["strategy"], slow["strategy"]
        eff["verdict"] = stats.verdict(
            f"{model}: rounds to 99 % of best, {fast['strategy']} {fast['rounds_to_best']:g} vs {slow['strategy']} "
            f"{slow['rounds_to_best']:g}; difference", eff, fmt=lambda v: "n/a" if v is None else f"{v:g} rounds",
            what="a difference of this size")
        out[model] = eff
    return out


def run(ctx: StudyContext) -> dict[str, Any]:
    """One search per model × strategy × seed, then the medians (see the module doc)."""
    cfg = ctx.cfg
    rounds, seeds, startup = plan(cfg, {o.split("=", 1)[0] for o in ctx.study_overrides})
    curves: dict[tuple[str, str, int], dict[str, Any]] = {}
    pairs = [(m, st) for m in cfg.study.models for st in cfg.study.strategies]
    for r, (model, strategy) in interleave(pairs, len(seeds)):  # one seed per round, pairs rotated
        part = part_name(model, strategy, seeds[r])
        sweep_dir = ctx.sweep(part, search_overrides(cfg, model, strategy, seeds[r], rounds, startup))
        curves[(model, strategy, seeds[r])] = curve(_trials_of(sweep_dir))
    order = {k: i for i, k in enumerate((m, st, sd) for m, st in pairs for sd in seeds)}
    curves = dict(sorted(curves.items(), key=lambda kv: order[kv[0]]))
    rows = aggregate(curves)
    answered = all(r["final_best"] is not None for r in rows)
    tests = strategy_tests(rows)
    floors = [r["total_cv"] for r in rows if r["total_cv"] is not None]
    summary = {"status": "completed" if answered else "failed", "rounds": rounds, "seeds": seeds,
               "seeds_vary": True, "best_share": BEST_SHARE, "strategies": rows, "paper": PAPER,
               "strategy_tests": tests, "noise_floor": stats.median(floors),
               "searches": [{"part": part_name(*k), "model": k[0], "strategy": k[1], "seed": k[2], **c}
                            for k, c in curves.items()]}
    lines = [f"yarally_tuning: Adam lr, β1, β2, ε, weight decay on {cfg.dataset.name}, {rounds} rounds per search "
             f"of {cfg.max_epochs} epochs each, median over {len(seeds)} search seed(s) (searches interleaved)",
             *answer_lines(summary)]
    return finish(summary, lines, cfg.verbose)


def answer_lines(summary: dict[str, Any]) -> list[str]:
    """The per-model table, the strategy tests, the noise floor and the paper's finding."""
    lines = [f"  {'model':<13}{'strategy':<8}{'best':>7}{'rounds to 99%':>15}{'[95 % interval]':>17}"
             f"{'energy to 99%':>15}{'campaign':>12}"]
    for r in summary["strategies"]:
        rb = "n/a" if r["rounds_to_best"] is None else f"{r['rounds_to_best']:g} of {r['rounds']:g}"
        ci = r.get("rounds_to_best_ci")
        interval = "" if not ci else f"[{ci[0]:g}, {ci[1]:g}]"
        e = "n/a" if r["energy_to_best_j"] is None else f"{r['energy_to_best_j']:.1f} J"
        lines.append(f"  {r['model']:<13}{r['strategy']:<8}{fmt_pct(r['final_best']):>7}{rb:>15}{interval:>17}{e:>15}"
                     f"{r['total_j']:>10.1f} J")
    lines += [f"  {t['verdict']}" for t in (summary.get("strategy_tests") or {}).values()]
    if summary.get("noise_floor") is not None:
        lines.append(f"  noise floor: a search's campaign energy differs by ±{summary['noise_floor'] * 100:.0f} % "
                     "between its seeds (median coefficient of variation)")
    lines.append(f"  paper: {PAPER}")
    return lines


def _curves_from_df(df: Any) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Each search's curve from the report's DataFrame (works on a half-finished study)."""
    out = {}
    for part, g in df[df["part"].astype(str) != ""].groupby("part", sort=False):
        key = parse_part(str(part))
        if key is None:
            continue
        g = g.sort_values("trial") if g["trial"].notna().all() else g
        out[key] = curve([(s, None if a != a else a, None if e != e else e)
                          for s, a, e in zip(g["status"], g["final_accuracy"], g["total_j"])])
    return out


def _figure(curves: dict[tuple[str, str, int], dict[str, Any]]) -> Any:
    """Median best-so-far against round and against cumulative energy, one row of panels per model."""
    from powertrain.report.figures import _plt

    plt = _plt()
    models = sorted(dict.fromkeys(k[0] for k in curves), key=lambda m: (m not in MODELS, MODELS.index(m)
                                                                         if m in MODELS else 0, m))
    fig, axes = plt.subplots(len(models), 2, figsize=(10, 3.3 * len(models)), squeeze=False, sharey="row")
    colours = {s: plt.get_cmap("tab10")(i) for i, s in enumerate(STRATEGIES)}
    # searches that share a seed often share their first rounds: styles keep overlapping lines apart
    styles = {"grid": ("s", "-"), "random": ("o", "--"), "tpe": ("^", "-."), "gp": ("D", ":")}
    for row, model in zip(axes, models):
        for strategy in STRATEGIES:
            cs = [c for (m, s, _), c in curves.items() if (m, s) == (model, strategy)]
            if not cs:
                continue
            n = min(len(c["best"]) for c in cs)
            best = [stats.median([c["best"][i] for c in cs]) for i in range(n)]
            spent = [stats.median([c["energy_j"][i] for c in cs]) for i in range(n)]
            y = [None if b is None else b * 100 for b in best]
            marker, ls = styles[strategy]
            kw = {"where": "post", "marker": marker, "ms": 4, "ls": ls, "lw": 1.6, "alpha": 0.9,
                  "color": colours[strategy], "label": f"{strategy} ({len(cs)})"}
            row[0].step(range(1, n + 1), y, **kw)
            row[1].step(spent, y, **kw)
            if len(cs) > 1:  # the seeds' spread: lowest to highest best-so-far at each round
                lo = [min((c["best"][i] for c in cs if c["best"][i] is not None), default=None) for i in range(n)]
                hi = [max((c["best"][i] for c in cs if c["best"][i] is not None), default=None) for i in range(n)]
                row[0].fill_between(range(1, n + 1), [None if v is None else v * 100 for v in lo],
                                    [None if v is None else v * 100 for v in hi], step="post",
                                    color=colours[strategy], alpha=0.12, lw=0)
        row[0].set_ylabel(f"{model}\nbest accuracy so far (%)")
        if model == models[0]:  # the same four strategies in every row: one legend
            row[0].legend(fontsize=8, loc="lower right", title="strategy (searches)", title_fontsize=8)
    from matplotlib.ticker import MaxNLocator

    for a in axes[:, 0]:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1, 0].set_xlabel("round (trial, in order)")
    axes[-1, 1].set_xlabel("cumulative energy of the search (J)")
    axes[0, 0].set_title("Best-so-far against round (median over seeds; band: lowest to highest)")
    axes[0, 1].set_title("Best-so-far against energy spent (medians)")
    fig.tight_layout()
    return fig


def analyze(df: Any, study: dict[str, Any]) -> list[Section]:
    """Rounds and energy to 99 % of the best per model and strategy, and the progress figure."""
    from powertrain.report import Section, Table

    curves = _curves_from_df(df)
    if not curves:
        return [Section("Search strategies (Yarally et al. 2023)", "No search has finished yet.")]
    rows = aggregate(curves)

    def interval(ci: Any) -> str:
        return "-" if not ci else f"{ci[0]:.3g} to {ci[1]:.3g}"

    table = Table(["model", "strategy", "searches", "rounds", "best accuracy (%)", "rounds to 99 % of best",
                   "95 % interval", "range", "energy to 99 % of best (J)", "95 % interval (J)", "campaign energy (J)"],
                  [[r["model"], r["strategy"], r["repeats"], r["rounds"],
                    None if r["final_best"] is None else r["final_best"] * 100, r["rounds_to_best"],
                    interval(r["rounds_to_best_ci"]),
                    None if r["rounds_to_best_range"] is None else "–".join(map(str, r["rounds_to_best_range"])),
                    r["energy_to_best_j"], interval(r["energy_to_best_ci"]), r["total_j"]] for r in rows],
                  "Medians over the search seeds with 95 % bootstrap intervals. 'Rounds to 99 % of best': the first "
                  "round whose best-so-far accuracy is within 1 % of the search's own final best; energy until then "
                  "and for every round.")
    tests = strategy_tests(rows)
    floors = [r["total_cv"] for r in rows if r["total_cv"] is not None]
    text = "\n".join([*(study.get("summary") or {}).get("report", [])[:1],
                      *answer_lines({"strategies": [], "strategy_tests": tests,
                                     "noise_floor": stats.median(floors)})[1:-1]])
    return [Section("Search strategies (Yarally et al. 2023)", f"{text}\n{PAPER}.".strip(), [table],
                    [("tuning_progress", _figure(curves))])]
