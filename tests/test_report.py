"""The report: load_sweep's frame, the numbers of report.md against the result.json files, a self-contained
report.html, CodeCarbon's emissions.csv, every status shown, the CLI and the W&B copy."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from powertrain import report  # noqa: E402
from powertrain.report.__main__ import main as report_main  # noqa: E402
from powertrain.results import OPTUNA_STUDY_FILE  # noqa: E402

# CodeCarbon 3.3.2's EmissionsData fields in order (codecarbon/output_methods/emissions_data.py), typed out
# here on purpose rather than imported from the module under test; tests/test_codecarbon.py checks the
# file against the installed library itself
CODECARBON_HEADER = (
    "timestamp,project_name,run_id,experiment_id,duration,emissions,emissions_rate,cpu_power,gpu_power,"
    "ram_power,cpu_energy,gpu_energy,ram_energy,energy_consumed,water_consumed,country_name,country_iso_code,"
    "region,cloud_provider,cloud_region,os,python_version,codecarbon_version,cpu_count,cpu_model,gpu_count,"
    "gpu_model,longitude,latitude,ram_total_size,tracking_mode,cpu_utilization_percent,"
    "gpu_utilization_percent,ram_utilization_percent,ram_used_gb,on_cloud,pue,wue")


@pytest.fixture(scope="session")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny real 2x2 grid, run once per session; its end-of-sweep callback writes the report."""
    sweep = tmp_path_factory.mktemp("grid") / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "powertrain", "-m", "optimizer.lr=0.01,0.1", "batch_size=32,64", "max_epochs=3",
         "target_accuracy=0.5", f"hydra.sweep.dir={sweep}"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "HYDRA_FULL_ERROR": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"report: {sweep / 'report.html'}" in proc.stdout
    return sweep


def _results(d: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(d.rglob("result.json"))]


def _hand_result(status: str, lr: float, energy_j: float, acc: float | None, history: list | None = None,
            e_target: float | None = None, target: float | None = 0.5, region: str | None = None,
            tracking: str = "none", trial_dir: str = "x") -> dict[str, Any]:
    return {
        "schema": "powertrain.result/1", "status": status, "error": "boom" if status == "failed" else None,
        "run": {"id": trial_dir, "overrides": [f"optimizer.lr={lr}"], "finished_at": "2026-11-22T10:00:00+00:00",
                "sweep_id": "s"},
        "config": {"optimizer": {"lr": lr}, "batch_size": 32, "seed": 0,
                   "tracking": {"name": tracking, "project": "powertrain", "mode": "offline"}},
        "metrics": {"final_accuracy": acc, "best_accuracy": acc, "epochs": len(history or []), "steps": 10,
                    "target_accuracy": target, "reached_target": e_target is not None,
                    "energy_to_target_j": e_target},
        "energy": {"total_j": energy_j, "train_j": energy_j, "eval_j": 0.0, "measured_fraction": 0.5,
                   "components": [
                       {"name": "cpu:package-0", "kind": "cpu", "method": "rapl", "measured": True,
                        "energy_j": energy_j / 2, "measured_j": energy_j / 2},
                       {"name": "gpu:0", "kind": "gpu", "method": "tdp_utilization_estimate", "measured": False,
                        "energy_j": energy_j / 2, "measured_j": 0.0}]},
        "carbon": {"region": region, "pue": 1.2, "operational_g": None if region is None else energy_j / 10000,
                   "embodied_g": 0.001, "total_g": None if region is None else energy_j / 10000 + 0.001},
        "time": {"wall_s": 10.0, "train_s": 9.0},
        "hardware": {"device": "cuda", "cpu_model": "Test CPU", "cpu_count": 4, "gpus": ["Test GPU"],
                     "platform": "Linux-test"},
        "history": history or [],
    }


def _job(d: Path, result: dict[str, Any] | None, overrides: list[str] = ()) -> None:
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if result is not None:
        (d / "result.json").write_text(json.dumps(result))


