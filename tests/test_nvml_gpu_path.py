"""The GPU energy path on nodes a real cluster has (issue 12), through the faithful fake NVML.

Deterministic: the fake GPUs and the meter share a FakeClock, so no test depends on sleeping.
"""

from __future__ import annotations

import pytest

from fakes.nvml import HOPPER, NO_PERMISSION, FakeClock, FakeGpu
from powertrain.config import EnergyConfig
from powertrain.energy import Ledger
from powertrain.energy.base import EnergyMeter
from powertrain.energy.nvml import build_gpu_sources
from powertrain.energy.select import build_meter, device_sync


def _uuid(i: int) -> str:
    return f"{i:08x}-1111-2222-3333-444444444444"  # as torch reports it: no "GPU-" prefix


@pytest.fixture
def clock():
    return FakeClock()



def _gpus(sources):
    return [s for s in sources if s.kind == "gpu"]


def _close(sources):
    for s in sources:
        s.stop()


def test_an_8_gpu_node_bills_only_the_gpu_the_run_uses(nvml, tmp_path):
    fake = nvml([FakeGpu(f"GPU-{_uuid(i)}") for i in range(8)])
    cfg = EnergyConfig(powercap_root=str(tmp_path / "none"))
    meter = build_meter(cfg, "cuda:0", environ={}, cuda_uuid=lambda i: None)  # no CUDA_VISIBLE_DEVICES
    assert [s.name for s in _gpus(meter.sources)] == ["gpu:0"]
    meter.close()
    meter = build_meter(cfg, "cuda:3", environ={}, cuda_uuid=lambda i: None)
    (gpu,) = _gpus(meter.sources)
    assert (gpu.name, gpu.extra()["uuid"], gpu.measured) == ("gpu:3", f"GPU-{_uuid(3)}", True)
    meter.close()
    # energy.gpu_indices is the user's override
    meter = build_meter(EnergyConfig(powercap_root=str(tmp_path), gpu_indices=[0, 5]), "cuda:0", environ={})
    assert [s.name for s in _gpus(meter.sources)] == ["gpu:0", "gpu:5"]
    meter.close()
    assert fake.init_count == 0


def test_cuda_ordinals_map_to_nvml_devices_by_uuid_on_a_mixed_node(nvml):
    # NVML lists by PCI bus (the slow card first); CUDA's default order is fastest first
    slow, fast = FakeGpu(f"GPU-{_uuid(0xA)}", name="Tesla T4"), FakeGpu(f"GPU-{_uuid(0xB)}", name="A100")
    nvml([slow, fast])
    cuda = {0: _uuid(0xB), 1: _uuid(0xA)}
    (src,) = build_gpu_sources(EnergyConfig(), environ={}, ordinals=[0], cuda_uuid=cuda.get)
    assert (src.name, src.extra()["uuid"], src.extra()["nvml_index"]) == ("gpu:0", fast.uuid, 1)
    src.stop()
    (src,) = build_gpu_sources(EnergyConfig(), environ={}, ordinals=[1], cuda_uuid=cuda.get)
    assert (src.name, src.extra()["uuid"], src.extra()["nvml_index"]) == ("gpu:1", slow.uuid, 0)
    src.stop()


def test_one_gpu_without_permission_leaves_the_others_measured(nvml):
    gpus = [FakeGpu(f"GPU-{_uuid(i)}") for i in range(3)]
    gpus[1].handle_error = NO_PERMISSION
    fake = nvml(gpus)
    sources = build_gpu_sources(EnergyConfig(), environ={})
    assert [(s.name, s.measured) for s in sources] == [("gpu:0", True), ("gpu:1", False), ("gpu:2", True)]
    assert "NoPermission" in sources[1].reason and sources[0].method == "nvml_energy_counter"
    _close(sources)
    # the same through CUDA's UUIDs
    sources = build_gpu_sources(EnergyConfig(), environ={}, ordinals=[0, 1], cuda_uuid=_uuid)
    assert [(s.name, s.measured) for s in sources] == [("gpu:0", True), ("gpu:1", False)]
    _close(sources)
    assert fake.init_count == 0


def test_a_5_ms_window_is_flagged_and_billed_from_power(nvml, clock):
    gpu = FakeGpu(f"GPU-{_uuid(1)}", power_w=200.0, counter_period_s=0.1, clock=clock)
    nvml([gpu])
    meter = EnergyMeter(build_gpu_sources(EnergyConfig(), environ={}), clock=clock)
    clock.advance(0.001)
    meter.begin_window("eval")
    clock.advance(0.005)
    (c,) = meter.end_window("eval").components  # the counter has not stepped: it reads 0 J
    assert c.extra["short_window"] is True and "5 ms" in c.extra["short_window_note"]
    assert c.energy_j == pytest.approx(200.0 * 0.005) and c.measured
    ledger = Ledger()
    ledger.add("eval", meter_window(meter, clock, 2.0))
    (row,) = ledger.components(("eval",))
    assert "short_window" not in row and row["energy_j"] == pytest.approx(400.0)  # the counter itself
    meter.close()


