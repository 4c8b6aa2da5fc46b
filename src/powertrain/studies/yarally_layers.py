"""Layer types (Yarally et al. 2023, Table II): what conv blocks, linear layers and ReLU cost in energy.

SimpleCNN is varied one factor at a time from the preset's model: conv blocks in ``study.conv_blocks``,
linear layers in ``study.linear_layers``, ReLU on and off, each variant trained for the same fixed
``max_epochs``, as in the paper. The smoke default runs only the variants the paper's three headline
changes need (the default 2 conv / 3 linear / ReLU on, conv_1, conv_4, linear_7, relu_off);
``study.scale=paper`` runs every level (1-4 conv blocks, 3-7 linear layers) unless they are given.

Every variant runs ``study.repeats`` times (smoke 5, paper 10), all in one in-process sweep, interleaved
round by round (``powertrain.launch.repeats``). The seed stays fixed: the repeats are identical runs, so
their spread is the machine's run-to-run noise, and what differs between variants is their compute.

The answer: each variant's median energy with a 95 % interval and the % change from the default; the
paper's three headline changes with interval, n, Mann–Whitney p and a verdict; the noise floor (the
default's run-to-run spread); for a change not distinguishable from noise, about how many repeats would
resolve one of the paper's size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from powertrain.config import RunConfig, StudyConfig
from powertrain.config.checks import Check, at_least, each
from powertrain.config.errors import ConfigError
from powertrain.studies._common import finish, fmt_pct, repeats, variant_results

if TYPE_CHECKING:
    from powertrain.report import Section
    from powertrain.studies import StudyContext

NAME = "yarally_layers"

# Yarally et al. 2023, Table II: energy change of the whole training (FashionMNIST / CIFAR-10)
PAPER = {"conv 1→4": "+95 % / +66 %", "linear 3→7": "+5 % / +7 %", "ReLU on vs off": "+3 %"}
PAPER_SIZE = {"conv 1→4": 0.95, "linear 3→7": 0.05, "ReLU on vs off": 0.03}  # FashionMNIST, for the power line
PAPER_CONV_BLOCKS = (1, 2, 3, 4)
PAPER_LINEAR_LAYERS = (3, 4, 5, 6, 7)
SMOKE_REPEATS = 5  # Mann–Whitney U at n=5 can reach p=0.008 (n=3 never goes below p=0.1)
PAPER_REPEATS = 10


@dataclass
class Config(StudyConfig):
    conv_blocks: list[int] = field(default_factory=lambda: [1, 4])  # the levels conv 1→4 needs
    linear_layers: list[int] = field(default_factory=lambda: [3, 7])


CHECKS: dict[str, Check] = {"study.conv_blocks": each(at_least(1)), "study.linear_layers": each(at_least(1))}


def check(cfg: RunConfig) -> None:
    """The study varies SimpleCNN's layers: it needs model=simple_cnn."""
    if cfg.model.family != "simple_cnn":
        raise ConfigError("model", cfg.model.family, "simple_cnn (the study varies its conv blocks, linear "
                          "layers and ReLU)")


def levels(cfg: RunConfig, given: Any = frozenset()) -> tuple[list[int], list[int]]:
    """Conv blocks and linear layers to try: the preset's, or at ``study.scale=paper`` every level of the
    paper for each not ``given`` on the command line."""
    s, paper = cfg.study, cfg.study.scale == "paper"
    conv = list(PAPER_CONV_BLOCKS) if paper and "study.conv_blocks" not in given else list(s.conv_blocks)
    linear = list(PAPER_LINEAR_LAYERS) if paper and "study.linear_layers" not in given else list(s.linear_layers)
    return conv, linear