@pytest.fixture
def study(grid: Path, tmp_path: Path) -> Path:
    """A study dir: the real grid as one part, a hand-written part with every other status."""
    root = tmp_path / "study"
    shutil.copytree(grid, root / "grid", ignore=shutil.ignore_patterns("report.*", "figures", "emissions.csv"))
    other = root / "other"
    base = _results(grid)[0]["config"]  # the real config: only the learning rate differs, as in a real study

    def _result(*args: Any, **kw: Any) -> dict[str, Any]:
        res = _hand_result(*args, **kw)
        res["config"] = {**base, "optimizer": {**base["optimizer"], "lr": args[1]}}
        return res

    hist = [{"epoch": 1, "accuracy": 0.3, "energy_j": 40.0, "wall_s": 4.0},
            {"epoch": 2, "accuracy": 0.6, "energy_j": 80.0, "wall_s": 8.0}]
    _job(other / "0", _result("failed", 0.3, 5.0, None))
    _job(other / "1", _result("diverged", 1.0, 30.0, 0.1))
    _job(other / "2", _result("preempted", 0.3, 12.0, 0.2))
    _job(other / "3", _result("pruned", 0.3, 7.0, 0.25))
    # an older result without energy_to_target_j: derived from its history, and said so
    _job(other / "4", {**_result("completed", 0.05, 80.0, 0.6, hist),
                       "metrics": {"final_accuracy": 0.6, "target_accuracy": 0.5, "epochs": 2}})
    _job(other / "5", None, ["optimizer.lr=0.001"])  # queued on Slurm: no result.json yet
    return root


# --------------------------------------------------------------------------------------- load_sweep


def test_load_sweep_has_the_specified_columns(grid: Path) -> None:
    import powertrain

    df = powertrain.load_sweep(grid)
    assert len(df) == 4 and set(df["part"]) == {""}
    for col in ("run_dir", "part", "status", "error", "optimizer.lr", "batch_size", "seed", "final_accuracy",
                "best_accuracy", "epochs", "steps", "reached_target", "energy_to_target_j", "time_to_target_s",
                "total_j", "train_j", "eval_j", "measured_fraction", "energy.cpu:package-0.j",
                "energy.cpu:package-0.method", "operational_g", "embodied_g", "total_g", "wall_s", "train_s",
                "history"):
        assert col in df.columns, col
    assert report.factors(df) == ["batch_size", "optimizer.lr"]
    by_dir = {r["run"]["dir"]: r for r in _results(grid)}
    for _, row in df.iterrows():
        res = by_dir[row["run_dir"]]
        assert row["total_j"] == pytest.approx(res["energy"]["total_j"])
        assert row["optimizer.lr"] == res["config"]["optimizer"]["lr"]
        assert len(row["history"]) == res["metrics"]["epochs"]


def test_study_rows_keep_every_status_and_derive_to_target_from_history(study: Path) -> None:
    df = report.load_sweep(study)
    assert sorted(set(df["part"])) == ["grid", "other"]
    other = df[df["part"] == "other"].set_index("job")
    assert list(other["status"]) == ["failed", "diverged", "preempted", "pruned", "completed", "pending"]
    assert other.loc["other/5", "optimizer.lr"] == 0.001  # a pending run's factors, from its overrides
    derived = other.loc["other/4"]
    assert derived["energy_to_target_j"] == 80.0 and derived["time_to_target_s"] == 8.0
    assert derived["to_target_source"].startswith("derived from history")
    # once the sweep has ended (its summary says so), a job without a result.json is missing, not pending
    report.report(study / "other", ended=True)
    assert report.load_sweep(study).set_index("job").loc["other/5", "status"] == "missing"


def test_a_hand_rerun_report_keeps_queued_jobs_pending(study: Path) -> None:
    assert report_main([str(study / "other")]) == 0  # not the end-of-sweep callback: the sweep may be running
    assert report.load_sweep(study / "other").set_index("job").loc["5", "status"] == "pending"


