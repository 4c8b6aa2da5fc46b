"""``run.checkpoint.Checkpoint``: the end's synchronous save and the progress saves' snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from powertrain.energy.base import ComponentEnergy, Ledger, Measurement
from powertrain.run import checkpoint as ckpt
from powertrain.run.checkpoint import Checkpoint, config_json
from powertrain.train import FitState


def _setup() -> tuple[nn.Module, Any, Ledger, str]:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()  # momentum buffers: optimizer state to save
    ledger = Ledger()
    ledger.add("train", Measurement("train", 1.0, [ComponentEnergy("cpu:0", "cpu", "rapl", True, 2.0, 2.0)]))
    ledger.epochs.append({"epoch": 1, "energy_j": 2.0, "wall_s": 1.0, "components_j": {"cpu:0": 2.0}})
    return model, opt, ledger, config_json({"seed": 0})


def test_the_end_save_writes_the_live_tensors_without_a_host_copy(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    model, opt, ledger, key = _setup()

    def no_copy(obj: Any) -> Any:
        raise AssertionError("a synchronous save must not copy the model and optimizer first")

    monkeypatch.setattr(ckpt, "_host_copy", no_copy)
    ck = Checkpoint(tmp_path)
    ck.save(model, opt, None, FitState(epoch=1), ledger, [{"status": "completed"}], "completed", key)
    saved = ck.load()
    assert saved["config_json"] == key and saved["status"] == "completed"
    assert all(torch.equal(saved["model"][k], v) for k, v in model.state_dict().items())
    assert torch.equal(saved["optimizer"]["state"][0]["momentum_buffer"], opt.state_dict()["state"][0]["momentum_buffer"])
    assert saved["ledger"] == ledger.to_dict()


def test_a_snapshot_shares_nothing_with_the_live_run() -> None:
    model, opt, ledger, key = _setup()
    snap = Checkpoint.snapshot(model, opt, None, FitState(), ledger, [], "running", key)
    assert snap["ledger"] == ledger.to_dict()
    ledger.add("train", Measurement("train", 1.0, [ComponentEnergy("cpu:0", "cpu", "rapl", True, 5.0, 5.0)]))
    ledger.epochs[0]["components_j"]["cpu:0"] = 99.0
    with torch.no_grad():
        model.weight.add_(1.0)
    assert snap["ledger"]["phases"]["train"]["cpu:0"]["energy_j"] == 2.0
    assert snap["ledger"]["phase_time_s"] == {"train": 1.0}
    assert snap["ledger"]["epochs"][0]["components_j"] == {"cpu:0": 2.0}
    assert not torch.equal(snap["model"]["weight"], model.weight)
