"""GPU energy through a fake pynvml: each GPU generation, visible-device mapping, MIG, mid-run failure."""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace

import pytest

from fakes.nvml import GPU_IS_LOST, FakeGpu
from powertrain.config import EnergyConfig
from powertrain.energy.nvml import build_gpu_sources, visible_gpus

UUID_A = "GPU-aaaaaaaa-1111-2222-3333-444444444444"
UUID_B = "GPU-bbbbbbbb-1111-2222-3333-444444444444"
UUID_C = "GPU-cccccccc-1111-2222-3333-444444444444"



def _timed(call):
    """(value, time just before, time just after): a loaded box may pause us on either side of a call."""
    before = time.perf_counter()
    value = call()
    return value, before, time.perf_counter()


def _assert_power(energy_j, power_w, start, end, tick_s=0.005):
    """``energy_j`` is ``power_w`` over the time between two calls, each known only to lie in a bracket
    ``(before, after)``: the shortest and longest spans they allow, give or take one counter tick."""
    shortest, longest = end[0] - start[1] - tick_s, end[1] - start[0] + tick_s
    assert power_w * shortest <= energy_j <= power_w * longest, (energy_j, power_w, shortest, longest)


def _build(env=None, **cfg):
    return build_gpu_sources(EnergyConfig(**cfg), environ=env or {})


def _stop(sources):
    for s in sources:
        s.stop()


def test_volta_counter_is_measured_in_joules(nvml):
    gpu = FakeGpu(UUID_A, power_w=200.0)
    fake = nvml([gpu])
    (src,) = _build()
    assert (src.name, src.kind, src.method, src.measured) == ("gpu:0", "gpu", "nvml_energy_counter", True)
    _, *started = _timed(src.start)
    time.sleep(0.1)
    energy_j, *read = _timed(src.read_j)
    # energy since start, not the counter's absolute value since driver load
    _assert_power(energy_j, 200.0, started, read)
    assert src.measured_j() == energy_j
    _stop([src])
    assert fake.init_count == 0  # nvmlShutdown balanced nvmlInit


def test_pre_volta_integrates_sampled_power(nvml):
    gpu = FakeGpu(UUID_A, power_w=100.0, has_counter=False)
    nvml([gpu])
    (src,) = _build(sample_hz=50.0)
    assert src.method == "nvml_power_integration" and src.measured
    assert "no NVML energy counter" in src.reason
    _, *started = _timed(src.start)
    time.sleep(0.2)
    _, *up = _timed(lambda: gpu.set_power_w(300.0))
    time.sleep(0.2)
    _, *down = _timed(lambda: gpu.set_power_w(100.0))
    time.sleep(0.2)
    energy_j, *read = _timed(src.read_j)
    # true energy ≈ 100 W × 0.4 s + 300 W × 0.2 s (each span as long as it really was); reading only at
    # the ends would give 100 W × 0.6 s. The rest is the 50 Hz sampling's own error.
    expected_j = 100.0 * (read[0] - started[1]) + 200.0 * (down[0] - up[1])
    assert energy_j == pytest.approx(expected_j, rel=0.15)
    assert src.samples >= 10  # the background thread sampled at ~50 Hz
    _stop([src])


def test_gpu_lost_mid_run_keeps_energy_and_estimates(nvml):
    gpu = FakeGpu(UUID_A, power_w=200.0, power_limit_w=250.0)
    nvml([gpu])
    (src,) = _build()
    src.start()
    time.sleep(0.05)
    measured_j, *good = _timed(src.read_j)
    assert measured_j > 0
    gpu.fail_code = GPU_IS_LOST
    time.sleep(0.05)
    energy_j, *lost = _timed(src.read_j)  # no exception
    assert src.measured_j() == measured_j  # the measured part is frozen
    assert energy_j > measured_j  # the gap since the last good read is billed
    # NVML is gone, so utilisation is unreadable: constant TDP (the power limit read at start)
    _assert_power(energy_j - measured_j, 250.0, good, lost, tick_s=0.0)
    assert not src.measured and src.method == "gpu_tdp_utilization_estimate"
    extra = src.extra()
    assert "GpuIsLost" in extra["fallback_reason"] and extra["fallback_at"]
    assert extra["measured_method"] == "nvml_energy_counter" and extra["constant_tdp"] is True
    assert src.read_j() >= energy_j  # keeps counting, never decreases
    _stop([src])


