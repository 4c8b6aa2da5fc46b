"""Sweep report, search-space parsing, resume argv and StopRequest chaining, without running a sweep."""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from powertrain import report
from powertrain.config import ConfigError
from powertrain.report.__main__ import main as report_main
from powertrain.results import OPTUNA_STUDY_FILE, load_result


def _job(sweep: Path, n: int, overrides: list[str], status: str | None, acc: float | None = None,
         energy_j: float | None = None, carbon_g: float | None = None) -> Path:
    d = sweep / str(n)
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if status is not None:
        (d / "result.json").write_text(json.dumps({
            "status": status, "error": "boom" if status == "failed" else None,
            "run": {"overrides": overrides, "attempts": 1},
            "metrics": {"final_accuracy": acc, "best_accuracy": acc, "epochs": 1, "energy_to_target_j": None},
            "energy": {"total_j": energy_j}, "carbon": {"total_g": carbon_g}, "time": {"wall_s": 1.0},
        }))
    return d


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    s = tmp_path / "multirun" / "d" / "t"
    _job(s, 0, ["lr=0.1", "max_epochs=1"], "completed", 0.50, 100.0, 0.01)
    _job(s, 1, ["lr=0.01", "max_epochs=1"], "failed", None, 5.0, None)
    _job(s, 2, ["lr=0.001", "max_epochs=1"], "completed", 0.895, 40.0, 0.004)
    _job(s, 3, ["lr=0.0001", "max_epochs=1"], None)  # crashed before writing result.json
    _job(s, 10, ["lr=0.3", "max_epochs=1"], "completed", 0.90, 300.0, 0.03)
    (s / ".submitit" / "123_0").mkdir(parents=True)  # launcher bookkeeping is not a job
    return s


def test_every_job_is_a_row_in_job_order_including_failed_and_missing(sweep: Path) -> None:
    rows = report.load_rows(sweep)
    assert [r["job"] for r in rows] == ["0", "1", "2", "3", "10"]  # numeric, not lexical, order
    assert [r["status"] for r in rows] == ["completed", "failed", "completed", "missing", "completed"]
    assert rows[1]["error"] == "boom" and rows[1]["energy_j"] == 5.0
    assert rows[3]["overrides"] == ["lr=0.0001", "max_epochs=1"]  # from .hydra when no result.json


def test_a_result_json_that_is_not_an_object_is_a_failed_row(sweep: Path) -> None:
    (sweep / "2" / "result.json").write_text("[]")  # a summary bug must not come from one bad file
    (sweep / "0" / "result.json").write_text("{")
    rows = report.load_rows(sweep)
    assert [r["status"] for r in rows] == ["failed", "failed", "failed", "missing", "completed"]
    assert rows[2]["error"].startswith("unreadable result.json")
    assert load_result(sweep / "3")[:2] == (None, "missing")


def test_campaign_counts_every_joule_and_rounds_to_best(sweep: Path) -> None:
    c = report.summarize(sweep)["campaign"]
    assert c["total_energy_j"] == pytest.approx(445.0)
    assert c["jobs_without_energy"] == 1
    assert c["total_carbon_g"] == pytest.approx(0.044)
    assert c["best_accuracy"] == 0.90 and c["best_job"] == "10"
    # job 2 (0.895 >= 0.99 * 0.90) is the third job; energy until then includes the failed job's 5 J
    assert c["rounds_to_best"] == 3 and c["rounds_to_best_job"] == "2"
    assert c["energy_to_best_j"] == pytest.approx(145.0)


def test_objectives_given_over_a_study_take_their_own_directions(sweep: Path) -> None:
    # a study of one maximized objective must not lend its direction to other objectives asked for
    (sweep / OPTUNA_STUDY_FILE).write_text(json.dumps(
        {"objectives": ["accuracy"], "directions": ["maximize"], "trials": []}))
    s = report.summarize(sweep, objectives=["energy", "accuracy"])
    assert s["directions"] == ["minimize", "maximize"]
    assert sorted(p["job"] for p in s["pareto_front"]) == ["10", "2"]
    assert report.summarize(sweep)["directions"] == ["maximize"]


def test_pareto_front_accuracy_vs_energy(sweep: Path) -> None:
    s = report.summarize(sweep, objectives=["accuracy", "energy"])
    assert s["directions"] == ["maximize", "minimize"]
    assert sorted(p["job"] for p in s["pareto_front"]) == ["10", "2"]  # job 0 is dominated by job 2


