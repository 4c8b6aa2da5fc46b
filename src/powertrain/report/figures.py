"""The report's figures (matplotlib, Agg backend, nothing fetched). Each returns a Figure or None when the
runs do not allow it (e.g. no two swept factors for a heatmap); the caller names and saves them."""

from __future__ import annotations

from typing import Any, Optional

from powertrain.report.analysis import pareto_mask, run_labels, search_curves
from powertrain.report.load import factor_name, factors

STATUS_STYLE = {  # colour and marker per status, so a failed run is visible at a glance
    "target_reached": ("#1b9e77", "o"), "completed": ("#7570b3", "o"), "budget_exhausted": ("#e6ab02", "s"),
    "diverged": ("#d95f02", "X"), "failed": ("#e7298a", "X"), "preempted": ("#666666", "v"),
    "pruned": ("#a6761d", "v"), "interrupted": ("#666666", "^"), "lost": ("#b2182b", "X"),
}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)  # headless, and no GUI event loop in a sweep's process
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.grid": True, "grid.alpha": 0.3,
                         "svg.fonttype": "path", "figure.dpi": 110})
    return plt


def _log_if_wide(ax: Any, values: Any, axis: str = "x") -> None:
    vals = [v for v in values if v and v > 0]
    if vals and max(vals) / min(vals) > 20:  # energy spans decades: a linear axis hides the cheap runs
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        _plain_ticks(ax.xaxis if axis == "x" else ax.yaxis)


def _plain_ticks(axis: Any) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator

    # "20", "50", "100 J" reads faster than 2x10^1; minor labels only at 2 and 5 to avoid clutter
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def hue_factor(df: Any) -> Optional[str]:
    """A factor worth colouring many runs by: the first swept factor with 2-8 levels that are not numbers
    (e.g. the model of a study that compares models), else the numeric one with the fewest levels, 2-8
    (e.g. the learning rate of an lr x batch grid). None when there is none."""
    few = [(k, df[k].dropna().unique()) for k in factors(df)]
    few = [(k, levels) for k, levels in few if 2 <= len(levels) <= 8]
    for k, levels in few:
        if not all(_is_num(v) for v in levels):
            return k
    return min(few, key=lambda kl: len(kl[1]))[0] if few else None


def _is_num(v: Any) -> bool:
    try:
        float(v)
        return not isinstance(v, bool)
    except (TypeError, ValueError):
        return False


def _hue_colours(plt: Any, d: Any, hue: str) -> dict[Any, Any]:
    levels = list(d[hue].dropna().unique())
    if all(_is_num(v) for v in levels):  # numbers: low to high along one colour scale, so order reads
        levels.sort(key=float)
        cmap = plt.get_cmap("viridis")
        return {v: cmap(0.85 * i / max(len(levels) - 1, 1)) for i, v in enumerate(levels)}
    return {v: plt.get_cmap("tab10")(i) for i, v in enumerate(sorted(levels, key=str))}