def test_power_sampler_failure_is_caught_in_the_thread(nvml):
    gpu = FakeGpu(UUID_A, power_w=100.0, has_counter=False, util_percent=0)
    nvml([gpu])
    (src,) = _build(sample_hz=100.0)
    _, *started = _timed(src.start)
    time.sleep(0.2)
    _, *failed = _timed(lambda: setattr(gpu, "fail_code", GPU_IS_LOST))  # the sampler thread meets it first
    time.sleep(0.05)
    assert src.fell_back
    # 100 W until the failure, give or take the 10 ms between two samples (and one more of scheduling)
    _assert_power(src.measured_j(), 100.0, started, failed, tick_s=0.02)
    assert src.read_j() > src.measured_j()
    _stop([src])


def test_mig_instance_meters_parent_and_says_it_is_shared(nvml):
    mig = ["MIG-11111111-aaaa-bbbb-cccc-dddddddddddd", "MIG-22222222-aaaa-bbbb-cccc-dddddddddddd"]
    gpu = FakeGpu(UUID_A, power_w=400.0, mig_uuids=mig)
    nvml([gpu])
    # two instances of one GPU visible: one source, or the same joules would count twice
    sources = _build({"CUDA_VISIBLE_DEVICES": f"{mig[0]},{mig[1]}"})
    assert len(sources) == 1
    (src,) = sources
    # through the parent's counter (MIG handles have none), billed by the slices held: 2 of 7
    assert src.method == "nvml_energy_counter_attributed"
    assert not src.measured  # an attribution, never a plain measurement (issue 12, item 7)
    extra = src.extra()
    assert extra["shared_device"] is True and "whole physical GPU" in extra["note"]
    assert extra["share"] == pytest.approx(2 / 7) and "2 of 7 GPU slices" in extra["share_basis"]
    assert extra["mig_uuids"] == mig and extra["uuid"] == UUID_A
    _, *started = _timed(src.start)
    time.sleep(0.05)
    energy_j, *read = _timed(src.read_j)
    _assert_power(energy_j, 400.0 * 2 / 7, started, read)
    assert src.measured_j() == 0.0
    _stop(sources)


@pytest.mark.parametrize(
    ("cvd", "expected"),
    [
        ("1", [UUID_B]),
        ("2,0", [UUID_C, UUID_A]),
        (UUID_B, [UUID_B]),
        ("GPU-cccc", [UUID_C]),  # CUDA takes a unique UUID prefix
        ("0,7,2", [UUID_A]),  # CUDA stops at the first invalid entry
        ("", []),
        ("-1", []),
    ],
)
def test_cuda_visible_devices_by_index_and_uuid(nvml, cvd, expected):
    fake = nvml([FakeGpu(UUID_A), FakeGpu(UUID_B), FakeGpu(UUID_C)])
    fake.module.nvmlInit()
    targets, decided_by = visible_gpus(fake.module, {"CUDA_VISIBLE_DEVICES": cvd})
    assert [t.uuid for t in targets] == expected
    assert [t.ordinal for t in targets] == list(range(len(expected)))
    assert decided_by.startswith("CUDA_VISIBLE_DEVICES")


def test_component_names_follow_cuda_ordinals(nvml):
    nvml([FakeGpu(UUID_A), FakeGpu(UUID_B), FakeGpu(UUID_C)])
    sources = _build({"CUDA_VISIBLE_DEVICES": "2,1"})
    assert [(s.name, s.extra()["nvml_index"]) for s in sources] == [("gpu:0", 2), ("gpu:1", 1)]
    _stop(sources)


def test_gpu_indices_picks_among_visible(nvml):
    nvml([FakeGpu(UUID_A), FakeGpu(UUID_B), FakeGpu(UUID_C)])
    sources = _build({"CUDA_VISIBLE_DEVICES": "2,1"}, gpu_indices=[1])
    assert [(s.name, s.extra()["uuid"]) for s in sources] == [("gpu:1", UUID_B)]
    _stop(sources)


