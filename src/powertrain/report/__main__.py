"""``powertrain report DIR`` (or ``python -m powertrain.report DIR``): summarize a sweep, a study or a
single run and write its report.

Reads every result.json under DIR (DIR's own, for a single run's directory), rewrites sweep_summary.json/.csv there, prints the table and writes
report.html, report.md, figures/ and emissions.csv. Useful on a half-finished study (queued jobs show as
pending), after jobs were re-run, or for a sweep whose launcher ended before the summary was written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from powertrain.report import OBJECTIVES, format_table, job_dirs, report

DESCRIPTION = ("Summarize a sweep, a study or a single run and write its report: sweep_summary.json/.csv, "
               "report.html, report.md, figures/ and emissions.csv in DIR. Runs still queued show as pending.")


def main(argv: list[str] | None = None, analyzer: Any = None) -> int:
    """Command-line entry; returns the exit code (2 for a bad argument)."""
    p = argparse.ArgumentParser(prog="powertrain report", description=DESCRIPTION)
    p.add_argument("sweep_dir", type=Path, metavar="DIR",
                   help="a sweep (multirun/<date>/<time>), a study, or one run's directory (outputs/<date>/<time>)")
    p.add_argument("--objective", default=None,
                   help=f"comma-separated objectives for the Pareto front; of {', '.join(OBJECTIVES)}")
    p.add_argument("--direction", default=None, help="comma-separated maximize|minimize, one per objective")
    p.add_argument("--no-write", action="store_true", help="print only; write neither summary nor report")
    p.add_argument("--no-report", action="store_true", help="summary files only, no report.html/figures")
    p.add_argument("--title", default=None, help="the report's title (default: sweep or study and its date)")
    args = p.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"powertrain.report: error: {args.sweep_dir} is not a directory", file=sys.stderr)
        return 2
    if not job_dirs(args.sweep_dir):  # nothing to report: say so, and leave the directory as it was
        print(f"powertrain.report: error: {args.sweep_dir} holds no powertrain run (no result.json, and no "
              ".hydra/overrides.yaml of a queued job, in it or under it)", file=sys.stderr)
        return 2
    objectives = args.objective.split(",") if args.objective else None
    directions = args.direction.split(",") if args.direction else None
    bad = [o for o in objectives or [] if o not in OBJECTIVES]
    if bad or (directions and (len(directions) != len(objectives or []) or
                               any(d not in ("maximize", "minimize") for d in directions))):
        print(f"powertrain.report: error: objectives must be of {', '.join(OBJECTIVES)} with one "
              "direction (maximize|minimize) each", file=sys.stderr)
        return 2
    summary = report(args.sweep_dir, objectives, directions, write=not args.no_write)
    print(format_table(summary))
    if args.no_write or args.no_report:
        return 0
    try:
        from powertrain.report.writers import report_dir
    except ImportError as e:  # pandas/matplotlib are the optional [report] extra
        print(f"powertrain report: error: the report needs pandas and matplotlib ({e}); "
              "pip install 'powertrain[report]'", file=sys.stderr)
        return 1
    print(f"report: {report_dir(args.sweep_dir, title=args.title, analyzer=analyzer)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
