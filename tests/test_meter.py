"""``powertrain.Meter`` around a loop powertrain does not run: the CLI's meter, windows, carbon, DDP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fakes.powercap import make_powercap
from powertrain.config import ConfigError


def _hand_written_loop(meter: Any, epochs: int = 2, on_step: Any = None) -> list[Any]:
    """A plain PyTorch training loop, as a researcher writes it, metered by epoch."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(1024, 20)
    y = (x[:, 0] > 0).long()
    out = []
    for _ in range(epochs):
        meter.begin_window("epoch")
        for i in range(0, len(x), 64):
            opt.zero_grad()
            loss = F.cross_entropy(model(x[i : i + 64]), y[i : i + 64])
            loss.backward()
            opt.step()
            if on_step is not None:
                on_step()
        out.append(meter.end_window("epoch"))
    return out


def test_a_hand_written_loop_gets_labelled_joules_and_carbon() -> None:
    from powertrain import Meter
    from powertrain.config import EnergyConfig
    from powertrain.energy import build_meter

    meter = Meter(carbon_region="DEU", device="cpu")
    ms = _hand_written_loop(meter)
    meter.close()
    # the components the CLI's loop would bill on this machine, with the same labels
    assert meter.describe() == build_meter(EnergyConfig(), "cpu").describe()
    for m in ms:
        assert m.name == "epoch" and m.time_s > 0 and m.energy_j > 0
        assert [c.name for c in m.components] == ["cpu:package-0", "dram:0"]
        for c in m.components:  # no RAPL here: every joule says it is an estimate, and which one
            assert c.measured is False and c.method.endswith("_estimate") and c.extra["reason"]
        assert m.measured_fraction == 0.0
        assert m.carbon_g == pytest.approx(m.energy_j / 3.6e6 * meter.intensity.g_per_kwh)
        assert meter.intensity.region == "DEU" and meter.intensity.g_per_kwh > 0
    assert list(meter.measurements) == ms


def test_a_readable_rapl_counter_is_billed_as_measured(tmp_path: Path) -> None:
    from powertrain import Meter

    pc = make_powercap(tmp_path / "powercap")
    # a share of 1.0: this machine's CPU share detection must not scale the fake counter
    meter = Meter(device="cpu", energy={"powercap_root": str(tmp_path / "powercap"), "cpu_share": 1.0})
    (m,) = _hand_written_loop(meter, epochs=1, on_step=lambda: pc.add_uj("intel-rapl:0", 250_000))
    meter.close()
    cpu = {c.name: c for c in m.components}["cpu:package-0"]
    assert cpu.measured is True and cpu.method.startswith("rapl")
    assert cpu.energy_j == pytest.approx(16 * 0.25)  # 16 steps of 0.25 J on the package counter
    assert cpu.share == 1.0 and m.carbon_g is None  # no region: None, never a silent zero


def test_duplicate_window_names_are_refused_different_names_may_overlap() -> None:
    from powertrain import Meter

    meter = Meter(device="cpu")
    meter.begin_window("epoch")
    with pytest.raises(ValueError, match="energy window 'epoch' is already open: end it before beginning it again"):
        meter.begin_window("epoch")
    steps = []
    for _ in range(3):
        meter.begin_window("step")
        sum(i * i for i in range(20_000))
        steps.append(meter.end_window("step"))
    epoch = meter.end_window("epoch")
    # each window reads the counters at its own edges: the outer one holds the inner ones' joules
    assert epoch.energy_j >= sum(s.energy_j for s in steps) > 0
    assert epoch.time_s >= sum(s.time_s for s in steps)
    with pytest.raises(ValueError, match="energy window 'epoch' is not open \\(open: none\\)"):
        meter.end_window("epoch")
    meter.close()


def test_window_as_context_manager_and_decorator() -> None:
    from powertrain import Meter

    with Meter(device="cpu") as meter:
        with meter.window("eval") as w:
            sum(range(100_000))
        assert w.measurement is not None and w.measurement.name == "eval" and w.measurement.energy_j > 0

        @meter.window("step")
        def step(n: int) -> int:
            return sum(range(n))

        assert step(10_000) == sum(range(10_000))
        step(10_000)
        assert [m.name for m in meter.measurements] == ["eval", "step", "step"]