def test_slurm_gpus_map_by_minor_number_when_cuda_visible_devices_unset(nvml):
    fake = nvml([FakeGpu(UUID_A, minor=3), FakeGpu(UUID_B, minor=0), FakeGpu(UUID_C, minor=1)])
    fake.module.nvmlInit()
    env = {"SLURM_JOB_GPUS": "0,1,2,3", "SLURM_STEP_GPUS": "1,3"}
    targets, decided_by = visible_gpus(fake.module, env)
    assert [t.uuid for t in targets] == [UUID_C, UUID_A]  # the step's GPUs win over the job's
    assert decided_by.startswith("SLURM_STEP_GPUS")
    targets, _ = visible_gpus(fake.module, {"SLURM_JOB_GPUS": "0-1"})
    assert [t.uuid for t in targets] == [UUID_B, UUID_C]
    # CUDA_VISIBLE_DEVICES, when set, is what CUDA obeys
    targets, _ = visible_gpus(fake.module, {"SLURM_JOB_GPUS": "0", "CUDA_VISIBLE_DEVICES": "0"})
    assert [t.uuid for t in targets] == [UUID_A]


def test_no_power_reading_at_all_is_an_estimate_with_utilisation(nvml):
    gpu = FakeGpu(UUID_A, has_counter=False, has_power=False, power_limit_w=200.0, util_percent=100)
    nvml([gpu])
    (src,) = _build(gpu_idle_share=0.1)
    assert src.method == "gpu_tdp_utilization_estimate" and not src.measured
    assert "no NVML power reading" in src.reason
    _, *started = _timed(src.start)
    time.sleep(0.05)
    energy_j, *read = _timed(src.read_j)
    _assert_power(energy_j, 200.0, started, read, tick_s=0.0)  # 100 % busy → full power limit
    gpu.util_percent = 0
    e1_j, *first = _timed(src.read_j)
    time.sleep(0.1)
    e2_j, *second = _timed(src.read_j)
    _assert_power(e2_j - e1_j, 200.0 * 0.1, first, second, tick_s=0.0)  # idle: 10 % of the limit
    _stop([src])


def test_driver_not_loaded_estimates_every_gpu(nvml):
    nvml([], init_code=9)  # NVML_ERROR_DRIVER_NOT_LOADED
    sources = _build({"CUDA_VISIBLE_DEVICES": "0,1"})
    assert [s.name for s in sources] == ["gpu:0", "gpu:1"]
    assert all(not s.measured and "NVML unavailable" in s.reason for s in sources)
    assert "DriverNotLoaded" in sources[0].reason
    assert sources[0].extra()["constant_tdp"] is True


def test_meter_estimate_mode_never_reads_energy(nvml):
    fake = nvml([FakeGpu(UUID_A, util_percent=0, power_limit_w=100.0)])
    (src,) = build_gpu_sources(EnergyConfig(meter="estimate", gpu_idle_share=0.2), environ={})
    assert src.method == "gpu_tdp_utilization_estimate" and "estimate requested" in src.reason
    _, *started = _timed(src.start)
    time.sleep(0.05)
    energy_j, *read = _timed(src.read_j)
    _assert_power(energy_j, 100.0 * 0.2, started, read, tick_s=0.0)  # idle share of the limit
    assert "nvmlDeviceGetTotalEnergyConsumption" not in fake.calls
    src.stop()
    assert fake.init_count == 0


def test_cpu_path_never_imports_pynvml(monkeypatch):
    from powertrain.energy.select import build_meter

    monkeypatch.setitem(sys.modules, "pynvml", SimpleNamespace())  # any use would fail loudly
    meter = build_meter(EnergyConfig(powercap_root="/nonexistent"), device_type="cpu")
    assert all(s.kind != "gpu" for s in meter.sources)


def test_nvml_shuts_down_once_after_the_last_source_however_often_each_stops(nvml):
    gpu_a, gpu_b = FakeGpu(UUID_A), FakeGpu(UUID_B)
    fake = nvml([gpu_a, gpu_b])
    a, b = _build()
    a.start()
    b.start()
    gpu_a.fail_code = GPU_IS_LOST
    a.read_j()  # falls back to an estimate, which holds the session too
    assert a.fell_back
    _stop([a, a])
    assert fake.init_count == 1  # b still meters
    _stop([b, b])
    assert fake.init_count == 0 and fake.calls["nvmlShutdown"] == 1
