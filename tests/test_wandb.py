"""W&B tracking: offline runs are written and read back from their .wandb record files."""

import glob
import json
import logging
import os
import struct
import time

import pytest

pytest.importorskip("wandb")

from powertrain.config import TrackingConfig  # noqa: E402
from powertrain.tracking import SafeTracker, build_tracker  # noqa: E402

# wandb 0.31 writes no wandb-summary.json offline and has no Python reader for its .wandb files
# (the old DataStore moved into wandb-core), so decode its LevelDB-log framing here and parse the
# records with wandb's own protobuf classes. The framing has been stable since wandb 0.10.
BLOCK = 32768
HEADER = b":W&B\xe1\xbe\x00"  # ident, magic 0xBEE1, version 0


def read_records(path):
    from wandb.proto import wandb_internal_pb2 as pb

    data = open(path, "rb").read()
    assert data[:7] == HEADER, "unknown .wandb format: check the pinned wandb version"
    pos, pending, records = 7, b"", []
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # a block tail too short for a record header is zero padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            pos += left
            continue
        if pos + 7 + length > len(data):  # a record still being written
            break
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:  # full
            records.append(chunk)
        elif kind == 2:  # first
            pending = chunk
        elif kind == 3:  # middle
            pending += chunk
        elif kind == 4:  # last
            records.append(pending + chunk)
    out = []
    for raw in records:
        rec = pb.Record()
        rec.ParseFromString(raw)
        out.append(rec)
    return out


def _key(item):
    return "/".join(item.nested_key) if item.nested_key else item.key