# ------------------------------------------------------------------------------------------ numbers


def test_report_numbers_match_the_result_files(grid: Path) -> None:
    results = _results(grid)
    md = (grid / "report.md").read_text()
    reached = {(r["config"]["batch_size"], r["config"]["optimizer"]["lr"]): r["metrics"]["energy_to_target_j"]
               for r in results if r["metrics"]["energy_to_target_j"] is not None}
    assert reached, "the tiny grid should reach 50 % in at least one cell"
    ratio = max(reached.values()) / min(reached.values())
    assert f"{ratio:.2f}x" in md
    w = report.load_sweep(grid)
    from powertrain.report.analysis import worst_best

    wb = worst_best(w)[0]
    assert wb["ratio"] == pytest.approx(ratio)
    missed = [f"batch_size={bs} optimizer.lr={lr}" for bs, lr in
              {(r["config"]["batch_size"], r["config"]["optimizer"]["lr"]) for r in results} - set(reached)]
    assert sorted(wb["not_reached"]) == sorted(missed)
    total_j = sum(r["energy"]["total_j"] for r in results)
    assert "| - | 4 | " in md and f"| {total_j:.4g} |" in md  # campaign totals row
    # per-factor row of batch_size=32: min/median/max energy-to-target across the learning rates
    e32 = [r["metrics"]["energy_to_target_j"] for r in results
           if r["config"]["batch_size"] == 32 and r["metrics"]["energy_to_target_j"] is not None]
    if e32:
        cells = f"| {min(e32):.4g} | {statistics.median(e32):.4g} | {max(e32):.4g} |"
        assert any(line.startswith("| batch_size | 32 |") and cells in line for line in md.splitlines())


def test_study_report_shows_every_status_and_the_derivation(study: Path) -> None:
    report.write_report(study)
    md = (study / "report.md").read_text()
    runs = md.split("## Runs", 1)[1]
    for status in ("failed", "diverged", "preempted", "pruned", "pending", "target_reached"):
        assert f"| {status} |" in runs, status
    assert "boom" in runs  # the failed run's error
    assert "derived from history" in md
    assert "Measured share of the energy: " in md and "cpu:package-0: rapl (measured)" in md
    assert "powertrain optimizer.lr=0.001" in md  # the pending run's command line, from .hydra


# ------------------------------------------------------------------------------------------- files


def test_html_is_one_self_contained_file(grid: Path) -> None:
    text = (grid / "report.html").read_text()
    assert "http:" not in text and "https:" not in text
    assert not re.search(r"<link|<script|@import|url\(", text, re.I)
    srcs = re.findall(r"src=['\"]([^'\"]*)", text)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "ESTIMATE" in text  # this CPU-only machine has no readable counter: every figure is an estimate
    names = {p.name for p in (grid / "figures").iterdir()}
    for fig in ("accuracy_vs_energy", "convergence", "energy_to_target_heatmap", "energy_components"):
        assert {f"{fig}.png", f"{fig}.svg"} <= names
        assert f"figures/{fig}.png" in (grid / "report.md").read_text()