def accuracy_vs_energy(df: Any) -> Optional[Any]:
    """Final accuracy against total energy for every run with both, coloured by status (or, for many runs
    of several models, by the model with the status as the marker), Pareto front drawn."""
    d = df[df["final_accuracy"].notna() & df["total_j"].notna()]
    if d.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.6))
    hue = hue_factor(d) if len(d) > 12 else None
    colours = _hue_colours(plt, d, hue) if hue else {}
    for status, g in d.groupby("status"):
        colour, marker = STATUS_STYLE.get(status, ("#333333", "o"))
        if hue:  # colour says the level, the marker the status (legend: levels, then statuses in grey)
            marker = "^" if status == "target_reached" else marker
            for level, h in g.groupby(hue):
                ax.scatter(h["total_j"], h["final_accuracy"] * 100, color=colours[level], marker=marker, s=36,
                           alpha=0.75, edgecolors="white", linewidths=0.5)
            ax.scatter([], [], color="#888888", marker=marker, s=36, label=f"{status} ({len(g)})")
            continue
        ax.scatter(g["total_j"], g["final_accuracy"] * 100, c=colour, marker=marker, s=42, alpha=0.85,
                   label=f"{status} ({len(g)})", edgecolors="white", linewidths=0.5)
    for level, colour in colours.items():
        ax.scatter([], [], color=colour, marker="s", s=36, label=f"{factor_name(hue)} = {level}")
    front = d[pareto_mask(d)].sort_values("total_j")
    if len(front):
        ax.step(front["total_j"], front["final_accuracy"] * 100, where="post", color="black", lw=1.2)
        ax.scatter(front["total_j"], front["final_accuracy"] * 100, s=130, facecolors="none",
                   edgecolors="black", lw=1.2, label=f"Pareto front, max accuracy / min energy ({len(front)})")
    if len(d) <= 12:  # few runs: name them, so the front can be read without the table
        keys = factors(df, include_seed=True)
        for (_, r), text in zip(d.iterrows(), run_labels(d, keys)):
            ax.annotate(text, (r["total_j"], r["final_accuracy"] * 100), fontsize=7,
                        xytext=(6, 4), textcoords="offset points")
    _log_if_wide(ax, d["total_j"])
    ax.set_xlabel("total energy per run (J)")
    name = metric_name(d)
    ax.set_ylabel("final accuracy (%)" if name == "accuracy" else f"final {name} × 100 (task.metric)")
    ax.set_title(f"{name.capitalize()} against energy, every run")
    if len(d) > 12:  # a cloud of points: the legend beside the axes, where it hides none of them
        _side_legend(fig, ax, 8)
    else:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _side_legend(fig: Any, ax: Any, fontsize: int, widen: bool = True) -> None:
    """The legend beside the axes, top-aligned, where it hides no data; ``widen`` makes the canvas wide
    enough for it (9.5 in) so the axes keep their width."""
    if widen:
        fig.set_size_inches(9.5, 4.6)
    ax.legend(fontsize=fontsize, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _targets(ax: Any, df: Any) -> None:
    """One dashed line per target accuracy of the runs."""
    for t in sorted({t for t in df["target_accuracy"].dropna()}):
        ax.axhline(t * 100, color="crimson", ls="--", lw=1, label=f"target {t * 100:g} %")


def _epoch_ylabel(ax: Any, name: str) -> None:
    """The y label of a convergence figure: accuracy in %, or the user's task.metric × 100."""
    ax.set_ylabel("accuracy after each epoch (%)" if name == "accuracy" else f"{name} × 100 after each epoch")


def metric_name(df: Any) -> str:
    """What the runs' "accuracy" is: ``accuracy``, or the ``task.metric`` of a step of the user's own
    (``metrics.metric`` in result.json; several joined with a slash)."""
    names = {((r.get("metrics") or {}).get("metric") or "accuracy") for r in df.get("result", []) if isinstance(r, dict)}
    return "/".join(sorted(names)) if names else "accuracy"


def convergence(df: Any) -> Optional[Any]:
    """Accuracy against cumulative energy per run (from the per-epoch history), with the target drawn."""
    d = df[df["history"].map(len) > 0]
    if d.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.6))
    groups = _repeat_groups(d, factors(df))
    if groups is not None:  # repeats of each setting: one median curve per setting, its spread as a band
        return _convergence_bands(plt, fig, ax, df, groups, metric_name(d))
    keys = factors(df, include_seed=True)
    cmap = plt.get_cmap("tab10")
    # many runs: one colour per level of a factor with few levels (e.g. model, lr) if there is one, else grey
    hue = hue_factor(d) if len(d) > 12 else None
    colours = _hue_colours(plt, d, hue) if hue else {}
    all_e = []
    texts = run_labels(d, keys)
    for i, (_, r) in enumerate(d.iterrows()):
        e = [h.get("energy_j") for h in r["history"]]
        a = [None if h.get("accuracy") is None else h["accuracy"] * 100 for h in r["history"]]
        all_e += [v for v in e if v]
        if len(d) <= 12:
            ax.plot(e, a, marker=".", lw=1.2, color=cmap(i % 10), label=texts[i])
            continue
        ax.plot(e, a, marker=".", ms=3, lw=0.8, alpha=0.5, color=colours.get(r[hue] if hue else None, "#555555"))
    for level, colour in colours.items():  # one legend entry per level, in the levels' order
        ax.plot([], [], color=colour, lw=1.5, label=f"{factor_name(hue)} = {level}")
    _targets(ax, df)
    _log_if_wide(ax, all_e)
    ax.set_xlabel("cumulative energy (J)")
    name = metric_name(d)
    _epoch_ylabel(ax, name)
    ax.set_title(f"Convergence: {name} against energy spent ({len(d)} runs)")
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=7, loc="best" if hue else "lower right", ncol=2 if 6 < len(d) <= 12 else 1)
    fig.tight_layout()
    return fig


def _repeat_groups(d: Any, keys: list[str]) -> Optional[dict[str, Any]]:
    """Runs by setting (label of the factors: seeds and repeats pooled), when some setting ran more than
    once and there are few enough settings (<= 10) for one curve each; else None."""
    labels = run_labels(d, keys) if keys else [str(p) or "all runs" for p in d["part"]]
    if "variant" in d:  # a study names its variants (finetune, scratch, ...): that is the setting
        labels = [v if isinstance(v, str) else label for v, label in zip(d["variant"], labels)]
    groups: dict[str, Any] = {}
    for label, (_, r) in zip(labels, d.iterrows()):
        groups.setdefault(label, []).append(r["history"])
    if len(groups) > 10 or max(len(g) for g in groups.values()) < 2:
        return None
    return groups


