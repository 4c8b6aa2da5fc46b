"""Repeats: the interleaved run order, the repeat sweeper end to end, and where repeats=N is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def test_variants_are_interleaved_and_each_round_is_rotated() -> None:
    from powertrain.studies._common import interleave

    order = [f"{r}{v}" for r, v in interleave(["A", "B", "C"], 4)]
    # A B C, then B C A, C A B, A B C: never blocks, no variant always first
    assert order == ["0A", "0B", "0C", "1B", "1C", "1A", "2C", "2A", "2B", "3A", "3B", "3C"]
    assert interleave([], 3) == []


def test_plan_rotates_the_grid_per_repeat_and_seed_and_labels_each_run() -> None:
    from powertrain.launch.repeats import plan

    grid = [["lr=1"], ["lr=2"]]
    assert plan(grid, [], 1) == grid  # nothing to repeat: the basic sweeper's jobs, in its order
    assert plan(grid, [], 2) == [["lr=1", "repeat=0"], ["lr=2", "repeat=0"], ["lr=2", "repeat=1"],
                                 ["lr=1", "repeat=1"]]
    # a swept seed is a round axis: every cell once per seed, not every seed of one cell in a row
    assert plan(grid, ["seed=0", "seed=1"], 1) == [["lr=1", "seed=0"], ["lr=2", "seed=0"], ["lr=2", "seed=1"],
                                                   ["lr=1", "seed=1"]]


def test_plan_crosses_explicit_variants_with_the_grid_and_the_variant_wins() -> None:
    from powertrain.launch.repeats import plan

    jobs = plan([["x=1", "m.conv=2"]], [], 2, variants=[["study.variant=default"], ["m.conv=4", "study.variant=c4"]])
    assert jobs == [["x=1", "m.conv=2", "study.variant=default", "repeat=0"],
                    ["x=1", "m.conv=4", "study.variant=c4", "repeat=0"],
                    ["x=1", "m.conv=4", "study.variant=c4", "repeat=1"],
                    ["x=1", "m.conv=2", "study.variant=default", "repeat=1"]]


def test_variants_pass_through_hydras_grammar() -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from powertrain.studies._common import variants_override

    variants = [["study.variant=default"], ["paradigm.tasks=[digits,synthetic]", "x='q'"], []]
    parsed = OverridesParser.create().parse_overrides([variants_override(variants)])[0]
    assert parsed.value() == variants


def test_repeat_sweeper_runs_every_job_n_times_interleaved(tmp_path: Path, cli: Any) -> None:
    sweep = tmp_path / "sweep"
    proc = cli("-m", "dataset=synthetic", "dataset.train_size=64", "dataset.test_size=32", "max_epochs=1",
               "save_checkpoint=false", "batch_size=16,32", "repeats=3",
               "hydra.callbacks.sweep_summary.write_report=false", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
               timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = [json.loads((sweep / str(i) / "result.json").read_text()) for i in range(6)]
    got = [(r["config"]["batch_size"], r["config"]["repeat"]) for r in results]
    assert got == [(16, 0), (32, 0), (32, 1), (16, 1), (16, 2), (32, 2)]
    assert {r["config"]["seed"] for r in results} == {0}  # identical runs: the seed stays as given
    assert all(f"repeat={r['config']['repeat']}" in r["run"]["overrides"] for r in results)
    from powertrain.report import load_sweep
    from powertrain.report.load import factors

    df = load_sweep(sweep)
    assert factors(df) == ["batch_size"]  # the repeat is a label, not a factor
    assert sorted(df["repeat"]) == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("args, allowed", [
    (["repeats=3"], "1 for a single run (repeats repeat the jobs of a sweep: add -m)"),
    (["-m", "repeats=1,2"], "one integer >= 1"),
    (["-m", "hydra/sweeper=optuna", "repeats=2"], "1 with hydra/sweeper=optuna"),
    (["experiment=yarally_layers", "repeats=5"], "1 with a study preset (set study.repeats=5"),
])
def test_repeats_where_they_cannot_work_is_one_line_and_exit_2(tmp_path: Path, cli: Any, args: list[str],
                                                               allowed: str) -> None:
    proc = cli(*args, f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("powertrain: error: repeats=") and allowed in line, line
    assert not (tmp_path / "r").exists()


def test_study_repeats_is_checked_like_any_key(tmp_path: Path, cli: Any) -> None:
    proc = cli("experiment=yarally_layers", "study.repeats=0", f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("powertrain: error: study.repeats=0 is not allowed")
