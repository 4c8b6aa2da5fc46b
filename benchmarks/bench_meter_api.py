"""``powertrain.Meter`` around a bare PyTorch loop: an epoch with it vs without it, and vs CodeCarbon.

The user's view of metering: a hand-written loop (SimpleCNN-like net, 8×8 one-channel random data, batch
64, Adam), one window per epoch. In one process, interleaved so drift in machine load hits every variant
alike (the order rotates each repetition):
- off:        the bare loop;
- meter:      ``meter.begin_window("epoch")`` / ``meter.end_window("epoch")`` around each epoch;
- codecarbon: CodeCarbon's ``OfflineEmissionsTracker.start_task`` / ``stop_task`` around each epoch, when
  codecarbon is installed (``pip install codecarbon``; offline, country DEU, no file written).
Then the price of one window pair alone (median of 5 runs), for both.

Prints plain ``key value`` lines; targets: ``meter_epoch_ratio`` ≤ 1.01, ``meter_window_pair_us`` < 50.

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/bench_meter_api.py`` (about 40 s on 2 cores). An epoch is
64 batches (about 0.2 s here): with 16 the ratios moved ±3 % between runs on a loaded machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_meter_overhead import pair_us, training_setup  # noqa: E402  (the energy owners' loop, the same network)

from powertrain import Meter  # noqa: E402


def codecarbon_tracker() -> Optional[Any]:
    """An offline CodeCarbon tracker (None if codecarbon is not installed)."""
    try:
        from codecarbon import OfflineEmissionsTracker
    except ImportError:
        return None
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    tracker = OfflineEmissionsTracker(country_iso_code="DEU", save_to_file=False, log_level="error",
                                      tracking_mode="process")
    tracker.start()
    return tracker


def epoch_windows(variant: str, meter: Meter, tracker: Any) -> tuple[Callable[[], None], Callable[[], None]]:
    """(begin, end) of one epoch's window for ``variant``."""
    if variant == "meter":
        return (lambda: meter.begin_window("epoch")), (lambda: meter.end_window("epoch"))
    if variant == "codecarbon":
        return (lambda: tracker.start_task("epoch")), (lambda: tracker.stop_task())
    return (lambda: None), (lambda: None)


def run_block(begin: Callable[[], None], end: Callable[[], None], step: Callable[..., None], batches: list,
              epochs: int) -> float:
    """Seconds per epoch of ``epochs`` epochs, each inside one window."""
    t0 = time.perf_counter()
    for _ in range(epochs):
        begin()
        for x, y in batches:
            step(x, y)
        end()
    return (time.perf_counter() - t0) / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15, help="interleaved repetitions")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per block")
    parser.add_argument("--samples", type=int, default=4096, help="training samples (64 batches of 64)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    args = parser.parse_args()

    step, batches = training_setup(args.samples, args.threads)

    print(f"load_average_1m_at_start {os.getloadavg()[0]:.2f}")
    meter = Meter(carbon_region="DEU", device="cpu")
    print(f"meter {meter.describe()}")
    tracker = codecarbon_tracker()
    variants = ["off", "meter"] + (["codecarbon"] if tracker is not None else [])
    windows = {v: epoch_windows(v, meter, tracker) for v in variants}
    run_block(*windows["off"], step, batches, 2)  # warm-up: allocator, autograd graph caches

    times: dict[str, list[float]] = {v: [] for v in variants}
    t_start = time.perf_counter()
    for rep in range(args.reps):
        order = variants[rep % len(variants):] + variants[: rep % len(variants)]
        for v in order:
            times[v].append(run_block(*windows[v], step, batches, args.epochs))
    bench_s = time.perf_counter() - t_start

    print(f"epoch_s_off {statistics.median(times['off']):.4f}")
    for v in variants[1:]:
        # per-rep ratios cancel slow drift in machine load; the median drops reps hit by a neighbour
        ratio = statistics.median(a / o for a, o in zip(times[v], times["off"], strict=True))
        print(f"epoch_s_{v} {statistics.median(times[v]):.4f}")
        print(f"{v}_epoch_ratio {ratio:.4f}")
    m_us = pair_us(*windows["meter"], 2000)
    print(f"meter_window_pair_us {m_us:.1f}")
    print(f"meter_epoch_ratio_from_window_cost {1 + m_us * 1e-6 / statistics.median(times['off']):.5f}")
    with_us = pair_us(lambda: meter.window("w").__enter__(), lambda: meter.end_window("w"), 2000)
    print(f"meter_context_manager_pair_us {with_us:.1f}")
    if tracker is not None:
        print(f"codecarbon_task_pair_us {pair_us(*windows['codecarbon'], 20):.1f}")
        tracker.stop()
    else:
        print("codecarbon not installed (pip install codecarbon): skipped")
    meter.close()
    print(f"load_average_1m_at_end {os.getloadavg()[0]:.2f}")
    print(f"bench_s {bench_s:.1f}")


if __name__ == "__main__":
    main()