def variants(cfg: RunConfig, given: Any = frozenset()) -> list[tuple[str, list[str], dict[str, Any]]]:
    """(variant name, overrides, model values) of the default and of each one-factor change from it."""
    m = cfg.model
    conv, linear = levels(cfg, given)
    base = {"conv_blocks": m.conv_blocks, "linear_layers": m.linear_layers, "relu": m.relu}
    out = [("default", [], dict(base))]
    for c in conv:
        if c != m.conv_blocks:
            out.append((f"conv_{c}", [f"model.conv_blocks={c}"], {**base, "conv_blocks": c}))
    for n in linear:
        if n != m.linear_layers:
            out.append((f"linear_{n}", [f"model.linear_layers={n}"], {**base, "linear_layers": n}))
    relu = not m.relu
    out.append((f"relu_{'on' if relu else 'off'}", [f"model.relu={str(relu).lower()}"], {**base, "relu": relu}))
    return out


def _change(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """Relative change from ``a`` to ``b`` (None when either is unknown)."""
    return None if a is None or b is None or a <= 0 else b / a - 1


def headline_pairs(rows: list[dict[str, Any]], cfg_model: dict[str, Any],
                   s: Any = None) -> dict[str, tuple[Optional[dict[str, Any]], Optional[dict[str, Any]]]]:
    """(from, to) variant rows of the paper's three changes: fewest → most conv blocks and linear layers
    (``s``'s levels, else those present), ReLU off → on; the other factors at the default."""
    def row(**want: Any) -> Optional[dict[str, Any]]:
        return next((r for r in rows if all(r.get(k) == v for k, v in {**cfg_model, **want}.items())), None)

    def span(key: str, given: Any) -> list[Any]:
        others = {k: v for k, v in cfg_model.items() if k != key}
        found = [r[key] for r in rows if r.get(key) is not None and all(r.get(k) == v for k, v in others.items())]
        return [min(given), max(given)] if given else [min(found), max(found)] if found else [None, None]

    conv = span("conv_blocks", getattr(s, "conv_blocks", None))
    linear = span("linear_layers", getattr(s, "linear_layers", None))
    return {"conv 1→4": (row(conv_blocks=conv[0]), row(conv_blocks=conv[1])),
            "linear 3→7": (row(linear_layers=linear[0]), row(linear_layers=linear[1])),
            "ReLU on vs off": (row(relu=False), row(relu=True))}


def headline_changes(rows: list[dict[str, Any]], cfg_model: dict[str, Any], s: Any = None) -> dict[str, Optional[float]]:
    """Our versions of the paper's three changes, from the variants' (median) energies."""
    return {k: _change(*(None if r is None else r["energy_j"] for r in pair))
            for k, pair in headline_pairs(rows, cfg_model, s).items()}


def run_row(result: dict[str, Any], variant: str) -> dict[str, Any]:
    """What the study keeps of one run: its variant, model factors, status, energy, accuracy, layers."""
    model = (result.get("config") or {}).get("model") or {}
    energy = result.get("energy") or {}
    return {"variant": variant, "repeat": (result.get("config") or {}).get("repeat", 0),
            "conv_blocks": model.get("conv_blocks"), "linear_layers": model.get("linear_layers"),
            "relu": model.get("relu"), "status": result.get("status"), "energy_j": energy.get("total_j"),
            "train_s": (result.get("time") or {}).get("train_s"),
            "accuracy": (result.get("metrics") or {}).get("final_accuracy"),
            "layers_j": (energy.get("layer_attribution") or {}).get("energy_j")}


def answer(runs: list[dict[str, Any]], order: Optional[list[str]] = None) -> dict[str, Any]:
    """Per-variant medians with intervals, the three headline effects with tests and verdicts, and the
    noise floor, from every run's ``run_row`` (pure: the driver and the report both call it)."""
    from powertrain.report import stats

    names = list(dict.fromkeys([*(order or []), *(r["variant"] for r in runs)]))
    rows = []
    for name in names:
        rs = [r for r in runs if r["variant"] == name]
        if not rs:
            continue
        e = [r["energy_j"] for r in rs]
        types = sorted({t for r in rs for t in (r.get("layers_j") or {})})
        rows.append({"variant": name, **{k: rs[0][k] for k in ("conv_blocks", "linear_layers", "relu")},
                     "status": "completed" if all(r["status"] in ("completed", "target_reached") for r in rs)
                     else ", ".join(sorted({str(r["status"]) for r in rs})), "runs": len(rs),
                     "energy_j": stats.median(e), "energy_ci": stats.median_ci(e)["ci"],
                     "energy_runs": e, "energy_cv": stats.noise_floor(e),
                     "train_s": stats.median([r["train_s"] for r in rs]),
                     "accuracy": stats.median([r["accuracy"] for r in rs]),
                     "layers_j": {t: stats.median([(r.get("layers_j") or {}).get(t) for r in rs]) for t in types}
                     or None})
    default = next((r for r in rows if r["variant"] == "default"), rows[0] if rows else None)
    floor = default["energy_cv"] if default else None
    for r in rows:
        r["energy_change"] = _change(default["energy_j"], r["energy_j"]) if default else None
    model = {k: default[k] for k in ("conv_blocks", "linear_layers", "relu")} if default else {}
    effects, changes = {}, {}
    for name, (a, b) in (headline_pairs(rows, model) if rows else {}).items():
        if a is None or b is None:
            effects[name], changes[name] = None, None
            continue
        eff = stats.change(a["energy_runs"], b["energy_runs"], floor=floor, expected=PAPER_SIZE[name])
        eff["verdict"] = stats.verdict(name, eff, what=f"the paper's {PAPER_SIZE[name] * 100:+.0f} %")
        eff["from"], eff["to"] = a["variant"], b["variant"]
        effects[name], changes[name] = eff, eff["estimate"]
    return {"variants": rows, "changes": changes, "effects": effects, "noise_floor": floor,
            "noise_floor_n": default["runs"] if default else 0}


def run(ctx: StudyContext) -> dict[str, Any]:
    """Every variant ``study.repeats`` times in one interleaved sweep, then the answer (see the module doc)."""
    cfg = ctx.cfg
    vs = variants(cfg, {o.split("=", 1)[0] for o in ctx.study_overrides})
    n = repeats(cfg, SMOKE_REPEATS, PAPER_REPEATS)
    sweep_dir = ctx.sweep("variants", [], variants=[(name, ov) for name, ov, _ in vs], repeats=n)
    by_variant = variant_results(sweep_dir)
    runs = [run_row(r, name) for name, _, _ in vs for r in by_variant.get(name, [])]
    ans = answer(runs, [name for name, _, _ in vs])
    ok = len(runs) == n * len(vs) and all(r["status"] in ("completed", "target_reached") for r in runs)
    summary = {"status": "completed" if ok else "failed", "sweep_dir": str(sweep_dir), "repeats": n,
               "seed": cfg.seed, "seeds_vary": False, "paper": PAPER, **ans}
    m = cfg.model
    head = (f"yarally_layers: SimpleCNN on {cfg.dataset.name}, {cfg.max_epochs} epochs per variant, {n} repeats "
            f"each (seed {cfg.seed} fixed, variants interleaved; default: {m.conv_blocks} conv blocks, "
            f"{m.linear_layers} linear layers, ReLU {'on' if m.relu else 'off'})")
    return finish(summary, [head, *answer_lines(summary)], cfg.verbose)


def answer_lines(s: dict[str, Any]) -> list[str]:
    """The answer's lines below the headline: noise floor, every variant, the three changes."""
    from powertrain.report.stats import fmt_pct_change

    floor = s.get("noise_floor")
    lines = [f"  noise floor: identical runs of the default differ by ±{floor * 100:.1f} % (coefficient of "
             f"variation, n={s.get('noise_floor_n')})" if floor is not None else
             "  noise floor: unknown (the default ran fewer than 2 times)"]
    for r in s["variants"]:
        ci = "" if not r.get("energy_ci") else f" [{r['energy_ci'][0]:.1f}, {r['energy_ci'][1]:.1f}]"
        e = "n/a" if r["energy_j"] is None else f"{r['energy_j']:.1f} J{ci}"
        ch = "" if r["energy_change"] is None else f" ({fmt_pct_change(r['energy_change'])} vs default)"
        lines.append(f"  {r['variant']:<10} {e}{ch}, accuracy {fmt_pct(r['accuracy'])}, n={r.get('runs', 1)}")
    for k, eff in s["effects"].items():
        lines.append(f"  {eff['verdict'] if eff else f'{k}: n/a (a variant is missing)'}; paper {PAPER[k]}")
    return lines


def _runs_from_df(df: Any) -> list[dict[str, Any]]:
    """``run_row`` of every run with a result (a study from before variant sweeps: its part is the variant)."""
    out = []
    for _, r in df.iterrows():
        res = r.get("result")
        if isinstance(res, dict):
            v = r.get("variant") if isinstance(r.get("variant"), str) else None
            out.append(run_row(res, v or str(r.get("part"))))
    return out


def analyze(df: Any, study: dict[str, Any]) -> list[Section]:
    """The headline changes beside the paper's, every variant's energy with its spread, the figures."""
    from powertrain.report import Section, Table, stats

    summary = study.get("summary") or {}
    ans = answer(_runs_from_df(df), [v["variant"] for v in summary.get("variants") or []])
    rows = ans["variants"]
    heads = Table(["change", "here (median)", "95 % interval", "n", "p (Mann-Whitney U)", "verdict",
                   "Yarally et al. 2023 (FashionMNIST / CIFAR-10)"],
                  [[k, stats.fmt_pct_change(e["estimate"]) if e else "n/a",
                    "-" if not e or not e["ci"] else " to ".join(stats.fmt_pct_change(v) for v in e["ci"]),
                    "-" if not e else "/".join(map(str, e["n"])), None if not e else e["p"],
                    "variant missing" if not e else "significant" if e["significant"] else
                    "not distinguishable from noise", v] for k, v in PAPER.items() for e in [ans["effects"].get(k)]],
                  "Energy change of the whole training: median of the repeats, 95 % bootstrap interval, "
                  "two-sided Mann-Whitney U test of no change.")
    per = Table(["variant", "conv blocks", "linear layers", "ReLU", "runs", "median energy (J)", "95 % interval (J)",
                 "spread (CV %)", "change vs default", "median final accuracy", "status"],
                [[r["variant"], r["conv_blocks"], r["linear_layers"], r["relu"], r["runs"], r["energy_j"],
                  "-" if not r["energy_ci"] else f"{r['energy_ci'][0]:.3g} to {r['energy_ci'][1]:.3g}",
                  None if r["energy_cv"] is None else r["energy_cv"] * 100,
                  stats.fmt_pct_change(r["energy_change"]), r["accuracy"], r["status"]] for r in rows],
                "One factor at a time from the default; every variant trains the same number of epochs; "
                "spread: coefficient of variation of its repeats.")
    text = "\n".join([*(summary.get("report") or [])[:1], *answer_lines(ans)]) if rows else \
        "No variant has finished yet."
    figs = [("variant_energy", _energy_figure(rows))] if rows else []
    out = [Section("Layer types (Yarally et al. 2023, Table II)", text, [heads, per], figs)]
    layers = [(r["variant"], r["layers_j"], [sum((x or {}).values()) for x in _layer_runs(df, r["variant"])])
              for r in rows if r.get("layers_j")]
    if layers:
        out.append(_layer_section(layers))
    return out


def _layer_runs(df: Any, variant: str) -> list[dict[str, float]]:
    return [r["layers_j"] for r in _runs_from_df(df) if r["variant"] == variant and r.get("layers_j")]


def _energy_figure(rows: list[dict[str, Any]]) -> Any:
    """Every repeat's energy per variant (points), its median (bar) and 95 % interval (whiskers)."""
    from powertrain.report.figures import _log_if_wide, _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(rows) + 2.5), 4.4))
    x = range(len(rows))
    med = [r["energy_j"] or 0.0 for r in rows]
    ax.bar(x, med, color="#9ecae1", edgecolor="#3182bd", lw=0.8, label="median of the repeats")
    for i, r in enumerate(rows):
        pts = [v for v in r["energy_runs"] if v is not None]
        jitter = [(j - (len(pts) - 1) / 2) * 0.06 for j in range(len(pts))]
        ax.scatter([i + d for d in jitter], pts, s=16, color="#08306b", zorder=3,
                   label="one repeat" if i == 0 else None)
        if r["energy_ci"]:
            lo, hi = r["energy_ci"]
            ax.errorbar(i, r["energy_j"], yerr=[[r["energy_j"] - lo], [hi - r["energy_j"]]], color="#d95f02",
                        capsize=5, lw=1.5, zorder=4, label="95 % interval of the median" if i == 0 else None)
    ax.set_xticks(list(x), [r["variant"] for r in rows], rotation=30, ha="right")
    _log_if_wide(ax, [v for r in rows for v in r["energy_runs"] if v], "y")  # an outlier run would flatten the rest
    ax.set_ylabel("energy per run (J)")
    ax.set_title("Energy per variant: every repeat, median and 95 % interval")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


