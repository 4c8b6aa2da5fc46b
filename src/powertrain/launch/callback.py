"""Hydra callback: after a multirun, summarize the sweep directory and print the table.

Registered in conf/config.yaml under ``hydra.callbacks``. ``on_multirun_end`` runs in the process that
started the sweep, after every job has returned: in the same process for the basic launcher, in the
submitting process for the submitit (Slurm) launcher, so result.json files written on compute nodes are
read from the shared sweep directory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

log = logging.getLogger("powertrain")
SWEEP_DIRS: list[Path] = []  # the sweep this process runs (for a summary when Ctrl-C ends it)
BROKEN_JOBS: list[str] = []  # jobs of the ended sweep that gave no result (failed, lost, missing...): exit 1


def interrupted_sweep() -> str:
    """After Ctrl-C ended a sweep: write its summary (jobs never started are listed) and say where."""
    if not SWEEP_DIRS:
        return ""
    from powertrain.report import report

    sweep_dir = SWEEP_DIRS[-1]
    try:
        summary = report(sweep_dir, ended=True)
    except Exception as e:  # the jobs' result files are the record
        return f"; sweep summary not written ({type(e).__name__}: {e}); re-run: powertrain report {sweep_dir}"
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary["status_counts"].items()))
    return (f"; sweep summary: {sweep_dir / 'sweep_summary.json'} ({counts}; jobs already handed to a "
            "cluster keep running there)")


class SweepSummary(Callback):
    """Write sweep_summary.json/.csv and the report at the sweep root and print the table when a multirun ends."""

    def __init__(self, print_table: bool = True, write_report: bool = True) -> None:
        self.print_table = print_table
        # a study's searches set it false: the study writes one report over all of them when it ends
        self.write_report = write_report

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        SWEEP_DIRS.append(Path(str(config.hydra.sweep.dir)))

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        from powertrain.report import format_table, report
        from powertrain.results import BROKEN

        sweep_dir = Path(str(config.hydra.sweep.dir))
        if config.get("predict"):  # nothing ran: the jobs' predictions are the sweep's record
            from powertrain.launch.predict import finish_sweep

            finish_sweep(sweep_dir, config.hydra.launcher, print_table=self.print_table)
            return
        try:
            summary = report(sweep_dir, ended=True)
        except Exception as e:  # the jobs' result files are the record; a summary bug must not hide them
            log.warning("sweep summary failed (%s: %s); re-run: python -m powertrain.report %s",
                        type(e).__name__, e, sweep_dir)
            return
        BROKEN_JOBS[:] = [r["job"] for r in summary["rows"] if r["status"] in BROKEN]
        if self.print_table:
            print(format_table(summary), flush=True)
            print(f"summary: {sweep_dir / 'sweep_summary.json'}", flush=True)
        if not self.write_report:
            return
        try:
            from powertrain.report.writers import report_dir

            path = report_dir(sweep_dir)
        except Exception as e:  # a report bug or a missing pandas/matplotlib must not fail the sweep
            print(f"report not written ({type(e).__name__}: {e}); re-run: powertrain report {sweep_dir}",
                  flush=True)
            return
        if self.print_table:
            print(f"report: {path}", flush=True)
