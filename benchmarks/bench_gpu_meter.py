"""GPU metering accuracy (needs an NVIDIA GPU; prints a skip line elsewhere).

1. Window energy vs the raw NVML counter delta around it (target: within 0.5 %).
2. The power-integration fallback (NVML power sampled at 10 Hz, trapezoid rule) vs the energy counter,
   both metering the same GPU over the same ~60 s of training: the fallback's error in percent.

Usage: python benchmarks/bench_gpu_meter.py [--seconds 60] [--hz 10]
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--hz", type=float, default=10.0)
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("skip no CUDA GPU on this machine")
        return
    import pynvml

    from powertrain.config import EnergyConfig
    from powertrain.energy.base import EnergyMeter
    from powertrain.energy.nvml import METHOD_POWER, NvmlGpuSource, build_gpu_sources
    from powertrain.energy.select import device_sync

    counter = build_gpu_sources(EnergyConfig(sample_hz=args.hz), ordinals=[0])[0]
    if counter.method != "nvml_energy_counter":
        print(f"skip this GPU has no energy counter ({counter.method})")
        return
    # a second source on the same GPU, integrating sampled power as the fallback would; it shares the
    # counter's estimate factory, so an NVML failure mid-benchmark degrades to an estimate, not a crash
    power = NvmlGpuSource(
        pynvml, counter.target, METHOD_POWER, counter.session, counter._fallback_factory, args.hz,
        power_fn=counter.power_fn,
    )  # fmt: skip
    meter = EnergyMeter([counter, power], sync=device_sync("cuda:0"))

    # a training workload: a small ResNet-like conv net on synthetic CIFAR-sized batches
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 128, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(128, 128, 3, padding=1),
        torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(128, 10),
    ).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(512, 3, 32, 32, device="cuda")
    y = torch.randint(0, 10, (512,), device="cuda")

    raw0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(counter.target.handle)
    meter.begin_window("train")
    t_end = time.perf_counter() + args.seconds
    steps = 0
    while time.perf_counter() < t_end:
        for _ in range(10):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            steps += 1
        torch.cuda.synchronize()
    m = meter.end_window("train")
    raw1 = pynvml.nvmlDeviceGetTotalEnergyConsumption(counter.target.handle)
    meter.close()

    raw_j = (raw1 - raw0) / 1000.0
    counter_j, power_j = m.components[0].energy_j, m.components[1].energy_j
    print(f"device {torch.cuda.get_device_name(0)}")
    print(f"seconds {m.time_s:.1f}  steps {steps}  mean_power_w {counter_j / m.time_s:.1f}")
    print(f"raw_counter_delta_j {raw_j:.1f}")
    print(f"window_counter_j {counter_j:.1f}")
    print(f"window_vs_raw_error_pct {100 * (counter_j - raw_j) / raw_j:+.3f}")
    print(f"power_integration_j {power_j:.1f}  samples {power.samples}  hz {args.hz:g}")
    print(f"power_integration_error_pct {100 * (power_j - counter_j) / counter_j:+.2f}")


if __name__ == "__main__":
    main()
