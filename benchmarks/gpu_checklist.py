"""Issue 12's checklist for a session that is lent a GPU: prints each figure, one labelled line each.

1. NVML basics: name, UUID (and whether torch's matches), MIG mode, counter (mJ), power (mW), limit.
2. The energy counter's step: poll for 2 s, median gap between changes.
3. tests/test_gpu.py with no skips (run it: ``pytest -m gpu tests/test_gpu.py -rs``).
4. benchmarks/bench_gpu_meter.py (run it; it prints its own figures).
5. A short run: ``python -m powertrain hardware.device=cuda energy.idle_baseline_s=5 max_epochs=2``.
6. Window synchronisation: ~1 s of queued kernels, the window closed at once: time_s covers them.

Items 1, 2 and 6 run here; 3-5 are commands, printed for the session to run.

Usage: python benchmarks/gpu_checklist.py [--device 0]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", type=int, default=0)
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("skip no CUDA GPU on this machine")
        return
    import pynvml

    from powertrain.config import EnergyConfig
    from powertrain.energy.base import EnergyMeter
    from powertrain.energy.nvml import build_gpu_sources
    from powertrain.energy.select import device_sync

    device = torch.device(f"cuda:{args.device}")
    torch_uuid = str(torch.cuda.get_device_properties(device).uuid)
    pynvml.nvmlInit()
    try:
        h = pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{torch_uuid}")
        uuid = pynvml.nvmlDeviceGetUUID(h)
        try:
            mig = pynvml.nvmlDeviceGetMigMode(h)[0]
        except pynvml.NVMLError as err:
            mig = f"n/a ({err})"
        print(
            f"1 name {pynvml.nvmlDeviceGetName(h)}  uuid {uuid}  torch_uuid_matches {uuid == 'GPU-' + torch_uuid}"
        )
        print(f"1 mig_mode {mig}  counter_mj {pynvml.nvmlDeviceGetTotalEnergyConsumption(h)}")
        print(f"1 power_mw {pynvml.nvmlDeviceGetPowerUsage(h)}  "
              f"enforced_limit_mw {pynvml.nvmlDeviceGetEnforcedPowerLimit(h)}")  # fmt: skip
        fv = pynvml.nvmlDeviceGetFieldValues(h, [pynvml.NVML_FI_DEV_POWER_INSTANT])[0]
        print(f"1 power_instant_mw {fv.value.uiVal if fv.nvmlReturn == 0 else f'n/a (ret {fv.nvmlReturn})'}")

        last, t_last, gaps = pynvml.nvmlDeviceGetTotalEnergyConsumption(h), time.perf_counter(), []
        t_end = t_last + 2.0
        while time.perf_counter() < t_end:
            value = pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
            if value != last:
                now = time.perf_counter()
                gaps.append(now - t_last)
                last, t_last = value, now
        median = f"{statistics.median(gaps[1:]) * 1000:.1f}" if len(gaps) > 2 else "n/a"
        print(f"2 counter_step_median_ms {median}  changes {len(gaps)}")
    finally:
        pynvml.nvmlShutdown()

    print("3 run: python -m pytest -m gpu tests/test_gpu.py -rs")
    print("4 run: python benchmarks/bench_gpu_meter.py")
    print(
        f"5 run: python -m powertrain hardware.device=cuda:{args.device} energy.idle_baseline_s=5 max_epochs=2"
    )

    meter = EnergyMeter(build_gpu_sources(EnergyConfig(), ordinals=[args.device]), sync=device_sync(device))
    x = torch.randn(4096, 4096, device=device)
    torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(3):
        x @ x
    torch.cuda.synchronize(device)
    per_matmul_s = (time.perf_counter() - t0) / 3
    n = max(1, int(1.0 / per_matmul_s))
    meter.begin_window("sync")
    t_queue = time.perf_counter()
    for _ in range(n):
        x @ x
    queued_s = time.perf_counter() - t_queue
    m = meter.end_window("sync")
    meter.close()
    print(f"6 kernels_s {n * per_matmul_s:.2f}  queue_s {queued_s:.3f}  window_time_s {m.time_s:.2f}  "
          f"covers {m.time_s >= 0.9 * n * per_matmul_s}  energy_j {m.components[0].energy_j:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
