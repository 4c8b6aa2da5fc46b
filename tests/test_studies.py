"""Study presets, one composition path for every run, and the config's shape (defaults, imports)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "powertrain"


@pytest.mark.parametrize("args, line", [
    (["+foo=bar"], "powertrain: error: foo='bar' is not allowed: an existing config key"),
    (["+optimizer.lrr=0.1"], "powertrain: error: optimizer.lrr='0.1' is not allowed: an existing config key "
                             "(did you mean optimizer.lr?)"),
    (["seed=-1"], "powertrain: error: seed=-1 is not allowed: an integer in [0, 2**32) (numpy's seed range)"),
    (["experiment=multitask_vs_single", "study.taks=[a]"],
     "powertrain: error: study.taks='[a]' is not allowed: an existing config key (did you mean study.tasks?)"),
    (["experiment=pretrain_finetune", "study.scale=paperr"],
     "powertrain: error: study.scale='paperr' is not allowed: one of smoke, paper (did you mean 'paper'?)"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, cli: Any, args: list[str], line: str) -> None:
    proc = cli(*args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [line]
    assert not (tmp_path / "run" / "result.json").exists()


def test_schema_defaults_equal_the_composed_yaml_defaults(compose: Any) -> None:
    from powertrain.compose.validate import validate
    from powertrain.config import RunConfig

    assert asdict(validate(compose())) == asdict(RunConfig())


@pytest.mark.parametrize("preset", [[], ["experiment=pretrain_finetune"], ["experiment=multitask_vs_single"]])
def test_conf_never_sets_hydra_mode(preset: list[str]) -> None:
    """__main__._compose_once skips Hydra's mode-only composition on this promise."""
    from hydra import compose, initialize_config_dir

    from powertrain.compose.validate import register_configs
    from powertrain.config.paths import conf_dir

    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=preset, return_hydra_config=True)
    assert cfg.hydra.mode is None


def test_study_sweep_part_composes_the_preset_and_returns_its_sweep_dir(tmp_path: Path, compose: Any) -> None:
    """ctx.sweep runs a real multirun (the CLI path) of the preset into out_dir/<part>."""
    from powertrain.compose.validate import validate
    from powertrain.studies import StudyContext

    cfg = validate(compose("experiment=pretrain_finetune"))
    cfg.verbose = False
    ctx = StudyContext(cfg, tmp_path / "study", "pretrain_finetune",
                       overrides=["dataset=synthetic", "dataset.train_size=128", "dataset.limit_train=null",
                                  "hardware=cpu", "max_epochs=1", "save_checkpoint=false"])
    sweep_dir = ctx.sweep("grid", ["seed=0,1"])
    assert sweep_dir == tmp_path / "study" / "grid"
    results = [json.loads((sweep_dir / j / "result.json").read_text()) for j in ("0", "1")]
    assert [r["config"]["seed"] for r in results] == [0, 1]
    assert all(r["config"]["study"]["part"] == "grid" for r in results)
    assert all(r["config"]["model"]["family"] == "dense_poly" for r in results)  # the preset's model
    with pytest.raises(Exception, match=r"max_epochs=0 is not allowed.*\(in study part bad\)"):
        ctx.single("bad", ["max_epochs=0"])


def test_the_plugin_reach_check_runs_once_before_the_driver_not_before_every_part(tmp_path: Path,
                                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from powertrain import studies

    calls: list[str] = []

    class Driver:
        @staticmethod
        def run(ctx: Any) -> dict[str, Any]:
            calls.append("driver")
            ctx._call("a", [])
            ctx._call("b", [])
            return {"status": "completed"}

    def part(cmd: list[str], **kw: Any) -> Any:
        calls.append("part")
        return SimpleNamespace(returncode=0, stderr="")

    monkeypatch.setattr(studies.subprocess, "run", part)
    monkeypatch.setattr(studies, "STUDIES", {"fake": Driver})
    monkeypatch.setattr(studies, "_report", lambda *a: None)
    cfg = SimpleNamespace(verbose=False, study=SimpleNamespace(driver="fake", scale="smoke", seeds=[]))
    record = studies.run_study(studies.StudyContext(cfg, tmp_path, "fake"),  # type: ignore[arg-type]
                               check_parts=lambda c, who: calls.append(f"check {who}"))
    assert calls == ["check the study's parts", "driver", "part", "part"] and record["status"] == "completed"