def test_emissions_csv_has_codecarbon_columns_and_invents_nothing(grid: Path, study: Path) -> None:
    with open(grid / "emissions.csv") as f:
        assert f.readline().strip() == CODECARBON_HEADER
    with open(grid / "emissions.csv") as f:
        rows = {r["run_id"]: r for r in csv.DictReader(f)}
    for res in _results(grid):
        r = rows[res["run"]["id"]]
        assert float(r["energy_consumed"]) == pytest.approx(res["energy"]["total_j"] / 3.6e6)
        assert r["emissions"] == "" and r["latitude"] == "" and r["country_iso_code"] == ""  # no region
        assert r["python_version"] == res["hardware"]["python"] and r["tracking_mode"] == "process"
        # duration is the span the energies cover (train + eval), so power = energy / duration
        span_s = res["time"]["train_s"] + res["time"]["eval_s"]
        assert float(r["duration"]) == pytest.approx(span_s)
        cpu_j = sum(c["energy_j"] for c in res["energy"]["components"] if c["kind"] == "cpu")
        assert float(r["cpu_power"]) == pytest.approx(cpu_j / span_s)
    other = study / "other"
    _job(other / "6", _hand_result("completed", 0.1, 36.0, 0.7, region="DEU", trial_dir="deu"))
    report.write_report(other)
    with open(other / "emissions.csv") as f:
        rows = {r["run_id"]: r for r in csv.DictReader(f)}
    deu = rows["deu"]
    assert float(deu["emissions"]) == pytest.approx(36.0 / 10000 / 1000)  # operational g -> kg
    assert float(deu["gpu_energy"]) == pytest.approx(18.0 / 3.6e6) and deu["country_iso_code"] == "DEU"
    assert rows[str((other / "5").resolve())]["energy_consumed"] == ""  # the pending run: id only
    assert "| DEU |" in (other / "report.md").read_text()  # the carbon table, region set


# --------------------------------------------------------------------------------------------- CLI


def test_powertrain_report_dispatches_before_hydra(study: Path, monkeypatch, capsys) -> None:
    from powertrain.__main__ import main

    (study / "study.json").write_text(json.dumps({"driver": "no_such_driver"}))
    monkeypatch.setattr(sys, "argv", ["powertrain", "report", str(study)])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 0
    captured = capsys.readouterr()
    assert f"report: {study / 'report.html'}" in captured.out
    assert "no analysis for study driver 'no_such_driver'" in captured.err


def test_study_driver_sections_come_first(study: Path, monkeypatch) -> None:
    seen = {}

    def analyze(df: Any, study_json: dict[str, Any]) -> list[report.Section]:
        seen["rows"], seen["json"] = len(df), study_json
        return [report.Section("Headline", "worst costs 4.2x the best",
                               [report.Table(["cell", "J"], [["lr=0.1", 39.1]], "cells")])]

    drivers = {"geissler_lr_batch": types.SimpleNamespace(analyze=analyze)}
    (study / "study.json").write_text(json.dumps({"driver": "geissler_lr_batch", "scale": "smoke"}))
    # the entry point passes the studies' analyzer in (the report never imports the studies above it)
    assert report_main([str(study)], analyzer=lambda name: drivers[name].analyze) == 0
    md = (study / "report.md").read_text()
    assert md.index("## Headline") < md.index("## Overview") and "| lr=0.1 | 39.1 |" in md
    assert seen == {"rows": 10, "json": {"driver": "geissler_lr_batch", "scale": "smoke"}}


def test_search_figure_for_optuna_trials(tmp_path: Path) -> None:
    s = tmp_path / "search"
    accs = [0.3, 0.5, 0.45, 0.8]
    for i, a in enumerate(accs):
        _job(s / str(i), _hand_result("completed", 0.1 * (i + 1), 10.0 * (i + 1), a))
    (s / OPTUNA_STUDY_FILE).write_text(json.dumps({"trials": [{"number": i, "job": str(i)} for i in range(4)]}))
    from powertrain.report.analysis import search_curves

    c = search_curves(report.load_sweep(s))["search"]
    assert c["best"] == [0.3, 0.5, 0.5, 0.8] and c["energy_j"] == [10.0, 30.0, 60.0, 100.0]
    report.write_report(s)
    assert (s / "figures" / "search_progress.png").is_file()
    assert "| 4 | 4 completed |" in (s / "report.md").read_text()