def test_bad_settings_are_one_line_before_any_window() -> None:
    from powertrain import Meter

    with pytest.raises(ConfigError, match="carbon.region='Atlantis' is not allowed"):
        Meter(carbon_region="Atlantis", device="cpu")
    with pytest.raises(ConfigError, match="energy.cpu_shar=0.5 is not allowed: an EnergyConfig field "
                                          "\\(did you mean 'cpu_share'\\?\\)"):
        Meter(device="cpu", energy={"cpu_shar": 0.5})
    with pytest.raises(ConfigError, match="energy.meter='exact' is not allowed: one of auto, estimate"):
        Meter(device="cpu", energy={"meter": "exact"})
    with pytest.raises(ConfigError, match="carbon.pue=0.5 is not allowed"):
        Meter(device="cpu", pue=0.5)


def test_import_powertrain_stays_cheap_and_run_job_is_not_shadowed() -> None:
    code = ("import sys, powertrain\n"
            "heavy = sorted(m for m in ('torch', 'hydra', 'omegaconf', 'pandas') if m in sys.modules)\n"
            "import powertrain.run\n"
            "print(heavy, callable(powertrain.run_job), type(powertrain.run).__name__, powertrain.Meter.__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["[]", "True", "module", "Meter"], out.stderr


def test_run_job_composes_and_runs_as_the_command_line(tmp_path: Path) -> None:
    import powertrain

    r = powertrain.run_job("dataset=synthetic", "dataset.train_size=256", "dataset.test_size=128",
                           "model=dense_poly", "max_epochs=2", "hardware.device=cpu", "verbose=false",
                           "save_checkpoint=false", run_dir=tmp_path)
    assert r["status"] == "completed" and r["run"]["overrides"][0] == "dataset=synthetic"
    assert json.loads((tmp_path / "result.json").read_text())["metrics"] == r["metrics"]
    with pytest.raises(ConfigError, match="optimizer.lr=-1.0 is not allowed"):
        powertrain.run_job("optimizer.lr=-1")
    with pytest.raises(ConfigError, match="one value: run_job runs one job"):
        powertrain.run_job("batch_size=32,64")


def test_run_job_refuses_repeats_as_the_command_line_does(cli: Any, tmp_path: Path) -> None:
    import powertrain

    p = cli("repeats=3", cwd=tmp_path)
    assert p.returncode == 2
    with pytest.raises(ConfigError) as e:
        powertrain.run_job("repeats=3")  # silently one job before
    assert p.stderr.strip() == f"powertrain: error: {e.value}"


def test_run_job_calls_in_one_second_get_their_own_directories(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    import powertrain
    import powertrain.run

    monkeypatch.chdir(tmp_path)
    dirs: list[Path] = []
    monkeypatch.setattr(powertrain.run, "run", lambda cfg, run_dir, *a, **k: dirs.append(run_dir) or {})
    for _ in range(2):  # well within one second: nothing trains
        powertrain.run_job("dataset=synthetic", "hardware.device=cpu")
    assert dirs[0] != dirs[1]
    for d in dirs:  # the CLI's layout: outputs/<date>/<H-M-S>_<6 chars>
        assert d.parent.parent == tmp_path / "outputs"
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", d.parent.name) and re.fullmatch(r"\d\d-\d\d-\d\d_[a-z2-7]{6}", d.name)


def _rank(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from powertrain import Meter

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        meter = Meter(device="cpu")  # a collective: the ranks agree who meters what
        (m,) = _hand_written_loop(meter, epochs=1)
        meter.close()
        Path(out, f"rank{rank}.json").write_text(json.dumps(
            {"names": [c.name for c in m.components], "energy_j": m.energy_j}))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_under_torch_distributed_each_device_is_billed_once(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    from powertrain.launch.ddp import free_port

    mp.spawn(_rank, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    # one host: its CPU and DRAM billed by rank 0 alone, and every rank holds the same run-wide window
    assert r0["names"] == r1["names"] == ["node0/cpu:package-0", "node0/dram:0"]
    assert r0["energy_j"] == r1["energy_j"] > 0