def read_run(run_dir):
    """(config, history rows, summary, run record) of the one offline run under ``run_dir``."""
    files = glob.glob(os.path.join(run_dir, "wandb", "offline-run-*", "run-*.wandb"))
    assert len(files) == 1, files
    # finish() returns once wandb-core has handled the exit record, but its writer may flush the
    # file a moment later (the service outlives the run), so wait for the exit record to land
    deadline = time.monotonic() + 20
    while True:
        records = read_records(files[0])
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    config, history, summary, run = {}, [], {}, None
    for rec in records:
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run = rec.run
            config.update({u.key: json.loads(u.value_json) for u in rec.run.config.update})
        elif kind == "config":
            config.update({u.key: json.loads(u.value_json) for u in rec.config.update})
        elif kind == "history":
            history.append({_key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            summary.update({_key(u): json.loads(u.value_json) for u in rec.summary.update})
    return config, history, summary, run


RESULT = {
    "status": "target_reached",
    "energy": {"total_j": 1234.5, "train_j": 1000.0, "eval_j": 234.5, "measured_fraction": 0.0},
    "carbon": {
        "operational_g": 0.13,
        "embodied_g": 0.02,
        "total_g": 0.15,
        "region": "DEU",
        "intensity_g_per_kwh": 380.95,
        "pue": 1.0,
    },
    "metrics": {
        "final_accuracy": 0.91,
        "best_accuracy": 0.92,
        "final_loss": 0.3,
        "epochs": 2,
        "reached_target": True,
        "energy_to_target_j": 1100.0,
    },
    "time": {"wall_s": 12.0},
}


@pytest.fixture(autouse=True)
def offline_wandb(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_default"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def _run(tmp_path, name, cfg=None, sweep_id=None, config=None, overrides=("optimizer.lr=0.01",), result=RESULT):
    run_dir = tmp_path / name
    tracker = build_tracker(cfg or TrackingConfig(name="wandb", tags=["t1"]))
    tracker.start(
        {"id": name, "dir": str(run_dir), "sweep_id": sweep_id, "name": name},
        config or {"optimizer": {"name": "sgd", "lr": 0.01}, "model": {"family": "simple_cnn"}, "batch_size": 32},
        list(overrides),
    )
    for epoch in (1, 2):  # the keys of a result.json history row, as run() logs them
        tracker.log_epoch(
            {
                "epoch": epoch, "steps": 10 * epoch, "train_loss": 1.0 / epoch, "accuracy": 0.5 + 0.2 * epoch,
                "loss": 0.9 / epoch, "epoch_train_j": 100.0, "epoch_eval_j": 20.0, "epoch_train_s": 1.0,
                "epoch_eval_s": 0.1, "energy_j": 120.0 * epoch, "wall_s": 1.2 * epoch,
                "epoch_components_j": {"cpu:package-0": 100.0},
                "components_j": {"cpu:package-0": 100.0 * epoch, "dram:0": 20.0 * epoch},
                "lr": 0.01, "carbon_g": 0.01 * epoch, "note": None,
            }
        )
    tracker.finish(result)
    return tracker, str(run_dir)


def test_offline_run_holds_history_summary_and_config(tmp_path):
    tracker, run_dir = _run(tmp_path, "job0", sweep_id="sweep-7")
    assert isinstance(tracker, SafeTracker) and not tracker.failed
    config, history, summary, run = read_run(run_dir)

    rows = [r for r in history if "epoch" in r]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["energy/components/cpu:package-0_j"] == 200.0
    assert rows[1]["energy/total_j"] == 240.0 and rows[1]["eval/accuracy"] == pytest.approx(0.9)
    assert rows[1]["carbon/operational_g"] == pytest.approx(0.02)
    assert rows[0]["train/loss"] == 1.0 and rows[0]["time/training_wall_s"] == 1.2
    assert "note" not in rows[0] and "eval/note" not in rows[0]

    assert summary["energy/total_j"] == 1234.5
    assert summary["carbon/total_g"] == 0.15
    assert summary["carbon/operational_g"] == 0.13
    assert summary["metrics/final_accuracy"] == 0.91
    assert summary["metrics/energy_to_target_j"] == 1100.0
    assert summary["energy/measured_fraction"] == 0.0

    assert config["optimizer.lr"] == 0.01 and config["optimizer.name"] == "sgd"  # flat: one column each
    assert config["overrides"] == ["optimizer.lr=0.01"]
    assert config["powertrain_run_id"] == "job0"
    assert run.run_group == "sweep-7"  # a multirun is one comparison view
    assert run.job_type == "train" and list(run.tags) == ["t1"] and run.project == "powertrain"


def test_the_summary_has_one_name_per_number(tmp_path):
    """The runs table: no per-epoch leftovers beside the run's figures (wall_s beside time/wall_s,
    carbon_g beside carbon/total_g, accuracy beside metrics/final_accuracy)."""
    _, run_dir = _run(tmp_path, "one")
    _, _, summary, _ = read_run(run_dir)
    shown = {k for k in summary if not k.startswith("_")}
    for old in ("wall_s", "carbon_g", "energy_j", "accuracy", "loss", "epoch", "train_loss", "steps", "lr"):
        assert old not in shown
    for per_epoch in ("eval/accuracy", "train/loss", "time/training_wall_s", "energy/epoch_train_j",
                      "time/epoch_train_s", "optimizer/lr", "energy/epoch_components/cpu:package-0_j"):
        assert per_epoch not in shown
    # a cumulative figure shows once, under the run figure's own name, with the result's value
    assert summary["energy/total_j"] == 1234.5 and summary["carbon/operational_g"] == 0.13
    assert summary["energy/components/dram:0_j"] == 40.0  # the component's whole-run joules


def test_runs_of_a_sweep_compare_in_one_group_with_no_setup(tmp_path):
    """What W&B's runs table, parallel coordinates and scatter plot need: one group, the swept keys as
    flat config columns, and energy, carbon and accuracy in every run's summary."""
    points = [("sgd", 0.1), ("adam", 0.1), ("sgd", 0.01)]
    for i, (opt, lr) in enumerate(points):
        result = {**RESULT, "energy": {**RESULT["energy"], "total_j": 100.0 + i},
                  "metrics": {**RESULT["metrics"], "final_accuracy": 0.8 + i / 100}}
        _run(tmp_path, f"job{i}", sweep_id="multirun/2026-11-22/10-00-00",
             config={"optimizer": {"name": opt, "lr": lr}, "batch_size": 32},
             overrides=[f"optimizer={opt}", f"optimizer.lr={lr}"], result=result)
    seen = []
    for i, (opt, lr) in enumerate(points):
        config, _, summary, run = read_run(str(tmp_path / f"job{i}"))
        seen.append(run.run_group)
        assert (config["optimizer.name"], config["optimizer.lr"]) == (opt, lr)
        assert summary["energy/total_j"] == 100.0 + i and summary["metrics/final_accuracy"] == 0.8 + i / 100
        assert summary["carbon/total_g"] == 0.15
    assert seen == ["multirun/2026-11-22/10-00-00"] * 3


def test_two_trackers_in_one_process_make_two_runs(tmp_path):
    _run(tmp_path, "a")
    _run(tmp_path, "b")
    for name in ("a", "b"):
        _, history, summary, run = read_run(str(tmp_path / name))
        assert run.display_name == name
        assert summary["energy/total_j"] == 1234.5
        assert len([r for r in history if "epoch" in r]) == 2


def test_wandb_mode_env_wins_over_config(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    tracker, run_dir = _run(tmp_path, "off", cfg=TrackingConfig(name="wandb", mode="offline"))
    assert not tracker.failed
    assert not glob.glob(os.path.join(run_dir, "wandb", "offline-run-*"))


def test_init_failure_is_one_warning_and_never_raises(tmp_path, monkeypatch):
    # online with a (fake) key and no network: init cannot reach the server within its timeout
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    cfg = TrackingConfig(name="wandb", mode="online", init_timeout_s=3, entity="no-such-entity")
    seen = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = seen.append  # what a console handler on the root logger would print
    logging.getLogger().addHandler(handler)
    try:
        tracker, _ = _run(tmp_path, "online", cfg=cfg)
    finally:
        logging.getLogger().removeHandler(handler)
    assert tracker.failed
    assert len(seen) == 1, [r.getMessage() for r in seen]
    assert seen[0].name == "powertrain" and "wandb tracking disabled" in seen[0].getMessage()
    # and the next run in the same process still works
    monkeypatch.delenv("WANDB_API_KEY")
    _run(tmp_path, "after")
    assert read_run(str(tmp_path / "after"))[2]["energy/total_j"] == 1234.5
