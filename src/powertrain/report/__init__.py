"""Sweep and study reports.

Light on import (the Hydra callback imports this package in every run): the sweep summary
(``summary.py``: tidy rows, campaign accounting, Pareto front) and the ``Section`` / ``Table`` dataclasses
are plain Python. ``load_sweep`` (pandas) and ``write_report`` (pandas + matplotlib) are loaded on first
use, so a plain training run never imports pandas or matplotlib.

Layer: imports ``tracking`` (the W&B mode), ``energy.base`` (units), ``results`` and ``config``; never
``run`` or the studies (a study's sections are passed in through ``analyzer``).
"""

from __future__ import annotations

from typing import Any

from powertrain.report.sections import Section, Table
from powertrain.report.summary import (
    BEST_SHARE,
    CSV_COLUMNS,
    OBJECTIVES,
    SUMMARY_CSV,
    SUMMARY_JSON,
    SUMMARY_SCHEMA,
    campaign,
    format_table,
    job_dirs,
    load_rows,
    objective_value,
    pareto_front,
    report,
    row_from_job,
    summarize,
    write_summary,
)

_LAZY = {"load_sweep": "powertrain.report.load", "factors": "powertrain.report.load",
         "write_report": "powertrain.report.writers"}


def __getattr__(name: str) -> Any:
    # pandas/matplotlib are paid for only by whoever asks for a DataFrame or a report
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'powertrain.report' has no attribute {name!r}")


__all__ = ["BEST_SHARE", "CSV_COLUMNS", "OBJECTIVES", "SUMMARY_CSV", "SUMMARY_JSON",
           "SUMMARY_SCHEMA", "Section", "Table", "campaign", "factors", "format_table", "job_dirs", "load_rows",
           "load_sweep", "objective_value", "pareto_front", "report", "row_from_job", "summarize",
           "write_report", "write_summary"]
