"""Small helpers the study drivers share: a part's row in the summary and number formatting."""

from __future__ import annotations

from typing import Any, Optional


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


def pct(result: dict[str, Any]) -> str:
    return fmt_pct(result["metrics"]["final_accuracy"])


def to_target(result: dict[str, Any]) -> str:
    m = result["metrics"]
    return f"{m['epochs']} epochs, acc {pct(result)}" if m["reached_target"] else f"not reached in {m['epochs']} epochs"


def dataset_label(cfg: Any) -> str:
    return cfg.dataset.name + (f" classes {list(cfg.dataset.classes)}" if cfg.dataset.classes else "")


def finish(summary: dict[str, Any], lines: list[str], verbose: bool) -> dict[str, Any]:
    """The summary with its report lines, which are printed too."""
    summary["report"] = lines
    if verbose:
        print("\n" + "\n".join(lines), flush=True)
    return summary