def _convergence_bands(plt: Any, fig: Any, ax: Any, df: Any, groups: dict[str, Any], name: str) -> Any:
    """Per setting, epoch by epoch over its repeats: median accuracy against median cumulative energy, a band
    from the lowest to the highest accuracy and horizontal bars from the lowest to the highest energy."""
    import numpy as np

    cmap = plt.get_cmap("tab10")
    all_e: list[float] = []
    for i, (label, hists) in enumerate(groups.items()):
        epochs = max(len(h) for h in hists)
        e_med, a_med, a_lo, a_hi, e_lo, e_hi = [], [], [], [], [], []
        for k in range(epochs):  # the runs still going at epoch k (one that stopped at its target is done)
            e = [h[k].get("energy_j") for h in hists if len(h) > k and h[k].get("energy_j") is not None]
            a = [h[k]["accuracy"] * 100 for h in hists if len(h) > k and h[k].get("accuracy") is not None]
            if not e or not a:
                continue
            e_med.append(float(np.median(e)))
            a_med.append(float(np.median(a)))
            a_lo.append(min(a))
            a_hi.append(max(a))
            e_lo.append(e_med[-1] - min(e))
            e_hi.append(max(e) - e_med[-1])
            all_e += e
        colour = cmap(i % 10)
        ax.plot(e_med, a_med, marker=".", lw=1.3, color=colour, label=f"{label} (n={len(hists)})")
        ax.fill_between(e_med, a_lo, a_hi, color=colour, alpha=0.18, lw=0)
        ax.errorbar(e_med, a_med, xerr=[e_lo, e_hi], fmt="none", ecolor=colour, alpha=0.5, lw=0.8)
    _targets(ax, df)
    _log_if_wide(ax, all_e)
    ax.set_xlabel("cumulative energy (J), median of the repeats")
    _epoch_ylabel(ax, name)  # a task.metric of the user's is no accuracy
    ax.set_title(f"Convergence: median of the repeats per setting ({sum(map(len, groups.values()))} runs)\n"
                 "band: lowest to highest accuracy; bars: lowest to highest energy")
    if len(groups) > 4:  # many curves: the legend beside the axes, where it hides none of them
        _side_legend(fig, ax, 7)
    else:
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def heatmap_pair(df: Any) -> Optional[tuple[str, str]]:
    """The two swept factors with the most levels (the heatmap's axes), or None if fewer than two."""
    keys = [k for k in factors(df) if df[k].astype(str).nunique() > 1]
    if len(keys) < 2:
        return None
    keys.sort(key=lambda k: -df[k].astype(str).nunique())
    return keys[0], keys[1]


def energy_heatmap(df: Any) -> Optional[Any]:
    """Median energy-to-target over two swept factors (others and seeds pooled); cells that never reached
    the target are hatched grey."""
    pair = heatmap_pair(df)
    if pair is None or df["target_accuracy"].isna().all():  # no target: nothing to reach, no map to draw
        return None
    import numpy as np
    from matplotlib.colors import LogNorm

    plt = _plt()
    y, x = pair
    xs, ys = sorted(df[x].dropna().unique(), key=_sortable), sorted(df[y].dropna().unique(), key=_sortable)
    grid = np.full((len(ys), len(xs)), np.nan)
    # a cell nobody ran is "no run", and one whose runs had no target (a study's pretraining) "no target":
    # neither is "not reached"
    blank = np.full((len(ys), len(xs)), "no run", dtype=object)
    spread = np.full((len(ys), len(xs)), "", dtype=object)  # repeats: their range and how many reached
    for (yv, xv), g in df.groupby([y, x]):
        blank[ys.index(yv), xs.index(xv)] = None if g["target_accuracy"].notna().any() else "no target"
        hit = g["energy_to_target_j"].dropna()
        if len(hit):
            grid[ys.index(yv), xs.index(xv)] = hit.median()
        if len(g) > 1:
            rng = f"{_j(hit.min())}–{_j(hit.max())} J\n" if len(hit) > 1 else ""
            spread[ys.index(yv), xs.index(xv)] = f"\n{rng}{len(hit)}/{len(g)} reached"
    fig, ax = plt.subplots(figsize=(1.2 * len(xs) + 3, 0.8 * len(ys) + 2.4))
    ax.grid(False)
    vals = grid[~np.isnan(grid)]
    norm = LogNorm(vals.min(), vals.max()) if len(vals) and vals.min() > 0 and vals.max() / vals.min() > 5 else None
    ax.add_patch(plt.Rectangle((-0.5, -0.5), len(xs), len(ys), facecolor="#dddddd", hatch="//",
                               edgecolor="#999999", lw=0, zorder=0))
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="magma_r", norm=norm, aspect="auto", zorder=1)
    for i in range(len(ys)):
        for j in range(len(xs)):
            v = grid[i, j]
            if blank[i, j] is not None:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="white", lw=0, zorder=2))
                ax.text(j, i, blank[i, j], ha="center", va="center", fontsize=8, color="#777777", zorder=3)
                continue
            ax.text(j, i, ("not\nreached" if np.isnan(v) else f"{_j(v)} J") + spread[i, j], ha="center", va="center",
                    fontsize=8 if not spread[i, j] else 7,
                    color="black" if np.isnan(v) or (norm or plt.Normalize(vals.min(), vals.max()))(v) < 0.6
                    else "white")
    ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_yticks(range(len(ys)), [str(v) for v in ys])
    ax.set_xlabel(factor_name(x))
    ax.set_ylabel(factor_name(y))
    repeated = any(spread.flat)
    note = "\nbelow each median: min–max of the runs" if repeated else ""  # its own line: narrow grids fit
    ax.set_title(f"Energy to target (median over seeds and other factors){note}\n{factor_name(y)} x {factor_name(x)}")
    bar = fig.colorbar(im, ax=ax, label="energy to target (J)")
    if norm is not None:
        _plain_ticks(bar.ax.yaxis)
    fig.tight_layout()
    return fig


