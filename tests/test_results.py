"""result.json: the docs/DESIGN.md contract holds for every way a run can end, and the file is written atomically."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from powertrain.config import ConfigError
from powertrain.results import STATUSES, exit_code, read_result, write_json_atomic, write_result
from powertrain.run import run

# docs/DESIGN.md, "The contract: result.json"
CONTRACT = {
    "": ["schema", "status", "error", "run", "config", "metrics", "energy", "carbon", "time", "hardware"],
    "run": ["id", "dir", "overrides", "started_at", "finished_at"],
    "metrics": ["final_accuracy", "best_accuracy", "final_loss", "epochs", "steps", "target_accuracy",
                "reached_target", "energy_to_target_j"],
    "energy": ["total_j", "train_j", "eval_j", "idle_baseline_w", "components", "measured_fraction"],
    "carbon": ["region", "intensity_g_per_kwh", "intensity_source", "pue", "operational_g", "embodied_g",
               "total_g"],
    "time": ["wall_s", "train_s", "eval_s"],
}
COMPONENT_KEYS = {"name", "kind", "method", "measured", "energy_j"}


def _rapl_readable() -> bool:
    return any(os.access(p, os.R_OK) for p in Path("/sys/class/powercap").glob("intel-rapl:*/energy_uj"))


def assert_contract(result: dict) -> None:
    for section, keys in CONTRACT.items():
        node = result if not section else result[section]
        assert isinstance(node, dict), section
        missing = [k for k in keys if k not in node]
        assert not missing, f"{section or 'top level'} lacks {missing}"
    assert result["schema"] == "powertrain.result/1"
    assert result["status"] in STATUSES
    assert isinstance(result["run"]["overrides"], list)
    started = dt.datetime.fromisoformat(result["run"]["started_at"])
    finished = dt.datetime.fromisoformat(result["run"]["finished_at"])
    assert started.tzinfo is not None and finished >= started
    for c in result["energy"]["components"]:
        assert COMPONENT_KEYS <= set(c), c
        assert c["kind"] in ("gpu", "cpu", "dram", "other")


def _no_temp_files(run_dir: Path) -> list[str]:
    return [p.name for p in run_dir.iterdir() if p.name.startswith(".result.json") or p.suffix == ".tmp"]


def test_completed_run_meets_the_contract_and_matches_the_file(tiny_cfg, tmp_path):
    r = run(tiny_cfg(max_epochs=2, save_checkpoint=True), tmp_path, overrides=["max_epochs=2"])
    assert_contract(r)
    assert read_result(tmp_path) == json.loads(json.dumps(r))  # the file is what run() returned
    assert r["status"] == "completed" and r["error"] is None
    assert r["run"]["overrides"] == ["max_epochs=2"] and r["run"]["dir"] == str(tmp_path.resolve())
    assert r["config"]["max_epochs"] == 2 and r["hardware"]["device"] == "cpu"
    e, t = r["energy"], r["time"]
    assert e["total_j"] == pytest.approx(e["train_j"] + e["eval_j"])
    assert e["train_j"] > 0 and e["eval_j"] > 0
    assert 0 < t["train_s"] + t["eval_s"] <= t["wall_s"]
    assert _no_temp_files(tmp_path) == []
    assert (tmp_path / "checkpoint.pt").exists()


def test_energy_components_are_labelled_and_never_silently_zero(tiny_cfg, tmp_path):
    r = run(tiny_cfg(max_epochs=1), tmp_path)
    comps = r["energy"]["components"]
    assert {c["kind"] for c in comps} >= {"cpu"}
    assert all(c["energy_j"] > 0 for c in comps), comps
    assert sum(c["energy_j"] for c in comps) == pytest.approx(r["energy"]["total_j"])
    measured = sum(c["energy_j"] for c in comps if c["measured"])
    assert r["energy"]["measured_fraction"] == pytest.approx(measured / r["energy"]["total_j"])


@pytest.mark.skipif(_rapl_readable(), reason="RAPL is readable here, so CPU energy is measured")
def test_without_counters_every_component_is_a_labelled_estimate(tiny_cfg, tmp_path):
    r = run(tiny_cfg(max_epochs=1), tmp_path)
    comps = r["energy"]["components"]
    assert comps and all(c["measured"] is False for c in comps)
    assert all("estimate" in c["method"] for c in comps), [c["method"] for c in comps]
    assert r["energy"]["measured_fraction"] == 0.0


def test_runtime_failure_still_writes_a_complete_failed_result(tiny_cfg, tmp_path, monkeypatch):
    from powertrain.train import ClassificationTask

    calls = []

    def failing_loss(self, model, batch):
        calls.append(1)
        if len(calls) == 3:  # mid-epoch, after some work was done
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore details here")
        return original(self, model, batch)

    original = ClassificationTask.loss
    monkeypatch.setattr(ClassificationTask, "loss", failing_loss)
    r = run(tiny_cfg(max_epochs=2), tmp_path)
    assert_contract(r)
    assert r["status"] == "failed" and exit_code(r["status"]) == 1
    assert r["error"] == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"  # one line
    assert "Traceback" in r["traceback"]
    assert read_result(tmp_path)["status"] == "failed"
    assert _no_temp_files(tmp_path) == []
    # the two steps done before the failure were metered, and so was loading the data
    assert r["energy"]["train_j"] > 0 and r["energy"]["total_j"] == pytest.approx(r["energy"]["train_j"])
    assert r["energy"]["setup_j"] > 0


def test_config_error_found_while_building_is_recorded_and_raised(tiny_cfg, tmp_path):
    # 8×8 inputs cannot take 4 halving conv blocks; that is only known once the data's shape is
    cfg = tiny_cfg(**{"model.family": "simple_cnn", "model.conv_blocks": 4})
    with pytest.raises(ConfigError):
        run(cfg, tmp_path)
    r = read_result(tmp_path)
    assert_contract(r)
    assert r["status"] == "failed" and r["error"].startswith("model.conv_blocks=4 is not allowed")


def test_a_single_run_on_a_gpu_index_past_the_last_is_refused_in_one_line(tiny_cfg, tmp_path, monkeypatch):
    # the sweep's preflight had this check and a single run did not: both now ask resolve_device
    import torch

    from powertrain.compose.preflight import Probe

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a one-GPU machine, GPU or not
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    line = "hardware.device='cuda:5' is not allowed: cuda:0 ... cuda:0 (this machine's GPUs) or auto"
    cfg = tiny_cfg(**{"hardware.device": "cuda:5"})
    with pytest.raises(ConfigError) as e:
        run(cfg, tmp_path)
    assert str(e.value) == line
    r = read_result(tmp_path)
    assert r["status"] == "failed" and r["error"] == line and r["metrics"]["epochs"] == 0
    with pytest.raises(ConfigError) as e:
        Probe()(cfg)
    assert str(e.value) == line


def test_diverged_and_budget_runs_meet_the_contract(tiny_cfg, tmp_path):
    diverged = run(tiny_cfg(**{"optimizer.lr": 1e6}), tmp_path / "d")
    budget = run(tiny_cfg(**{"budget.energy_j": 1e-3}), tmp_path / "b")
    for r in (diverged, budget):
        assert_contract(r)
        assert exit_code(r["status"]) == 1 and r["energy"]["total_j"] > 0
    assert (diverged["status"], budget["status"]) == ("diverged", "budget_exhausted")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    write_result(tmp_path, {"status": "completed"})
    before = (tmp_path / "result.json").read_text()

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        write_result(tmp_path, {"status": "failed"})
    assert (tmp_path / "result.json").read_text() == before  # a reader never sees half a file
    assert os.listdir(tmp_path) == ["result.json"]  # and the temp file is gone


def test_json_is_strict_and_secrets_are_dropped(tmp_path):
    path = tmp_path / "sub" / "result.json"
    write_json_atomic(path, {"loss": float("nan"), "inf": float("inf"), "dir": tmp_path,
                             "config": {"tracking": {"api_key": "k", "WANDB_TOKEN": "t", "project": "p"}}})
    data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert data["loss"] is None and data["inf"] is None and data["dir"] == str(tmp_path)
    assert data["config"]["tracking"] == {"project": "p"}


def test_exit_codes():
    assert [exit_code(s) for s in ("completed", "target_reached")] == [0, 0]
    assert [exit_code(s) for s in ("failed", "diverged", "preempted", "budget_exhausted")] == [1, 1, 1, 1]


def test_mixed_precision_on_a_cpu_fails_before_training_instead_of_running_fp32(tiny_cfg, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("hardware=auto picks the GPU here")
    with pytest.raises(ConfigError, match="precision"):
        run(tiny_cfg(precision="bf16", **{"hardware.device": "auto"}), tmp_path)
    r = read_result(tmp_path)
    assert r["status"] == "failed" and "precision" in r["error"] and r["metrics"]["epochs"] == 0


def test_temp_files_are_the_ones_open_temp_leaves_beside_a_path(tmp_path):
    import os

    from powertrain.results import CHECKPOINT_FILE, RESULT_FILE, open_temp, temp_files

    fds = [open_temp(tmp_path / RESULT_FILE)[0], open_temp(tmp_path / CHECKPOINT_FILE)[0]]
    for fd in fds:
        os.close(fd)
    (tmp_path / RESULT_FILE).write_text("{}")
    assert [p.name[: len(".result.json.")] for p in temp_files(tmp_path / RESULT_FILE)] == [".result.json."]
    assert [p.name[: len(".checkpoint.pt.")] for p in temp_files(tmp_path / CHECKPOINT_FILE)] == [".checkpoint.pt."]


def test_metric_text_is_percent_for_accuracy_and_four_decimals_otherwise():
    from powertrain.console import metric_text

    assert metric_text("accuracy", 0.98765) == "98.77%" and metric_text("r2", 0.98765) == "0.9877"


def test_a_run_clears_the_temp_files_a_killed_write_left(tiny_cfg, tmp_path):
    from powertrain.run import run

    for name in (".result.json.abc123", ".checkpoint.pt.def456"):
        (tmp_path / name).write_text("half written")
    (tmp_path / ".other.json.x").write_text("not ours")
    run(tiny_cfg(max_epochs=1), tmp_path)
    assert sorted(p.name for p in tmp_path.glob(".*")) == [".other.json.x"]
