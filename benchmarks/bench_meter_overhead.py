"""What metering costs a training loop: step time with the auto meter on vs off, and one window's price.

A SimpleCNN-like net (2 conv blocks, DensePolyNN head) on 8×8 one-channel random data, batch 64, trains
in one process under three modes, interleaved so drift in machine load hits every mode alike:
- off:   no meter;
- epoch: one meter window per epoch (how the training loop meters);
- step:  one window per step (the worst case).
Prints plain ``key value`` lines; targets: ratio ≤ 1.01 per epoch, one begin/end pair < 1 ms.

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/bench_meter_overhead.py`` (about 25 s on 2 cores).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from powertrain.config import EnergyConfig
from powertrain.energy import build_meter
from powertrain.energy.base import EnergyMeter


def simple_cnn(channels: int = 1, side: int = 8, classes: int = 10) -> nn.Module:
    """SimpleCNN(M=2, N=3): conv blocks with C·3^(d+1) channels, then DensePolyNN widths from F = C·D²."""
    layers: list[nn.Module] = []
    c_in = channels
    for d in range(2):
        c_out = channels * 3 ** (d + 1)
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
        c_in = c_out
    features = channels * side * side
    widths = [max(features // 2 ** (k + 1), channels) for k in range(2)]
    flat = c_in * (side // 4) ** 2
    layers.append(nn.Flatten())
    for w in widths:
        layers += [nn.Linear(flat, w), nn.ReLU()]
        flat = w
    layers.append(nn.Linear(flat, classes))
    return nn.Sequential(*layers)


def run_block(mode: str, meter: EnergyMeter, step, batches: list, epochs: int) -> float:
    """Train ``epochs`` epochs in ``mode``; returns seconds per step."""
    t0 = time.perf_counter()
    for _ in range(epochs):
        if mode == "epoch":
            meter.begin_window("train")
        for x, y in batches:
            if mode == "step":
                meter.begin_window("step")
            step(x, y)
            if mode == "step":
                meter.end_window("step")
        if mode == "epoch":
            meter.end_window("train")
    return (time.perf_counter() - t0) / (epochs * len(batches))


def pair_us(begin: Callable[[], None], end: Callable[[], None], pairs: int) -> float:
    """Median cost of one begin/end pair in µs (median of 5 runs of ``pairs`` pairs, after one warm pair)."""
    begin()
    end()
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(pairs):
            begin()
            end()
        runs.append((time.perf_counter() - t0) / pairs * 1e6)
    return statistics.median(runs)


def window_pair_us(meter: EnergyMeter, pairs: int) -> float:
    """Median cost of one begin/end window pair of an energy meter, in µs."""
    return pair_us(lambda: meter.begin_window("w"), lambda: meter.end_window("w"), pairs)


def training_setup(samples: int, threads: int) -> tuple[Callable[..., None], list]:
    """The loop both meter benchmarks time: SimpleCNN and Adam on random 1×8×8 batches of 64, as
    (step(x, y), batches), seeded."""
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model = simple_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    x_all, y_all = torch.randn(samples, 1, 8, 8), torch.randint(0, 10, (samples,))
    batches = list(zip(x_all.split(64), y_all.split(64), strict=True))

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    return step, batches


def fake_rapl_tree(root: Path, sockets: int = 2) -> None:
    """A powercap tree shaped like a 2-socket server's, to price RAPL reads on a machine without RAPL."""
    for n in range(sockets):
        for zone, name in ((f"intel-rapl:{n}", f"package-{n}"), (f"intel-rapl:{n}:0", "dram")):
            d = root / zone
            d.mkdir(parents=True)
            (d / "name").write_text(name + "\n")
            (d / "energy_uj").write_text("123456789\n")
            (d / "max_energy_range_uj").write_text("262143328850\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=24, help="interleaved A/B repetitions")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per block")
    parser.add_argument("--samples", type=int, default=1024, help="training samples (16 batches of 64)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    args = parser.parse_args()

    step, batches = training_setup(args.samples, args.threads)

    meter = build_meter(EnergyConfig(), device_type="cpu")
    print(f"meter {meter.describe()}")
    run_block("off", meter, step, batches, 2)  # warm-up: allocator, autograd graph caches

    modes = ["off", "epoch", "step"]
    times: dict[str, list[float]] = {m: [] for m in modes}
    t_start = time.perf_counter()
    for rep in range(args.reps):
        order = modes[rep % 3 :] + modes[: rep % 3]  # rotate so no mode always runs first
        for mode in order:
            times[mode].append(run_block(mode, meter, step, batches, args.epochs))
    bench_s = time.perf_counter() - t_start

    # per-rep ratios cancel slow drift in machine load; the median drops reps hit by a neighbour
    ratio_epoch = statistics.median(e / o for e, o in zip(times["epoch"], times["off"], strict=True))
    ratio_step = statistics.median(s / o for s, o in zip(times["step"], times["off"], strict=True))
    print(f"step_time_off_ms {statistics.median(times['off']) * 1e3:.3f}")
    print(f"step_time_epoch_window_ms {statistics.median(times['epoch']) * 1e3:.3f}")
    print(f"step_time_step_window_ms {statistics.median(times['step']) * 1e3:.3f}")
    print(f"meter_overhead_ratio {ratio_epoch:.4f}")
    print(f"meter_overhead_ratio_per_step_window {ratio_step:.4f}")
    pair_us = window_pair_us(meter, 2000)
    print(f"window_pair_us {pair_us:.1f}")
    # the same ratio modelled from the window's price: free of the timing noise of a shared machine
    epoch_s = statistics.median(times["off"]) * len(batches)
    print(f"meter_overhead_ratio_from_window_cost {1 + pair_us * 1e-6 / epoch_s:.5f}")
    print(
        f"meter_overhead_ratio_per_step_from_window_cost {1 + pair_us * 1e-6 / (epoch_s / len(batches)):.4f}"
    )
    meter.close()

    with tempfile.TemporaryDirectory() as tmp:
        fake_rapl_tree(Path(tmp))
        rapl_meter = build_meter(EnergyConfig(powercap_root=tmp), device_type="cpu")
        print(f"window_pair_us_rapl_2_sockets {window_pair_us(rapl_meter, 2000):.1f}")
        rapl_meter.close()
    print(f"bench_s {bench_s:.1f}")


if __name__ == "__main__":
    main()
