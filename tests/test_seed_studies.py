"""Seed studies end to end: geissler_lr_batch at a tiny scale, its answer checked against the runs' files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

TINY = ["study.lrs=[0.1,0.005]", "study.batch_sizes=[32,512]", "study.seeds=[0]", "max_epochs=2",
        "target_accuracy=0.5", "dataset.train_size=2000", "dataset.test_size=500"]


@pytest.fixture
def lr_batch(tmp_path: Path, cli: Any) -> tuple[Any, Path]:
    out = tmp_path / "lr_batch"
    proc = cli("experiment=geissler_lr_batch", *TINY, f"hydra.run.dir={out}", cwd=out.parent, timeout=600)
    return proc, out


def _results(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((out / "grid").glob("*/result.json"))]


def test_lr_batch_study_answers_from_the_runs_result_files(lr_batch: tuple[Any, Path]) -> None:
    proc, out = lr_batch
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = _results(out)
    assert len(results) == 4  # 2 lr × 2 batch × 1 seed, each its own result.json
    study = json.loads((out / "study.json").read_text())
    s = study["summary"]
    assert study["driver"] == "geissler_lr_batch" and study["status"] == "completed"

    def cell(r: dict[str, Any]) -> str:
        return f"batch_size={r['config']['batch_size']} optimizer.lr={r['config']['optimizer']['lr']}"

    reached = {cell(r): r["metrics"]["energy_to_target_j"] for r in results if r["metrics"]["reached_target"]}
    missed = sorted(cell(r) for r in results if not r["metrics"]["reached_target"])
    assert len(reached) >= 2 and missed, "the tiny grid must have both kinds of cell to test anything"
    assert s["ratio"] == pytest.approx(max(reached.values()) / min(reached.values()))
    assert s["best"] == min(reached, key=reached.get) and s["worst"] == max(reached, key=reached.get)
    assert sorted(s["not_reached"]) == missed
    # the same answer is the first thing the user reads, on the terminal and in the report
    assert f"costs {s['ratio']:.1f}× the energy of the best" in proc.stdout
    html = (out / "report.html").read_text()
    assert "Learning rate × batch size" in html and f"{s['ratio']:.2f}x" in html
    for name in missed:
        assert name in html
    # the worst/best table once, in the study's section (not again in the generic one)
    md = (out / "report.md").read_text()
    assert md.count("the worst cell that reached it against the best") == 1 and "## Worst against best" not in md


def test_lr_batch_study_needs_a_target(tmp_path: Path, cli: Any) -> None:
    proc = cli("experiment=geissler_lr_batch", "target_accuracy=null", f"hydra.run.dir={tmp_path / 's'}",
               cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("powertrain: error: target_accuracy=None")
    assert not (tmp_path / "s" / "grid").exists()  # refused before any run


def test_paper_scale_takes_the_papers_grid_unless_given() -> None:
    from powertrain.config import RunConfig
    from powertrain.studies.geissler_lr_batch import PAPER_BATCH_SIZES, PAPER_LRS, PAPER_SEEDS, Config, grid

    cfg = RunConfig(study=Config(driver="geissler_lr_batch", scale="paper", seeds=[0, 1]))
    assert grid(cfg) == (list(PAPER_LRS), list(PAPER_BATCH_SIZES), list(PAPER_SEEDS))
    assert grid(cfg, {"study.seeds"})[2] == [0, 1]
    cfg.study.scale = "smoke"
    assert grid(cfg) == ([0.1, 0.02, 0.005], [32, 128, 512], [0, 1])


def test_layers_study_changes_are_computed_from_the_right_variants() -> None:
    from powertrain.config import RunConfig
    from powertrain.studies.yarally_layers import Config, headline_changes, variants

    cfg = RunConfig(study=Config(driver="yarally_layers"))
    # smoke: only the variants the paper's three headline changes need, from SimpleCNN's default
    assert [v[0] for v in variants(cfg)] == ["default", "conv_1", "conv_4", "linear_7", "relu_off"]
    cfg.study.scale = "paper"  # every level of the paper, one factor at a time
    names = [v[0] for v in variants(cfg)]
    assert names == ["default", "conv_1", "conv_3", "conv_4", "linear_4", "linear_5", "linear_6", "linear_7",
                     "relu_off"]
    assert [v[0] for v in variants(cfg, {"study.conv_blocks", "study.linear_layers"})] == names[:2] + names[3:4] \
        + names[7:]  # given on the command line: the given levels, also at paper scale
    energy = {"default": 100.0, "conv_1": 60.0, "conv_3": 140.0, "conv_4": 180.0, "linear_4": 101.0,
              "linear_5": 102.0, "linear_6": 104.0, "linear_7": 110.0, "relu_off": 97.0}
    rows = [{**model, "energy_j": energy[name]} for name, _, model in variants(cfg)]
    ch = headline_changes(rows, {"conv_blocks": 2, "linear_layers": 3, "relu": True})
    assert ch["conv 1→4"] == pytest.approx(180 / 60 - 1)  # conv_1 against conv_4, not against the default
    assert ch["linear 3→7"] == pytest.approx(110 / 100 - 1)  # linear 3 is the default itself
    assert ch["ReLU on vs off"] == pytest.approx(100 / 97 - 1)


def test_layers_study_refuses_a_model_without_layers_to_vary(tmp_path: Path, cli: Any) -> None:
    proc = cli("experiment=yarally_layers", "model=dense_poly", f"hydra.run.dir={tmp_path / 's'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("powertrain: error: model='dense_poly'")
