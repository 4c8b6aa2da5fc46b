"""Small helpers the study drivers share: a part's row in the summary, number formatting and the
interleaved order of repeated runs (which the repeat sweeper uses too)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, TypeVar

T = TypeVar("T")


def interleave(variants: Sequence[T], rounds: int) -> list[tuple[int, T]]:
    """(round, variant) in run order: every variant once per round, round r rotated by r places
    (A B C, B C A, C A B, A B C, ...), so slow drift in machine load (another job starting, the CPU
    warming up) hits every variant alike, and no variant always runs first or right after another."""
    n = len(variants)
    return [(r, variants[(r + i) % n]) for r in range(rounds) for i in range(n)] if n else []


def quote(override: str) -> str:
    """``override`` as an element of a Hydra list (``hydra.sweeper.variants=[['a=1'],...]``)."""
    for q in ("'", '"'):
        if q not in override:
            return f"{q}{override}{q}"
    raise ValueError(f"an override with both quote characters cannot be passed as a variant: {override}")


def variants_override(variants: Sequence[Sequence[str]]) -> str:
    """The ``hydra.sweeper.variants=...`` override that runs these variants (override lists) in one sweep."""
    return "hydra.sweeper.variants=[" + ",".join("[" + ",".join(quote(o) for o in v) + "]" for v in variants) + "]"


def sweep_results(sweep_dir: Any) -> list[tuple[Any, Optional[dict[str, Any]]]]:
    """(job dir, result.json or None) of every job of a sweep, in job (run) order."""
    from pathlib import Path

    from powertrain.report.summary import job_dirs
    from powertrain.results import load_result

    return [(d, load_result(d)[0]) for d in job_dirs(Path(sweep_dir))]


def variant_results(sweep_dir: Any) -> dict[str, list[dict[str, Any]]]:
    """The result.json of every run of a variant sweep, by ``study.variant``, in run order (a job without a
    readable result.json is left out: the report lists it among the runs)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for d, result in sweep_results(sweep_dir):
        if result is not None:
            name = str(((result.get("config") or {}).get("study") or {}).get("variant") or d.name)
            out.setdefault(name, []).append(result)
    return out


def seeds_of(cfg: Any, n: int) -> list[int]:
    """One seed per repeat where the seeds vary: ``seed``, ``seed + 1``, ..."""
    return [int(cfg.seed) + r for r in range(n)]


def ordered_variants(names: Sequence[str], overrides: Any, n: int, seeds: Sequence[int]) -> list[tuple[str, list[str]]]:
    """Explicit (name, overrides) jobs: ``n`` rounds of ``names``, interleaved and rotated, repeat ``r``
    with ``seed=seeds[r]`` and ``repeat=r``; ``overrides(name, r)`` gives a job's own overrides."""
    return [(name, [*overrides(name, r), f"seed={seeds[r]}", f"repeat={r}"]) for r, name in interleave(names, n)]


def repeats(cfg: Any, smoke: int, paper: int) -> int:
    """``study.repeats`` if set, else the driver's default for ``study.scale`` (``smoke`` or ``paper``)."""
    s = cfg.study
    if s.repeats is not None:
        return int(s.repeats)
    return paper if s.scale == "paper" else smoke


def part_row(result: dict[str, Any], label: str) -> dict[str, Any]:
    """What a study summary keeps of one part's result.json."""
    m, e = result["metrics"], result["energy"]
    return {"label": label, "dir": result["run"]["dir"], "status": result["status"], "error": result.get("error"),
            "final_accuracy": m["final_accuracy"], "epochs": m["epochs"], "reached_target": m["reached_target"],
            "energy_j": e["total_j"], "energy_to_target_j": m["energy_to_target_j"],
            "carbon_g": (result.get("carbon") or {}).get("total_g")}


def override_value(v: Any) -> str:
    """``v`` as it is written on the command line."""
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(override_value(x) for x in v) + "]"
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def fmt_j(v: float) -> str:
    """Joules to read at a glance: whole joules from 100 J, else 3 significant digits (a 0.05 J saving is
    not 0.0 J)."""
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


def joules(v: Optional[float]) -> str:
    return f"{fmt_j(v):>10} J" if v is not None else "  not reached"


def fmt_pct(v: Optional[float]) -> str:
    return f"{v * 100:.1f}%" if v is not None else "n/a"


def dataset_label(cfg: Any) -> str:
    return cfg.dataset.name + (f" classes {list(cfg.dataset.classes)}" if cfg.dataset.classes else "")


def finish(summary: dict[str, Any], lines: list[str], verbose: bool) -> dict[str, Any]:
    """The summary with its report lines, which are printed too."""
    summary["report"] = lines
    if verbose:
        print("\n" + "\n".join(lines), flush=True)
    return summary