def test_heatmap_tells_unreached_cells_from_cells_without_a_target_or_a_run(tmp_path: Path) -> None:
    """A study's pretraining run has no target: its cell says so instead of 'not reached'."""
    from powertrain.report.figures import energy_heatmap

    s = tmp_path / "sweep"
    cells = [(0.1, 32, 0.5, 5.0), (0.01, 32, 0.5, None), (0.1, 64, None, None)]  # (0.01, 64) never ran
    for i, (lr, bs, target, e_target) in enumerate(cells):
        res = _hand_result("completed", lr, 10.0, 0.4, e_target=e_target, target=target)
        res["config"]["batch_size"] = bs
        res["run"]["overrides"] = [f"optimizer.lr={lr}", f"batch_size={bs}"]
        _job(s / str(i), res, res["run"]["overrides"])
    fig = energy_heatmap(report.load_sweep(s))
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert texts == {"5 J", "not\nreached", "no target", "no run"}


def test_runs_of_a_study_with_one_part_are_labelled_by_their_factors(tmp_path: Path) -> None:
    """geissler_lr_batch's runs all sit in its part 'grid': the bars are named by lr, batch and seed."""
    from powertrain.report.figures import energy_components

    root = tmp_path / "study"
    for i, (lr, bs, seed) in enumerate([(0.1, 32, 0), (0.01, 64, 1)]):
        res = _hand_result("completed", lr, 10.0, 0.4)
        res["config"].update(batch_size=bs, seed=seed)
        res["run"]["overrides"] = [f"optimizer.lr={lr}", f"batch_size={bs}", f"seed={seed}"]
        _job(root / "grid" / str(i), res, res["run"]["overrides"])
    df = report.load_sweep(root)
    assert set(df["part"]) == {"grid"}
    ticks = [t.get_text() for t in energy_components(df).axes[0].get_xticklabels()]
    assert len(ticks) == 2 and all("lr=" in t and "batch_size=" in t and "seed=" in t for t in ticks), ticks