def _layer_section(layers: list[tuple[str, dict[str, float], list[float]]]) -> Section:
    """Why a variant costs what it does: its train energy split by layer type (medians over the repeats),
    as a table and a figure with every repeat's attributed total."""
    from powertrain.energy.layers import ASSUMPTION, TYPES
    from powertrain.report import Section, Table
    from powertrain.report.figures import _plt

    table = Table(["variant", *(f"{t} (J)" for t in TYPES), *(f"{t} (%)" for t in TYPES[:2])],
                  [[v, *(e.get(t) or 0.0 for t in TYPES),
                    *(100 * (e.get(t) or 0.0) / (sum(x or 0.0 for x in e.values()) or 1) for t in TYPES[:2])]
                   for v, e, _ in layers],
                  "Train energy per layer type, attributed by profiled operator time (median over the repeats).")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(layers) + 2.5), 4.6))
    bottom = [0.0] * len(layers)
    colours = plt.get_cmap("Set2")
    for i, t in enumerate(TYPES):
        vals = [e.get(t) or 0.0 for _, e, _ in layers]
        ax.bar(range(len(layers)), vals, bottom=bottom, color=colours(i), edgecolor="#444444", lw=0.4,
               hatch="///", label=t)
        bottom = [b + v for b, v in zip(bottom, vals)]
    labelled = False
    for i, (_, _, totals) in enumerate(layers):  # the spread: each repeat's attributed total, and its range
        if len(totals) > 1:
            ax.vlines(i, min(totals), max(totals), color="black", lw=1, zorder=3)
            ax.scatter([i] * len(totals), totals, s=14, color="black", zorder=4,
                       label=None if labelled else "total of one repeat")
            labelled = True
    ax.set_xticks(range(len(layers)), [v for v, _, _ in layers], rotation=30, ha="right")
    ax.set_ylabel("train energy (J), attributed")
    ax.set_title("Where the training energy went, by layer type (medians)\n(hatched: attributed by profiled "
                 "time, not measured; dots: each repeat's total)")
    ax.legend(fontsize=8, title="layer type", title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    text = ("Each variant's train energy split by the share of operator time each layer type took over a few "
            f"profiled steps after training: {ASSUMPTION}.")
    return Section("Energy by layer type (attribution)", text, [table], [("layer_energy", fig)])
