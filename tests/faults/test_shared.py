"""Runs and sweeps that start in the same second; a truncated result.json; a sweep killed halfway.

"The same second" is made exact rather than hoped for: both processes get the same time part of the
directory (``hydra.run.dir=outputs/<fixed date>/<fixed time>_${powertrain.unique:}``), so only the
suffix can keep them apart, as it must when a cluster starts many jobs at once.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest

from faults.proc import SMALL, Run, result_json, wait_for
from powertrain.report import format_table, load_sweep, report

pytestmark = pytest.mark.slow
TINY = [*SMALL, "max_epochs=1", "dataset.train_size=256", "verbose=false"]
SUFFIX = re.compile(r"^12-00-00_[a-z2-7]{6}$")


def test_two_runs_started_in_the_same_second_get_their_own_directories(tmp_path: Path) -> None:
    runs = [Run([*TINY, "hydra.run.dir=outputs/2026-01-01/12-00-00_${powertrain.unique:}", f"seed={s}"],
                tmp_path) for s in (0, 1)]
    assert [r.finish() for r in runs] == [0, 0], [r.stderr() for r in runs]
    dirs = sorted((tmp_path / "outputs" / "2026-01-01").iterdir())
    assert len(dirs) == 2 and all(SUFFIX.match(d.name) for d in dirs), dirs
    assert sorted(result_json(d)["config"]["seed"] for d in dirs) == [0, 1]  # neither overwrote the other


def test_the_default_directory_is_readable_sortable_and_unique(tmp_path: Path) -> None:
    run = Run(TINY, tmp_path)
    assert run.finish() == 0, run.stderr()
    (day,) = (tmp_path / "outputs").iterdir()
    (run_dir,) = day.iterdir()
    assert re.match(r"^\d{4}-\d\d-\d\d$", day.name) and re.match(r"^\d\d-\d\d-\d\d_[a-z2-7]{6}$", run_dir.name)
    assert result_json(run_dir)["run"]["id"] == run_dir.name


def test_two_sweeps_started_in_the_same_second_keep_their_own_jobs(tmp_path: Path) -> None:
    sweeps = [Run(["-m", f"seed={a},{b}", *TINY, "hydra.sweep.dir=multirun/2026-01-01/12-00-00_${powertrain.unique:}"],
                  tmp_path) for a, b in ((0, 1), (2, 3))]
    assert [s.finish() for s in sweeps] == [0, 0], [s.stderr() for s in sweeps]
    dirs = sorted((tmp_path / "multirun" / "2026-01-01").iterdir())
    assert len(dirs) == 2 and all(SUFFIX.match(d.name) for d in dirs)
    def seed(row: dict) -> str:  # a swept seed is a round: where it stands among the overrides varies
        return next(o for o in row["overrides"] if o.startswith("seed="))

    seeds = sorted(tuple(sorted(seed(r) for r in json.loads((d / "sweep_summary.json").read_text())["rows"]))
                   for d in dirs)
    assert seeds == [("seed=0", "seed=1"), ("seed=2", "seed=3")]  # each summary holds exactly its own jobs


def test_a_truncated_result_is_listed_and_the_campaign_says_what_it_lacks(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    run = Run(["-m", "seed=0,1,2", *TINY, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert run.finish() == 0, run.stderr()
    path = sweep / "1" / "result.json"
    path.write_text(path.read_text()[: len(path.read_text()) // 2])  # cut mid-file (not by powertrain)
    summary = report(sweep, write=False)
    row = summary["rows"][1]
    assert row["status"] == "failed" and row["error"].startswith("unreadable result.json")
    c = summary["campaign"]
    assert c["jobs_without_energy"] == 1 and c["without_energy"] == {"unreadable result.json": 1}
    table = format_table(summary)
    assert "lacks the energy of 1 of 3 jobs: 1 unreadable result.json" in table
    assert "job 1 failed (unreadable result.json" in table
    df = load_sweep(sweep)
    assert list(df["status"]) == ["completed", "failed", "completed"]


def test_a_killed_sweep_lists_the_lost_job_and_those_that_never_started(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    run = Run(["-m", "seed=0,1,2", *SMALL, "max_epochs=4", f"hydra.sweep.dir={sweep}"], tmp_path)
    # job 1 has saved an epoch: kill the sweep (the basic launcher runs its jobs in its own process)
    wait_for(lambda: ((result_json(sweep / "1") or {}).get("metrics") or {}).get("epochs", 0) >= 1,
             "job 1's first epoch saved", proc=run.proc)
    os.kill(run.proc.pid, signal.SIGKILL)
    run.finish()
    summary = report(sweep, write=False)
    rows = {r["job"]: r for r in summary["rows"]}
    assert [rows[j]["status"] for j in ("0", "1", "2")] == ["completed", "lost", "missing"]
    assert rows["1"]["energy_j"] > 0 and rows["1"]["epochs"] >= 1  # the lost job's joules so far count
    assert rows["2"]["error"].startswith("never started") and "seed=2" in rows["2"]["overrides"]
    c = summary["campaign"]
    assert c["total_energy_j"] == pytest.approx(rows["0"]["energy_j"] + rows["1"]["energy_j"])
    assert c["without_energy"] == {"never started": 1}
    df = load_sweep(sweep)  # the sweep's process is gone: its unstarted job is missing, not pending
    assert list(df["status"]) == ["completed", "lost", "missing"]
    assert len(df["history"][1]) == rows["1"]["epochs"]


def test_a_second_run_in_the_directory_of_a_live_one_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = Run([*SMALL, "max_epochs=500", f"hydra.run.dir={run_dir}"], tmp_path)
    first.wait_line("epoch   1/500")  # alive, and its result.json says running
    second = Run([*SMALL, "max_epochs=500", f"hydra.run.dir={run_dir}"], tmp_path)
    assert second.finish() == 2
    err = second.stderr().strip()
    assert err.startswith(f"powertrain: error: hydra.run.dir='{run_dir}' is not allowed: a directory no live run "
                          "is using") and "\n" not in err, err
    assert first.proc.poll() is None  # the first run never noticed: still training, its files its own
    assert result_json(run_dir)["status"] == "running" and result_json(run_dir)["run"]["pid"] == first.proc.pid
    os.kill(first.proc.pid, signal.SIGTERM)
    assert first.finish() == 1
    final = result_json(run_dir)
    assert final["status"] == "preempted" and final["run"]["attempts"] == 1 and final["metrics"]["epochs"] >= 1