def test_summary_files_and_table(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "missing" in out and "lr=0.0001" in out and "max_epochs=1" not in out  # only what varies
    data = json.loads((sweep / report.SUMMARY_JSON).read_text())
    assert data["schema"] == "powertrain.sweep_summary/1" and len(data["rows"]) == 5
    with open(sweep / report.SUMMARY_CSV) as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows][3] == "missing" and rows[0]["overrides"] == "lr=0.1 max_epochs=1"


def test_report_cli_rejects_unknown_objective(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report_main([str(sweep), "--objective", "accuracy,joules"]) == 2
    assert "objectives must be" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ search space


def test_search_space_from_params_and_command_line() -> None:
    import optuna.distributions as od

    from powertrain.launch.search import build_space, trial_overrides

    fixed, space = build_space({"optimizer.lr": "tag(log, interval(1e-4, 1e-1))", "batch_size": "32,64"},
                               ["batch_size=choice(16,128)", "max_epochs=1", "model.linear_layers=range(2,5)"])
    assert fixed == ["max_epochs=1"]
    lr = space["optimizer.lr"].distribution
    assert isinstance(lr, od.FloatDistribution) and lr.log and (lr.low, lr.high) == (1e-4, 1e-1)
    assert space["batch_size"].grid_values == [16, 128]  # the command line wins over params
    assert space["model.linear_layers"].grid_values == [2, 3, 4]
    assert trial_overrides(fixed, {"optimizer.lr": 0.001, "optimizer": "adam", "x": True}) == [
        "max_epochs=1", "optimizer.lr=0.001", "optimizer=adam", "x=true"]


def test_descending_range_is_an_integer_space() -> None:
    import optuna.distributions as od

    from powertrain.launch.search import build_space

    _, space = build_space({}, ["model.linear_layers=range(5,1,-2)"])
    p = space["model.linear_layers"]
    assert p.grid_values == [5, 3]
    assert isinstance(p.distribution, od.IntDistribution)
    assert (p.distribution.low, p.distribution.high, p.distribution.step) == (3, 5, 2)


@pytest.mark.parametrize("params, argv, match", [
    ({}, ["optimizer.lr=interval(0.1, 0.01)"], "low < high"),
    ({}, ["optimizer.lr=tag(log, interval(0, 1))"], "low > 0"),
    ({}, ["batch_size=choice(0, 32)"], "batch_size=0"),  # a value every run would refuse
    ({"optimizer.lr": "interval(1e-3"}, [], "parse"),
])
def test_bad_search_space_is_one_line(params: dict[str, str], argv: list[str], match: str) -> None:
    from powertrain.launch.search import build_space

    with pytest.raises(ConfigError, match=match) as e:
        build_space(params, argv)
    assert "\n" not in str(e.value)


def test_grid_sampler_needs_explicit_values() -> None:
    from powertrain.launch.search import build_sampler, build_space

    _, space = build_space({}, ["optimizer.lr=interval(1e-3, 1e-1)"])
    with pytest.raises(ConfigError, match="sampler=grid"):
        build_sampler("grid", 0, space, 1)


@pytest.mark.parametrize("argv, match", [
    (["hydra.sweeper.sampler=cmaes"], "hydra.sweeper.sampler"),
    (["hydra.sweeper.n_trail=3"], "did you mean n_trials"),
    (["hydra.sweeper.objective=[accuracy,watts]"], "hydra.sweeper.objective"),
    (["hydra.sweeper.direction=[maximize]", "hydra.sweeper.objective=[accuracy,energy]"], "direction"),
])
def test_check_argv_rejects_bad_sweeper_input(argv: list[str], match: str) -> None:
    from powertrain.launch.search import check_argv

    with pytest.raises(ConfigError, match=match):
        check_argv(["-m", "hydra/sweeper=optuna", *argv])
    check_argv(["-m", *argv])  # not the optuna sweeper: not ours to judge


# ------------------------------------------------------------------------------------------ resume


def _run_dir(tmp_path: Path, status: str, checkpoint: bool = True) -> Path:
    d = tmp_path / "run"
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("- max_epochs=9\n")  # as a refused attempt rewrote it
    (d / "result.json").write_text(json.dumps({"status": status, "run": {"overrides": ["max_epochs=5",
                                                                                     "seed=1"]}}))
    if checkpoint:
        (d / "checkpoint.pt").write_bytes(b"")
    return d


def test_resume_argv_uses_the_preempted_attempts_overrides(tmp_path: Path) -> None:
    from powertrain.compose.resume import resume_argv

    d = _run_dir(tmp_path, "preempted")
    assert resume_argv([f"resume={d}", "verbose=false"]) == [
        "max_epochs=5", "seed=1", "verbose=false", f"hydra.run.dir={d.resolve()}"]
    assert resume_argv(["seed=2"]) == ["seed=2"]


@pytest.mark.parametrize("status, checkpoint, why", [("completed", True, "its last attempt ended completed"),
                                                     ("preempted", False, "it has no checkpoint.pt")])
def test_resume_refuses_a_run_with_nothing_to_resume(tmp_path: Path, status: str, checkpoint: bool,
                                                     why: str) -> None:
    from powertrain.compose.resume import resume_argv

    d = _run_dir(tmp_path, status, checkpoint)
    with pytest.raises(ConfigError, match=f"; {why}; nothing to resume"):
        resume_argv([f"resume={d}"])


# ------------------------------------------------------------------------------------- StopRequest


def test_stop_request_defers_the_earlier_handler_until_chain() -> None:
    """Under submitit, SIGUSR2's requeue handler must run only after our checkpoint, not on the signal."""
    from powertrain.run.signals import StopRequest

    calls: list[Any] = []
    original = signal.signal(signal.SIGUSR2, lambda s, f: calls.append(s))
    try:
        stop = StopRequest()
        stop.install()
        os.kill(os.getpid(), signal.SIGUSR2)
        assert stop() and calls == []  # only the flag: the loop gets to checkpoint first
        stop.uninstall()
        assert calls == []
        stop.chain()
        assert calls == [signal.SIGUSR2]
        stop.chain()
        assert calls == [signal.SIGUSR2]  # once
    finally:
        signal.signal(signal.SIGUSR2, original)


def test_stop_request_without_earlier_handler_just_stops() -> None:
    from powertrain.run.signals import StopRequest

    original = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        stop = StopRequest()
        stop.install()
        os.kill(os.getpid(), signal.SIGTERM)
        stop.uninstall()
        stop.chain()  # SIG_DFL is not called (it would kill the test process)
        assert stop() and stop.signum == signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, original)