def _j(v: float) -> str:
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


def _sortable(v: Any) -> tuple[int, Any]:
    return (0, v) if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, str(v))


def search_progress(df: Any) -> Optional[Any]:
    """Best-so-far accuracy against round and against cumulative energy, one line per search (up to
    8 searches; more would be unreadable: a study of many searches draws its own medians)."""
    curves = search_curves(df)
    if not curves or len(curves) > 8:
        return None
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for name, c in curves.items():
        best = [None if b != b else b * 100 for b in c["best"]]
        line = a1.step(c["round"], best, where="post", label=name, marker=".")[0]
        a2.step(c["energy_j"], best, where="post", label=name, marker=".", color=line.get_color())
    from matplotlib.ticker import MaxNLocator

    a1.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole trials
    a1.set_xlabel("round (trial, in order)")
    a2.set_xlabel("cumulative energy of the search (J)")
    a1.set_ylabel("best accuracy so far (%)")
    a1.set_title("Best-so-far against round")
    a2.set_title("Best-so-far against energy spent")
    a1.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def energy_components(df: Any) -> Optional[Any]:
    """Energy per run stacked by component: measured parts solid, estimated parts hatched."""
    d = df[df["result"].map(lambda r: isinstance(r, dict) and bool((r.get("energy") or {}).get("components")))]
    if d.empty:
        return None
    plt = _plt()
    keys = factors(df, include_seed=True)
    names = sorted({c["name"] for r in d["result"] for c in r["energy"]["components"]})
    colours = {n: plt.get_cmap("Set2")(i % 8) for i, n in enumerate(names)}
    # +2 in for the legend beside the axes
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(d) + 3) + 2, 4.8))
    bottom = [0.0] * len(d)
    for n in names:
        for measured in (True, False):
            vals = []
            for r in d["result"]:
                c = next((c for c in r["energy"]["components"] if c["name"] == n), None)
                total = float(c.get("energy_j") or 0.0) if c else 0.0
                part = float(c.get("measured_j", total if c.get("measured") else 0.0) or 0.0) if c else 0.0
                vals.append(part if measured else total - part)
            if any(vals):
                ax.bar(range(len(d)), vals, bottom=bottom, color=colours[n], edgecolor="#444444", lw=0.4,
                       hatch=None if measured else "///", label=f"{n} ({'measured' if measured else 'estimated'})")
                bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(d)), run_labels(d, keys), rotation=60, ha="right", fontsize=7)
    # linear on purpose: on a log axis stacked shares would look wrong; the total is written on each bar
    for i, b in enumerate(bottom):
        ax.annotate(f"{b:.0f}" if b >= 100 else f"{b:.3g}", (i, b), ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                    textcoords="offset points")
    ax.margins(y=0.08)  # room for the totals above the bars
    ax.set_ylabel("energy per run (J)")
    ax.set_title("Energy per component\nsolid = measured, hatched = estimated")
    # beside the axes: inside, it sat on the totals written above the tallest bars
    _side_legend(fig, ax, 8, widen=False)
    fig.tight_layout()
    return fig


def all_figures(df: Any) -> list[tuple[str, Any]]:
    """The generic figures that apply to these runs, as (name, Figure)."""
    made = [("accuracy_vs_energy", accuracy_vs_energy(df)), ("convergence", convergence(df)),
            ("energy_to_target_heatmap", energy_heatmap(df)), ("search_progress", search_progress(df)),
            ("energy_components", energy_components(df))]
    return [(n, f) for n, f in made if f is not None]


__all__ = ["accuracy_vs_energy", "all_figures", "convergence", "energy_components",
           "energy_heatmap", "heatmap_pair", "search_progress"]
