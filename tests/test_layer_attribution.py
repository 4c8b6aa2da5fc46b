"""Per-layer-type energy attribution: profiled operator time splits the train energy, labelled as such."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest


@dataclass
class Event:  # the fields of torch.autograd.profiler_util.FunctionEvent that the attribution reads
    name: str
    self_cpu_time_total: float
    cpu_parent: Optional[Event] = None
    self_device_time_total: float = 0.0


def test_operations_are_given_to_the_nearest_named_layer_type() -> None:
    from powertrain.energy.layers import time_shares

    addmm_bw = Event("autograd::engine::evaluate_function: AddmmBackward0", 1.0)
    addmm_node = Event("AddmmBackward0", 0.5, addmm_bw)
    conv = Event("aten::conv2d", 2.0)
    step = Event("Optimizer.step#Adam.step", 1.0)
    events = [conv, Event("aten::mkldnn_convolution", 30.0, conv), addmm_bw, addmm_node,
              Event("aten::mm", 10.0, addmm_node),  # a linear layer's backward
              Event("aten::threshold_backward", 3.0), Event("aten::native_batch_norm", 4.0),
              Event("aten::max_pool2d_with_indices", 5.0), step, Event("aten::_foreach_mul_", 6.0, step),
              Event("aten::view", 2.5)]
    t = time_shares(events, device_time=False)
    assert t == {"conv": 32.0, "linear": 11.5, "activation": 3.0, "norm": 4.0, "pool": 5.0, "optimizer": 7.0,
                 "other": 2.5}
    assert sum(t.values()) == sum(e.self_cpu_time_total for e in events)  # every microsecond given once


def _run(cli: Any, tmp_path: Path, name: str, *args: str) -> dict[str, Any]:
    out = tmp_path / name
    proc = cli("max_epochs=1", "energy.layer_profile_steps=3", *args, f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "USDT" not in proc.stderr and "profiler_start" not in proc.stderr  # the profiler's own chatter
    # the summary names the split; which type comes first (largest share) depends on 3 profiled steps'
    # timing, so only its presence and the conv share are pinned
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("train energy by layer type")), "")
    assert line.startswith("train energy by layer type (attribution by profiled time, not measured): ")
    assert " conv " in line
    return json.loads((out / "result.json").read_text())["energy"]


def test_a_run_splits_its_train_energy_by_layer_type(tmp_path: Path, cli: Any) -> None:
    e = _run(cli, tmp_path, "cnn")
    att = e["layer_attribution"]
    assert att["measured"] is False and att["method"] == "profiler_time_share_attribution"
    assert "not a measurement" in att["assumption"] and att["steps"] == 3
    assert sum(att["share"].values()) == pytest.approx(1.0)
    assert sum(att["energy_j"].values()) == pytest.approx(e["train_j"])  # the train window, split
    assert e["total_j"] == pytest.approx(e["train_j"] + e["eval_j"])  # and nothing added to the total
    for kind in ("conv", "linear", "activation", "norm", "pool", "optimizer"):
        assert att["share"][kind] > 0, kind  # SimpleCNN has every one of them
    no_relu = _run(cli, tmp_path, "relu_off", "model.relu=false")["layer_attribution"]
    assert no_relu["share"]["activation"] == 0.0


def test_off_by_default_and_a_negative_step_count_is_refused(tmp_path: Path, cli: Any) -> None:
    proc = cli("energy.layer_profile_steps=-1", f"hydra.run.dir={tmp_path / 'bad'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("powertrain: error: energy.layer_profile_steps=-1")
    from powertrain.config import EnergyConfig

    assert EnergyConfig().layer_profile_steps == 0  # a plain run profiles nothing


def test_layers_study_report_shows_each_variants_energy_by_layer_type() -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("matplotlib")
    from powertrain.studies.yarally_layers import analyze

    def run(part: str, conv_j: float) -> dict[str, Any]:
        att = {"share": {}, "energy_j": {"conv": conv_j, "linear": 1.0, "optimizer": 2.0}}
        return {"part": part, "result": {"energy": {"layer_attribution": att}}}

    df = pd.DataFrame([run("conv_4", 9.0), run("default", 4.0)])
    rows = [{"variant": v, "energy_j": 1.0, "accuracy": 0.9, "status": "completed"} for v in ("default", "conv_4")]
    sections = analyze(df, {"summary": {"variants": rows, "changes": {}, "report": ["x"]}})
    layer = next(s for s in sections if s.title.startswith("Energy by layer type"))
    table = layer.tables[0]
    assert [r[0] for r in table.rows] == ["default", "conv_4"]  # the study's order, default first
    conv = table.columns.index("conv (J)")
    assert [r[conv] for r in table.rows] == [4.0, 9.0]
    assert table.rows[1][table.columns.index("conv (%)")] == pytest.approx(100 * 9 / 12)
    assert "not a measurement" in layer.text and layer.figures[0][0] == "layer_energy"