def meter_window(meter, clock, seconds):
    meter.begin_window("eval")
    clock.advance(seconds)
    return meter.end_window("eval")


def test_a_short_window_on_hopper_reads_instantaneous_not_averaged_power(nvml, clock):
    gpu = FakeGpu(f"GPU-{_uuid(1)}", power_w=100.0, architecture=HOPPER, counter_period_s=0.1, clock=clock)
    nvml([gpu])
    meter = EnergyMeter(build_gpu_sources(EnergyConfig(), environ={}), clock=clock)
    clock.advance(5.0)
    gpu.set_power_w(400.0)  # training starts; the 1-s average still says ~100 W
    clock.advance(0.01)
    (c,) = meter_window(meter, clock, 0.005).components
    assert c.energy_j == pytest.approx(400.0 * 0.005)
    meter.close()


def test_power_integration_prefers_the_instantaneous_field(nvml):
    nvml([FakeGpu(f"GPU-{_uuid(1)}", has_counter=False, architecture=HOPPER)])
    (src,) = build_gpu_sources(EnergyConfig(), environ={})
    assert src.method == "nvml_power_integration" and "instantaneous" in src.reason
    src.stop()
    nvml([FakeGpu(f"GPU-{_uuid(1)}", has_counter=False, architecture=HOPPER, has_instant_power=False)])
    (src,) = build_gpu_sources(EnergyConfig(), environ={})
    assert "1-s average" in src.reason  # an older driver: said, not hidden
    src.stop()


def test_a_mig_slice_is_not_counted_as_measured(nvml, clock):
    mig = [f"MIG-{_uuid(i)}" for i in range(3)]
    gpu = FakeGpu(f"GPU-{_uuid(9)}", power_w=350.0, mig_uuids=mig, mig_slices=[1, 2, 4], clock=clock)
    nvml([gpu])
    # torch names the slice the run uses; it is 1 of the GPU's 7 slices
    meter = EnergyMeter(build_gpu_sources(EnergyConfig(), environ={}, ordinals=[0], cuda_uuid=lambda i: mig[0]),
                        clock=clock)  # fmt: skip
    ledger = Ledger()
    ledger.add("train", meter_window(meter, clock, 7.0))
    (row,) = ledger.components()
    assert row["measured"] is False and row["measured_j"] == 0.0
    assert row["method"] == "nvml_energy_counter_attributed" and row["shared_device"] is True
    assert row["share"] == pytest.approx(1 / 7) and row["energy_j"] == pytest.approx(350.0 * 7.0 / 7)
    assert ledger.measured_fraction() == 0.0
    meter.close()


def test_a_mig_fallback_bills_the_slice_not_the_whole_gpu(nvml):
    mig = [f"MIG-{_uuid(1)}"]
    nvml([FakeGpu(f"GPU-{_uuid(9)}", has_counter=False, has_power=False, power_limit_w=700.0, mig_uuids=mig)])
    (src,) = build_gpu_sources(EnergyConfig(), environ={"CUDA_VISIBLE_DEVICES": mig[0]})
    # utilisation is NotSupported on a MIG parent, so it is constant TDP, but of the slice's share
    assert src.method == "gpu_tdp_utilization_estimate" and src.tdp_w == pytest.approx(100.0)
    src.stop()


def test_a_gpu_other_processes_compute_on_is_flagged_not_plainly_measured(nvml):
    nvml([FakeGpu(f"GPU-{_uuid(1)}", other_pids=[4242])])
    (src,) = build_gpu_sources(EnergyConfig(), environ={})
    extra = src.extra()
    assert not src.measured and extra["shared_device"] is True and "1 other process" in extra["share_basis"]
    src.stop()


def test_gpu_tdp_is_the_enforced_power_limit_before_the_profile_figure(nvml):
    nvml([FakeGpu(f"GPU-{_uuid(1)}", has_counter=False, has_power=False, power_limit_w=200.0)])
    (src,) = build_gpu_sources(EnergyConfig(), gpu_tdp_w=350.0, environ={})
    assert (src.tdp_w, src.tdp_source) == (200.0, "NVML enforced power limit")
    src.stop()


def test_window_edges_synchronise_the_runs_own_gpu(monkeypatch):
    torch = pytest.importorskip("torch")
    waited = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(device))
    device_sync(torch.device("cuda:1"))()
    assert waited == [torch.device("cuda:1")]  # not a bare synchronize(), which waits on cuda:0
    assert device_sync(torch.device("cpu")) is None