def test_many_runs_are_coloured_by_a_factor_with_few_levels(tmp_path: Path) -> None:
    """18 runs of a 3-lr grid: the convergence plot's legend names each learning rate, low to high,
    instead of 18 unreadable labels or none."""
    from powertrain.report.figures import accuracy_vs_energy, convergence

    s = tmp_path / "sweep"
    hist = [{"epoch": 1, "accuracy": 0.3, "energy_j": 4.0}, {"epoch": 2, "accuracy": 0.5, "energy_j": 8.0}]
    for i in range(18):
        lr, bs = (0.1, 0.02, 0.005)[i % 3], (32, 128, 512, 1024, 2048, 4096)[i // 3]
        res = _hand_result("completed", lr, 8.0 + i, 0.5, history=hist)
        res["config"]["batch_size"] = bs
        res["run"]["overrides"] = [f"optimizer.lr={lr}", f"batch_size={bs}"]
        _job(s / str(i), res, res["run"]["overrides"])
    df = report.load_sweep(s)
    levels = ["optimizer.lr = 0.005", "optimizer.lr = 0.02", "optimizer.lr = 0.1"]
    assert [t.get_text() for t in convergence(df).axes[0].get_legend().get_texts()][:3] == levels
    assert levels[0] in [t.get_text() for t in accuracy_vs_energy(df).axes[0].get_legend().get_texts()]


@pytest.mark.parametrize("target", [0.5, None])
def test_per_factor_effects_pool_the_other_factors(tmp_path: Path, target: float | None) -> None:
    """Each level of lr over both batch sizes: energy to target with a target, the energy spent without."""
    from powertrain.report.analysis import factor_effects

    s = tmp_path / "sweep"
    energy = {(0.1, 32): 10.0, (0.1, 64): 30.0, (0.01, 32): 20.0, (0.01, 64): 60.0}
    for i, ((lr, bs), e) in enumerate(energy.items()):
        res = _hand_result("completed", lr, e, 0.4, e_target=None if target is None else e / 2, target=target)
        res["config"]["batch_size"] = bs
        res["run"]["overrides"] = [f"optimizer.lr={lr}", f"batch_size={bs}"]
        _job(s / str(i), res, res["run"]["overrides"])
    t = factor_effects(report.load_sweep(s))
    rows = {(r[0], r[1]): dict(zip(t.columns, r)) for r in t.rows}
    lr01 = rows[("optimizer.lr", 0.1)]
    if target is None:
        assert "reached target" not in t.columns
        assert (lr01["energy min (J)"], lr01["energy median (J)"], lr01["energy max (J)"]) == (10.0, 20.0, 30.0)
    else:
        assert lr01["reached target"] == 2
        assert (lr01["E->target min (J)"], lr01["E->target max (J)"]) == (5.0, 15.0)
    assert rows[("batch_size", 64)]["accuracy median (%)"] == pytest.approx(40.0)


def test_report_package_import_stays_light() -> None:
    code = ("import sys, powertrain, powertrain.report\nfrom powertrain.report import Section, Table\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pandas', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr


def test_report_is_logged_to_one_wandb_run(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("wandb")
    from test_wandb import read_run

    for k in ("DIR", "CONFIG_DIR", "CACHE_DIR"):
        monkeypatch.setenv(f"WANDB_{k}", str(tmp_path / k))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    s = tmp_path / "tracked"
    for i in range(2):
        _job(s / str(i), _hand_result("completed", 0.1 * (i + 1), 10.0, 0.5 + i / 10, tracking="wandb"))
    report.write_report(s)
    config, history, summary, run = read_run(str(s))
    assert run.job_type == "report" and run.run_group == "s"  # the runs' sweep_id is the group
    assert summary["runs"] == 2 and summary["energy_total_j"] == pytest.approx(20.0)
    assert any(k.startswith("figures/accuracy_vs_energy") for k in summary)
    assert any(k.startswith("tables/") for k in summary)


def _grid_of(root: Path, n: int, tracking: str = "none") -> Path:
    """``n`` hand-written runs over optimizer x lr x batch size (seeds beyond 36), as a sweep writes them."""
    opts, lrs, bss = ["sgd", "adam", "adamw"], [0.1, 0.02, 0.005], [32, 128, 512, 1024]
    for i in range(n):
        opt, lr, bs, seed = opts[i % 3], lrs[(i // 3) % 3], bss[(i // 9) % 4], i // 36
        e, acc = 10.0 + 7 * i, 0.4 + 0.5 * ((i * 7) % 11) / 11
        hist = [{"epoch": k + 1, "accuracy": acc * (k + 1) / 3, "energy_j": e * (k + 1) / 3} for k in range(3)]
        res = _hand_result("target_reached" if acc > 0.6 else "completed", lr, e, acc, history=hist,
                           e_target=e if acc > 0.6 else None, target=0.6, trial_dir=f"r{i}", tracking=tracking)
        res["config"].update(batch_size=bs, seed=seed, optimizer={"name": opt, "lr": lr})
        res["run"]["overrides"] = [f"optimizer={opt}", f"optimizer.lr={lr}", f"batch_size={bs}", f"seed={seed}"]
        _job(root / str(i), res, res["run"]["overrides"])
    return root


@pytest.mark.parametrize("n", [1, 4, 50])
def test_figures_fit_their_canvas_and_name_factors_as_overrides(tmp_path: Path, n: int) -> None:
    """Nothing drawn sticks out of the figure (so no label is clipped, whatever saves it), and factors
    read as the override a user typed: optimizer=sgd, optimizer.lr=0.1 (not name=sgd, lr=0.1)."""
    from powertrain.report import figures

    df = report.load_sweep(_grid_of(tmp_path / "sweep", n))
    made = figures.all_figures(df)
    assert {"accuracy_vs_energy", "convergence", "energy_components"} <= {name for name, _ in made}
    texts = []
    for name, fig in made:
        fig.canvas.draw()
        box = fig.get_tightbbox(fig.canvas.get_renderer())
        width, height = fig.get_size_inches()
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height, (name, box, width, height)
        texts += [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
        if name == "energy_components":  # the legend stands beside the axes, off the bars' totals
            ax = fig.axes[0]
            assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1
    joined = "\n".join(texts)
    assert "name=" not in joined and " lr=" not in joined and not joined.startswith("lr=")
    if n > 1:
        assert re.search(r"optimizer ?= ?(sgd|adam)", joined), joined[:2000]
    if n == 4:  # few runs: each is labelled with its overrides
        assert "optimizer=sgd optimizer.lr=0.1" in joined, joined[:2000]


def test_html_captions_say_what_a_figure_shows_and_the_title_names_the_sweep(tmp_path: Path) -> None:
    root = _grid_of(tmp_path / "2026-11-22" / "10-00-00", 4)
    text = report.write_report(root).read_text()
    assert "<title>powertrain report: sweep, 2026-11-22 10:00:00</title>" in text
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", text)
    assert len(captions) >= 4 and all(" " in c and "_" not in c for c in captions), captions
    assert "Swept factors: optimizer, optimizer.lr." in text


def test_wandb_copy_takes_the_per_factor_table_of_numbers_and_names(tmp_path: Path, monkeypatch, capsys) -> None:
    """The per-factor table's ``level`` column holds 0.1 beside sgd: W&B refused the whole upload."""
    pytest.importorskip("wandb")
    from test_wandb import read_run

    for k in ("DIR", "CONFIG_DIR", "CACHE_DIR"):
        monkeypatch.setenv(f"WANDB_{k}", str(tmp_path / k))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    root = _grid_of(tmp_path / "tracked", 6, tracking="wandb")
    report.write_report(root)
    assert "W&B upload skipped" not in capsys.readouterr().err
    _, _, summary, _ = read_run(str(root))
    assert any(k.startswith("tables/Per-factor effects") for k in summary), sorted(summary)


def test_a_wandb_problem_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    pytest.importorskip("wandb")
    import wandb

    def broken(*args: Any, **kwargs: Any) -> None:
        raise TypeError("Data row contained incompatible types:\nKey 'level': ...\n" + "detail\n" * 13)

    monkeypatch.setattr(wandb, "init", broken)
    root = _grid_of(tmp_path / "tracked", 2, tracking="wandb")
    report.write_report(root)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == ["powertrain report: W&B upload skipped (TypeError: Data row contained incompatible types:)"]
    assert (root / "report.html").is_file()


def test_report_of_a_single_run_directory_reports_that_run(tmp_path: Path, capsys) -> None:
    run = tmp_path / "outputs" / "2026-11-22" / "14-35-05"
    _job(run, _hand_result("completed", 0.1, 42.0, 0.9, trial_dir="14-35-05"))
    assert report_main([str(run)]) == 0
    out = capsys.readouterr().out
    assert "no jobs found" not in out and "jobs: 1 (1 completed)" in out
    md = (run / "report.md").read_text()
    assert "# powertrain report: run, 2026-11-22 14:35:05" in md and "1 runs (1 completed)" in md
    with open(run / "emissions.csv") as f:
        assert [r["run_id"] for r in csv.DictReader(f)] == ["14-35-05"]


def test_report_of_a_directory_without_runs_is_one_line_and_writes_nothing(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "nothing"
    (empty / "sub").mkdir(parents=True)
    assert report_main([str(empty)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no powertrain run" in err[0]
    assert sorted(p.name for p in empty.rglob("*")) == ["sub"]


def test_report_help_is_whole_sentences(capsys) -> None:
    with pytest.raises(SystemExit):
        report_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Summarize a sweep, a study or a single run and write its report:" in text
    assert "Runs still queued show as pending." in text


def test_factors_straight_after_import_powertrain() -> None:
    code = ("import powertrain, pandas as pd\n"
            "df = pd.DataFrame({'optimizer.lr': [0.1, 0.01], 'status': ['completed'] * 2})\n"
            "print(powertrain.report.factors(df))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "['optimizer.lr']", out.stderr
