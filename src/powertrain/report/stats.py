"""How sure an answer is: statistics of repeated runs, for the study drivers and the sweep report.

Every effect a study reports (a % change, a worst/best ratio, a break-even n*, rounds-to-best) is a
statistic of a few repeated runs per variant. This module turns those runs into

- the point estimate (a median, or a statistic of medians), a 95 % bootstrap confidence interval and n;
- a test of "no effect" that needs no normality: Mann–Whitney U (two groups, two-sided) or Kruskal–Wallis
  (more than two), from scipy.stats;
- the noise floor: the run-to-run spread of identical runs (coefficient of variation of the reference
  variant's repeats), and whether an effect is smaller than it;
- a rough number of repeats that would resolve an effect of a given size at the noise seen;
- the verdict in words, e.g. ``conv 1→4: +95 % [+78, +112] (n=5, p=0.008)``.

Pure functions of plain lists; every result is a JSON-able dict. The bootstrap is seeded, so the same
runs always give the same interval. numpy and scipy are imported inside the functions (``report`` extra).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Optional

ALPHA = 0.05  # an effect is "significant" when its test's p < ALPHA
CONFIDENCE = 0.95
N_RESAMPLES = 2000
SEED = 0  # bootstrap resamples are seeded: a report re-rendered from the same runs says the same
POWER = 0.8  # repeats_needed: the chance to detect an effect of the given size
# the smallest n per group at which a two-sided exact Mann–Whitney U can reach p < 0.05 (n=3: p >= 0.1)
MIN_N_SIGNIFICANT = 4
NEVER = 1e12  # stands in for an infinite statistic (a break-even that never comes) inside the bootstrap

Stat = Callable[..., float]


def clean(values: Sequence[Any]) -> list[float]:
    """The finite numbers of ``values`` (None, NaN and text dropped)."""
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            try:
                v = float(v)  # numpy scalars
            except (TypeError, ValueError):
                continue
        if math.isfinite(v):
            out.append(float(v))
    return out


def median(values: Sequence[Any]) -> Optional[float]:
    """The median of the finite values, or None when there is none."""
    import statistics

    v = clean(values)
    return statistics.median(v) if v else None


def bootstrap_ci(samples: Sequence[Sequence[float]], statistic: Stat,
                 confidence: float = CONFIDENCE) -> Optional[list[float]]:
    """Percentile bootstrap interval of ``statistic(*samples)``, each sample resampled independently.

    None when a sample has fewer than 2 values (nothing to resample). An infinite statistic (e.g. a
    break-even that never comes) may appear in the interval as ``math.inf``.
    """
    import warnings

    import numpy as np
    from scipy.stats import bootstrap

    data = [np.asarray(clean(s), dtype=float) for s in samples]
    if any(len(d) < 2 for d in data):
        return None

    def stat(*xs: Any) -> float:
        v = statistic(*xs)
        return NEVER if v is None or v == math.inf else min(float(v), NEVER)

    point = stat(*data)
    if all(np.ptp(d) == 0 for d in data):  # identical runs: nothing varies, the interval is the point
        lo = hi = point
    else:
        with warnings.catch_warnings():  # a degenerate resample distribution warns; the point covers it
            warnings.simplefilter("ignore")
            res = bootstrap(tuple(data), stat, vectorized=False, paired=False, n_resamples=N_RESAMPLES,
                            confidence_level=confidence, method="percentile", rng=np.random.default_rng(SEED))
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        lo, hi = (point if math.isnan(lo) else lo), (point if math.isnan(hi) else hi)
    return [math.inf if v >= NEVER / 10 else v for v in (lo, hi)]


def median_ci(values: Sequence[Any]) -> dict[str, Any]:
    """Median, its 95 % bootstrap interval (None below 2 values) and n."""
    import numpy as np

    v = clean(values)
    return {"median": median(v), "ci": bootstrap_ci([v], lambda x: float(np.median(x))), "n": len(v)}


def mann_whitney_p(a: Sequence[Any], b: Sequence[Any]) -> Optional[float]:
    """Two-sided Mann–Whitney U p-value of "a and b come from the same distribution" (exact for small n
    without ties); None when a group has fewer than 2 values."""
    from scipy.stats import mannwhitneyu

    a, b = clean(a), clean(b)
    if len(a) < 2 or len(b) < 2:
        return None
    if len(set(a + b)) == 1:  # every run gave the same number: no evidence of any difference
        return 1.0
    return float(mannwhitneyu(a, b, alternative="two-sided", method="auto").pvalue)


def kruskal_p(groups: Sequence[Sequence[Any]]) -> Optional[float]:
    """Kruskal–Wallis p-value of "all groups come from the same distribution" (chi-square approximation),
    over the groups with 2 or more values; None when fewer than 2 such groups."""
    from scipy.stats import kruskal

    gs = [clean(g) for g in groups]
    gs = [g for g in gs if len(g) >= 2]
    if len(gs) < 2:
        return None
    if len({x for g in gs for x in g}) == 1:
        return 1.0
    return float(kruskal(*gs).pvalue)


def noise_floor(values: Sequence[Any]) -> Optional[float]:
    """Run-to-run spread of identical runs: their coefficient of variation (sample sd / mean); None below
    2 values."""
    import statistics

    v = clean(values)
    if len(v) < 2 or statistics.fmean(v) == 0:
        return None
    return statistics.stdev(v) / abs(statistics.fmean(v))


def log_sd(*groups: Sequence[Any]) -> Optional[float]:
    """Pooled standard deviation of log values over the groups (about the relative noise, for
    ``repeats_needed``); None without a group of 2 or more positive values."""
    import statistics

    parts = [[math.log(x) for x in clean(g) if x > 0] for g in groups]
    parts = [p for p in parts if len(p) >= 2]
    if not parts:
        return None
    dof = sum(len(p) - 1 for p in parts)
    return math.sqrt(sum(statistics.variance(p) * (len(p) - 1) for p in parts) / dof)


def repeats_needed(effect: Optional[float], sigma: Optional[float], alpha: float = ALPHA,
                   power: float = POWER) -> Optional[int]:
    """Roughly how many repeats per variant resolve a relative change ``effect`` (0.05 = +5 %) with
    Mann–Whitney U at ``alpha`` and ``power``, when runs scatter by ``sigma`` (sd of log energy).

    The two-sample normal-approximation size 2 (z₁₋α/₂ + z_power)² σ² / ln(1 + effect)², divided by the
    asymptotic relative efficiency of Mann–Whitney against the t-test (3/π), and never below the n at
    which the exact test can reach ``alpha`` at all. A rough guide, not a promise.
    """
    from scipy.stats import norm

    if effect is None or sigma is None or effect <= -1 or effect == 0:
        return None
    delta = abs(math.log1p(effect))
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    n = 2 * (z * sigma / delta) ** 2 / (3 / math.pi)
    return max(MIN_N_SIGNIFICANT, math.ceil(n))


def _ratio_of_medians(base: Any, other: Any) -> float:
    import numpy as np

    m = float(np.median(base))
    return float(np.median(other)) / m - 1 if m > 0 else math.nan


def change(base: Sequence[Any], other: Sequence[Any], *, floor: Optional[float] = None,
           expected: Optional[float] = None) -> dict[str, Any]:
    """The relative change of the median from ``base`` to ``other`` runs, as an effect.

    Args:
        base, other: the two variants' values (e.g. energies of their repeats).
        floor: the noise floor (relative) to compare the change with, e.g. ``noise_floor`` of the default.
        expected: an effect size to plan for (the paper's), for ``repeats_needed`` when this one is not
            distinguishable; the change seen here is used when None.

    Returns:
        ``effect()``'s dict: estimate, ci, n, p (Mann–Whitney U), significant, below_noise_floor, ...
    """
    a, b = clean(base), clean(other)
    ma, mb = median(a), median(b)
    est = None if ma is None or mb is None or ma <= 0 else mb / ma - 1
    return effect(est, bootstrap_ci([a, b], _ratio_of_medians) if est is not None else None, [len(a), len(b)],
                  mann_whitney_p(a, b), "Mann-Whitney U, two-sided", floor=floor,
                  needed=repeats_needed(expected if expected is not None else est, log_sd(a, b)))


def worst_best_ratio(groups: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """The worst/best ratio of the groups' medians (e.g. energy-to-target per grid cell), as an effect.

    The interval resamples every group of 2+ values (the others stay fixed) and picks worst and best
    again in each resample, so it carries the selection. The test of "no effect" is Kruskal–Wallis
    across the groups (a p-value of the worst-vs-best pair alone would be optimistic: that pair was
    chosen because it differs most). The noise floor is the median spread (CV) within a group.
    """
    import numpy as np

    gs = [clean(g) for g in groups]
    gs = [g for g in gs if g]
    meds = [median(g) for g in gs]
    if len(gs) < 2 or min(meds) <= 0:  # type: ignore[type-var]
        return effect(None, None, [len(g) for g in gs], None, "Kruskal-Wallis across groups")
    varying = [i for i, g in enumerate(gs) if len(g) >= 2]
    fixed = [m for i, m in enumerate(meds) if i not in varying]

    def ratio(*xs: Any) -> float:
        m = [float(np.median(x)) for x in xs] + fixed  # type: ignore[operator]
        return max(m) / min(m)

    point = max(meds) / min(meds)  # type: ignore[type-var,operator]
    ci = bootstrap_ci([gs[i] for i in varying], ratio) if varying else None
    floors = [f for f in (noise_floor(g) for g in gs) if f is not None]
    floor = median(floors) if floors else None
    worst, best = gs[meds.index(max(meds))], gs[meds.index(min(meds))]  # type: ignore[type-var]
    return effect(point, ci, [len(g) for g in gs], kruskal_p(gs), "Kruskal-Wallis across groups", floor=floor,
                  size=point - 1, needed=repeats_needed(point - 1, log_sd(worst, best)))


def effect(estimate: Optional[float], ci: Optional[list[float]], n: Any, p: Optional[float], test: str, *,
           floor: Optional[float] = None, needed: Optional[int] = None, size: Optional[float] = None) -> dict[str, Any]:
    """One reported effect as a JSON-able dict (the keys every study writes beside its old ones).

    ``size`` is the relative size compared with the noise floor (the estimate itself by default; a
    ratio's is ratio − 1).
    """
    significant = None if p is None else bool(p < ALPHA)
    size = estimate if size is None else size
    below = None if floor is None or size is None else bool(abs(size) < floor)
    return {"estimate": estimate, "ci": ci, "confidence": CONFIDENCE, "n": n, "p": p, "test": test,
            "alpha": ALPHA, "significant": significant, "noise_floor": floor, "below_noise_floor": below,
            "repeats_needed": None if significant else needed}


def fmt_pct_change(v: Optional[float]) -> str:
    """``+95 %`` (an unknown change: ``n/a``; a change that never comes: ``never``)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if math.isinf(v):
        return "never"
    return f"{v * 100:+.0f} %".replace("-", "−")


def _n_text(n: Any) -> str:
    ns = list(n) if isinstance(n, (list, tuple)) else [n]
    if len(ns) > 2:  # many groups (grid cells): the range of their sizes
        return f"n={min(ns)} per group" if min(ns) == max(ns) else f"n={min(ns)}-{max(ns)} per group"
    return f"n={ns[0]}" if len(set(ns)) == 1 else "n=" + "/".join(map(str, ns))


def verdict(name: str, e: dict[str, Any], fmt: Callable[[Optional[float]], str] = fmt_pct_change,
            what: str = "an effect of this size", p_label: str = "p", floor_of: str = "identical runs") -> str:
    """The effect in words: ``conv 1→4: +95 % [+78, +112] (n=5, p=0.008)``, or with
    ``not distinguishable from noise at n=5`` and how many repeats would resolve ``what``; ``floor_of``
    says whose spread the noise floor is (``repeated runs`` where the seeds vary)."""
    est, ci, p = e.get("estimate"), e.get("ci"), e.get("p")
    text = f"{name}: {fmt(est)}"
    if ci is not None:
        lo, hi = (fmt(v).replace(" %", "") if fmt is fmt_pct_change else fmt(v) for v in ci)
        text += f" [{lo}, {hi}]"
    n = _n_text(e.get("n"))
    if p is None:
        return text + f" ({n}: too few runs for an interval or a test; repeat each variant {MIN_N_SIGNIFICANT}+ times)"
    if e.get("significant"):
        text += f" ({n}, {p_label}={_p(p)})"
    else:
        text += f", not distinguishable from noise at {n} ({p_label}={_p(p)})"
    if e.get("below_noise_floor"):
        text += f"; smaller than the noise floor of {floor_of} (±{e['noise_floor'] * 100:.0f} %)"
    if not e.get("significant") and e.get("repeats_needed"):
        text += f"; about {e['repeats_needed']} repeats per variant would resolve {what} at this noise"
    return text


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else "<0.001"
