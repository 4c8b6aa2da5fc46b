"""yarally_tuning: grid vs random vs Bayesian search, its answer checked against the trials' result.json."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

TINY = ["study.models=[dense_poly]", "study.strategies=[grid,tpe]", "study.rounds=4", "study.seeds=[0,1]",
        "study.startup_rounds=2", "dataset=digits", "max_epochs=1", "batch_size=64"]


def test_curve_counts_failed_rounds_and_finds_the_first_round_near_the_best() -> None:
    from powertrain.studies.yarally_tuning import curve

    c = curve([("completed", 0.50, 2.0), ("failed", None, 1.0), ("completed", 0.795, 2.0),
               ("diverged", 0.9, 3.0), ("completed", 0.80, 2.0)])
    assert c["best"] == [0.50, 0.50, 0.795, 0.795, 0.80]  # a diverged run's accuracy is not a result
    assert c["final_best"] == 0.80
    assert c["rounds_to_best"] == 3  # 0.795 is within 1 % of 0.80
    assert c["energy_to_best_j"] == 5.0 and c["total_j"] == 10.0  # the failed round's joules count


def test_part_names_round_trip() -> None:
    from powertrain.studies.yarally_tuning import parse_part, part_name

    assert parse_part(part_name("simple_cnn", "gp", 3)) == ("simple_cnn", "gp", 3)
    assert parse_part("grid") is None and parse_part("dense_poly-bayes-s1") is None


def test_paper_scale_searches_64_rounds_over_5_seeds_unless_given() -> None:
    from powertrain.config import RunConfig
    from powertrain.studies.yarally_tuning import Config, plan

    cfg = RunConfig(study=Config(driver="yarally_tuning", scale="paper", seeds=[0, 1], rounds=10,
                                 startup_rounds=3))
    assert plan(cfg) == (64, [0, 1, 2, 3, 4], None)  # Optuna's own TPE/GP start-up at 64 rounds
    assert plan(cfg, {"study.rounds", "study.seeds"}) == (10, [0, 1], None)
    cfg.study.scale = "smoke"
    assert plan(cfg) == (10, [0, 1], 3)


def test_unknown_strategy_is_refused_before_any_search(tmp_path: Path, cli: Any) -> None:
    proc = cli("experiment=yarally_tuning", "study.strategies=[grid,bayes]", f"hydra.run.dir={tmp_path / 's'}",
               cwd=tmp_path)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("powertrain: error: study.strategies") and "bayes" in last and "gp" in last
    assert not any((tmp_path / "s").glob("*-s0"))


@pytest.mark.slow
def test_tuning_study_answers_from_the_trials_result_files(tmp_path: Path, cli: Any) -> None:
    pytest.importorskip("optuna")
    pytest.importorskip("pandas")
    pytest.importorskip("matplotlib")
    out = tmp_path / "tuning"
    proc = cli("experiment=yarally_tuning", *TINY, f"hydra.run.dir={out}", cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = json.loads((out / "study.json").read_text())
    assert study["status"] == "completed"
    rows = {(r["model"], r["strategy"]): r for r in study["summary"]["strategies"]}
    assert set(rows) == {("dense_poly", "grid"), ("dense_poly", "tpe")}

    grid_lrs = {1e-5, 1e-4, 1e-3, 1e-2}
    for strategy in ("grid", "tpe"):
        per_seed = []
        for seed in (0, 1):
            part = out / f"dense_poly-{strategy}-s{seed}"
            trials = json.loads((part / "optuna_study.json").read_text())["trials"]
            results = [json.loads((part / t["job"] / "result.json").read_text())
                       for t in sorted(trials, key=lambda t: t["number"])]
            assert len(results) == 4
            assert not (part / "report.html").exists()  # one report, the study's, not one per search
            lrs = {r["config"]["optimizer"]["lr"] for r in results}
            beta2 = {r["config"]["optimizer"]["beta2"] for r in results}
            if strategy == "grid":
                assert lrs <= grid_lrs
            else:
                assert len(beta2) == 4 and all(0.8 <= b < 1 for b in beta2)  # β2 is really searched
            acc = [r["metrics"]["final_accuracy"] for r in results]
            spent = [sum(r["energy"]["total_j"] for r in results[:i + 1]) for i in range(4)]
            best = [max(acc[:i + 1]) for i in range(4)]
            first = next(i for i, b in enumerate(best) if b >= 0.99 * best[-1])
            per_seed.append((first + 1, spent[first], spent[-1], best[-1]))
        row = rows[("dense_poly", strategy)]
        assert row["repeats"] == 2
        assert row["rounds_to_best"] == pytest.approx(statistics.median(p[0] for p in per_seed))
        assert row["energy_to_best_j"] == pytest.approx(statistics.median(p[1] for p in per_seed))
        assert row["total_j"] == pytest.approx(statistics.median(p[2] for p in per_seed))
        assert row["final_best"] == pytest.approx(statistics.median(p[3] for p in per_seed))
    # the answer on the terminal and in the one report, with its figure
    assert "rounds to 99%" in proc.stdout and "dense_poly   tpe" in proc.stdout
    html = (out / "report.html").read_text()
    assert "Search strategies (Yarally et al. 2023)" in html and "energy to 99 % of best (J)" in html
    assert (out / "figures" / "tuning_progress.png").stat().st_size > 10_000
