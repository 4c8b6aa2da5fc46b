"""The meter a run gets: measured where a counter exists, labelled estimate where not, honest totals."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from fakes.host import bare_metal
from fakes.nvml import GPU_IS_LOST, FakeGpu, FakeNvml
from fakes.powercap import make_powercap
from powertrain.config import EnergyConfig
from powertrain.energy import Ledger, build_meter
from powertrain.energy.idle import mean_power_w, measure_idle


@pytest.fixture
def node(tmp_path):
    """A bare-metal host this process holds whole (so nothing here depends on the machine running it)."""
    host = bare_metal(tmp_path / "host", sockets=1, cores=4)
    return {"host": host.paths, "affinity": set(range(8))}


def test_no_powercap_gives_labelled_estimates_with_the_reason(tmp_path, node):
    root = tmp_path / "powercap"
    meter = build_meter(EnergyConfig(powercap_root=str(root)), environ={}, **node)
    assert [(s.name, s.method, s.measured) for s in meter.sources] == [
        ("cpu:package-0", "tdp_utilization_estimate", False),
        ("dram:0", "memory_size_estimate", False),
    ]
    assert meter.describe().startswith(
        f"cpu:package-0 tdp_utilization_estimate (estimate): RAPL unreadable: {root} absent"
    )
    meter.begin_window("train")
    threading.Event().wait(0.05)
    m = meter.end_window("train")
    cpu = m.components[0]
    assert cpu.energy_j > 0 and cpu.measured_j == 0 and not cpu.measured  # an estimate, never a zero
    assert cpu.extra["reason"].startswith("RAPL unreadable")
    assert cpu.extra["tdp_source"]
    meter.close()


def test_readable_rapl_is_measured(tmp_path, node):
    pc = make_powercap(tmp_path, sockets=2)
    meter = build_meter(EnergyConfig(powercap_root=str(tmp_path)), environ={}, **node)
    assert [(s.name, s.method) for s in meter.sources] == [
        ("cpu:package-0", "rapl"),
        ("dram:0", "rapl"),
        ("cpu:package-1", "rapl"),
        ("dram:1", "rapl"),
    ]
    assert "(estimate)" not in meter.describe()
    meter.begin_window("train")
    pc.add_uj("intel-rapl:0", 4_000_000)
    pc.add_uj("intel-rapl:1", 6_000_000)
    pc.add_uj("intel-rapl:0:0", 1_000_000)
    m = meter.end_window("train")
    assert m.total_j == pytest.approx(11.0)
    assert m.measured_j == pytest.approx(11.0)
    assert all(c.measured for c in m.components)
    meter.close()


def test_rapl_without_dram_domain_estimates_dram_only(tmp_path, node):
    make_powercap(tmp_path, dram=False)  # client and AMD CPUs
    meter = build_meter(EnergyConfig(powercap_root=str(tmp_path)), environ={}, **node)
    methods = {s.name: (s.method, s.reason) for s in meter.sources}
    assert methods["cpu:package-0"] == ("rapl", None)
    assert methods["dram:0"][0] == "memory_size_estimate" and "no dram domain" in methods["dram:0"][1]
    meter.close()


def test_meter_estimate_forces_estimates_even_with_rapl(tmp_path, node):
    make_powercap(tmp_path)
    meter = build_meter(EnergyConfig(meter="estimate", powercap_root=str(tmp_path)), environ={}, **node)
    assert all(not s.measured and "estimate requested" in s.reason for s in meter.sources)
    meter.close()


def test_cuda_meter_bills_gpu_and_stays_honest_after_a_failure(tmp_path, monkeypatch, node):
    gpu = FakeGpu("GPU-aaaaaaaa-1111-2222-3333-444444444444", power_w=200.0, power_limit_w=300.0)
    fake = FakeNvml([gpu])
    monkeypatch.setitem(sys.modules, "pynvml", fake.module)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    meter = build_meter(EnergyConfig(powercap_root=str(tmp_path / "none")), device_type="cuda", **node)
    assert meter.describe().startswith("gpu:0 nvml_energy_counter (measured) · cpu:package-0 ")
    ledger = Ledger()
    meter.begin_window("train")
    time.sleep(0.05)
    ledger.add("train", meter.end_window("train"))
    gpu_train = ledger.phases["train"]["gpu:0"]
    # 200 W over the window's own length (a loaded box oversleeps the 50 ms), give or take the fake
    # counter's 5 ms tick at each end
    assert gpu_train["measured"]
    assert gpu_train["energy_j"] == pytest.approx(200.0 * ledger.phase_time_s["train"], abs=200.0 * 0.011)

    gpu.fail_code = GPU_IS_LOST
    meter.begin_window("train")  # the failure is met here; must not raise
    time.sleep(0.05)
    ledger.add("train", meter.end_window("train"))
    gpu_total = ledger.phases["train"]["gpu:0"]
    assert gpu_total["method"] == "nvml_energy_counter+gpu_tdp_utilization_estimate"
    assert not gpu_total["measured"] and "GpuIsLost" in gpu_total["fallback_reason"]
    assert gpu_total["energy_j"] > gpu_total["measured_j"] == pytest.approx(gpu_train["measured_j"])
    fraction = ledger.measured_fraction()
    assert fraction == pytest.approx(gpu_total["measured_j"] / ledger.total_j())
    assert 0 < fraction < 1
    meter.close()
    assert fake.init_count == 0


def test_idle_baseline_is_mean_power(tmp_path, node):
    pc = make_powercap(tmp_path, dram=False)
    meter = build_meter(EnergyConfig(powercap_root=str(tmp_path)), environ={}, **node)
    stop = threading.Event()

    start_uj, t0 = int((tmp_path / "intel-rapl:0" / "energy_uj").read_text()), time.perf_counter()

    def draw_40_w():  # the hardware: the counter climbs at 40 W while we sleep, updated every 5 ms
        while not stop.wait(0.005):
            pc.set_uj("intel-rapl:0", start_uj + int(40e6 * (time.perf_counter() - t0)))

    t = threading.Thread(target=draw_40_w, daemon=True)
    t.start()
    try:
        m = measure_idle(meter, 0.3)
        idle_w = mean_power_w(measure_idle(meter, 0.2))
    finally:
        stop.set()
        t.join()
    cpu_w = m.components[0].energy_j / m.time_s
    assert cpu_w == pytest.approx(40.0, rel=0.2)
    assert m.name == "idle" and idle_w > cpu_w * 0.5  # plus the DRAM estimate
    with pytest.raises(ValueError):
        measure_idle(meter, 0)
    meter.close()


def test_ledger_totals_name_each_method_once_and_keep_fallback_labels():
    from powertrain.energy.base import ComponentEnergy, Measurement

    def window(name, method, measured, extra=None):
        c = ComponentEnergy("gpu:0", "gpu", method, measured, 10.0, 10.0 if measured else 0.0, extra or {})
        return Measurement(name, 1.0, [c])

    ledger = Ledger()
    ledger.add("train", window("train", "nvml_energy_counter", True))
    ledger.add("eval", window("eval", "nvml_energy_counter", True))
    ledger.add("train", window("train", "gpu_tdp_utilization_estimate", False, {"fallback_reason": "lost"}))
    ledger.add("eval", window("eval", "gpu_tdp_utilization_estimate", False, {"fallback_reason": "lost"}))
    assert ledger.phases["train"]["gpu:0"]["method"] == "nvml_energy_counter+gpu_tdp_utilization_estimate"
    (gpu,) = ledger.components()
    assert gpu["method"] == "nvml_energy_counter+gpu_tdp_utilization_estimate"  # not repeated per phase
    assert gpu["energy_j"] == 40.0 and gpu["measured_j"] == 20.0 and not gpu["measured"]

    ledger = Ledger()  # the counter fails in the last eval window, after the last train window
    ledger.add("train", window("train", "nvml_energy_counter", True))
    ledger.add("eval", window("eval", "gpu_tdp_utilization_estimate", False, {"fallback_reason": "lost"}))
    (gpu,) = ledger.components()
    assert gpu["fallback_reason"] == "lost"
