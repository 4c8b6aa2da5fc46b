"""On a real NVIDIA GPU: NVML metering end to end. Skipped (with the reason) where there is none, as in CI."""

from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")


def _nvml_ok() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return True
    except Exception:
        return False


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine"),
    pytest.mark.skipif(not _nvml_ok(), reason="NVML not usable on this machine"),
]


def test_gpu_run_reports_measured_gpu_energy(tiny_cfg, tmp_path):
    from powertrain.run import run

    r = run(tiny_cfg(max_epochs=2, **{"hardware.device": "cuda"}), tmp_path)
    assert r["status"] == "completed", r["error"]
    gpus = [c for c in r["energy"]["components"] if c["kind"] == "gpu"]
    assert [c["name"] for c in gpus] == ["gpu:0"]
    assert gpus[0]["method"] in ("nvml_energy_counter", "nvml_power_integration")
    assert gpus[0]["measured"] is True and gpus[0]["energy_j"] > 0
    assert r["energy"]["measured_fraction"] > 0
    assert r["hardware"]["gpus"], "the GPU's name belongs in the result"


def test_window_energy_equals_the_raw_counter_delta(tmp_path):
    """The window reports what the driver's counter says, to within 0.5 % over ~10 s of work."""
    import pynvml

    from powertrain.config import EnergyConfig
    from powertrain.energy.base import EnergyMeter
    from powertrain.energy.nvml import build_gpu_sources

    sources = build_gpu_sources(EnergyConfig())
    src = sources[0]
    if src.method != "nvml_energy_counter":
        pytest.skip(f"this GPU has no energy counter ({src.method})")
    meter = EnergyMeter(sources, sync=torch.cuda.synchronize)
    x = torch.randn(8192, 8192, device="cuda")
    try:
        raw0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(src.target.handle)
        meter.begin_window("work")
        t_end = time.perf_counter() + 10
        while time.perf_counter() < t_end:
            for _ in range(20):
                x = (x @ x).clamp_(-1, 1)
            torch.cuda.synchronize()
        m = meter.end_window("work")
        raw1 = pynvml.nvmlDeviceGetTotalEnergyConsumption(src.target.handle)
    finally:
        meter.close()
    raw_j = (raw1 - raw0) / 1000.0  # mJ -> J
    window_j = m.components[0].energy_j
    assert raw_j > 100, "the GPU should have done real work"
    assert window_j == pytest.approx(raw_j, rel=0.005)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_on_the_gpu(tiny_cfg, tmp_path, precision):
    from powertrain.run import run

    r = run(tiny_cfg(max_epochs=3, precision=precision, **{"hardware.device": "cuda"}), tmp_path)
    assert r["status"] == "completed", r["error"]
    assert r["metrics"]["final_accuracy"] > 0.5  # learnable synthetic data: autocast must not break learning


def test_window_waits_for_kernels_queued_on_the_runs_gpu():
    """~1 s of queued kernels, the window closed at once: its time covers them (the sync is on cuda:N)."""
    from powertrain.config import EnergyConfig
    from powertrain.energy.base import EnergyMeter
    from powertrain.energy.nvml import build_gpu_sources
    from powertrain.energy.select import device_sync

    index = torch.cuda.device_count() - 1  # the last GPU: a bare synchronize() would wait on cuda:0
    device = torch.device(f"cuda:{index}")
    meter = EnergyMeter(build_gpu_sources(EnergyConfig(), ordinals=[index]), sync=device_sync(device))
    x = torch.randn(4096, 4096, device=device)
    torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(3):
        x @ x
    torch.cuda.synchronize(device)
    n = max(1, int(1.0 / ((time.perf_counter() - t0) / 3)))
    try:
        meter.begin_window("sync")
        for _ in range(n):
            x @ x
        m = meter.end_window("sync")
    finally:
        meter.close()
    assert m.time_s > 0.8, "the window closed before the queued kernels finished"
    assert m.components[0].name == f"gpu:{index}"