def test_int_interval_rounds_bounds_inwards_and_quotes_survive():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from powertrain.config import ConfigError
    from powertrain.launch.search import build_space, trial_overrides

    _, space = build_space({}, ["batch_size=tag(int,interval(0.5,8))"])
    dist = space["batch_size"].distribution
    assert (dist.low, dist.high) == (1, 8)  # 0 would be a batch size the run refuses
    with pytest.raises(ConfigError):
        build_space({}, ["batch_size=tag(int,interval(0.2,0.8))"])
    ov = trial_overrides([], {"tracking.project": "it's mine, ok"})
    assert [o.value() for o in OverridesParser.create().parse_overrides(ov)] == ["it's mine, ok"]


def test_a_stopped_sweeps_plan_is_read_once_and_its_unstarted_jobs_counted_by_reason(
        sweep: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plan of 30 jobs of which 25 never started: one read of sweep_plan.json per report, not one per
    missing job; the campaign counts them by the reason recorded on each row, not by parsing its error."""
    from powertrain.report import load_sweep, summary

    jobs = [{"job": str(n), "overrides": [f"lr={n}", "max_epochs=1"]} for n in [*range(4), *range(10, 36)]]
    (sweep / summary.PLAN_FILE).write_text(json.dumps({"jobs": jobs, "run": {}}))
    reads: list[str] = []
    real = Path.read_text

    def counted(self: Path, *a: Any, **kw: Any) -> str:
        if self.name == summary.PLAN_FILE:
            reads.append(str(self))
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "read_text", counted)
    summary._read_plan.cache_clear()  # an earlier test may have cached a plan of the same path
    s = report.summarize(sweep)
    assert len(reads) == 1
    rows = {r["job"]: r for r in s["rows"]}
    assert rows["35"]["error"] == "never started (its sweep stopped before launching it)"
    assert rows["35"]["overrides"] == ["lr=35", "max_epochs=1"] and rows["35"]["no_result"] == "never started"
    assert rows["3"]["no_result"] == "no result.json" and rows["0"]["no_result"] is None
    assert s["campaign"]["without_energy"] == {"never started": 25, "no result.json": 1}
    df = load_sweep(sweep)  # the same plan file, unchanged: served without reading it again
    assert len(reads) == 1
    assert (df["error"] == "no result.json yet (the sweep has not ended)").sum() == 26  # its process: unknown
