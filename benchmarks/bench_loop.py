"""The framework's training loop vs a hand-written minimal PyTorch loop doing the same work.

Both train powertrain's SimpleCNN (M=2, N=3) on the digits tensors (normalised, held in memory), batch 64,
SGD lr 0.05 momentum 0.9, for a few epochs, and evaluate on the test split after each epoch:
- framework: ``train.fit`` with the auto energy meter (two windows per epoch), ``ClassificationTask`` and
  ``DeviceBatches`` — what ``python -m powertrain`` runs;
- minimal: a per-epoch ``randperm``, index slicing, zero_grad/forward/backward/step, and a no_grad eval.
Every repetition starts from the same initial weights. Repetitions are interleaved (A B, then B A, ...)
in one process so drift in machine load hits both alike. Prints plain ``key value`` lines; the headline is
``loop_throughput_ratio`` = framework samples/s ÷ minimal samples/s, each from its best repetition
(interference only adds time), next to the median of per-pair ratios and a CPU-time ratio (target ≥ 0.97).
A third arm runs the framework with the in-epoch progress line on: ``progress_on_off_ratio`` (target ≈ 1),
and a fourth runs the framework again (``control_ratio``): the spread of two identical arms, against which
the progress ratio is judged.

Run: ``.venv/bin/python benchmarks/bench_loop.py`` (about 30 s on 2 cores).
"""

from __future__ import annotations

import argparse
import copy
import io
import statistics
import time

import torch
import torch.nn.functional as F

from powertrain.config import DatasetConfig, EnergyConfig, ModelConfig
from powertrain.data import load_dataset
from powertrain.energy import Ledger, build_meter
from powertrain.models import create_model
from powertrain.train import ClassificationTask, fit
from powertrain.train.display import ProgressLine

BATCH, LR, MOMENTUM = 64, 0.05, 0.9


def framework(model: torch.nn.Module, data, epochs: int, progress: bool = False) -> tuple[float, float]:
    """(wall s, CPU s) of ``fit``; building the optimizer, task and meter is start-up (bench_startup.py).
    ``progress``: with the in-epoch progress line a terminal gets, drawn into an in-memory sink at its
    default rate (the loop's share of the cost; a terminal's own drawing happens outside this process)."""
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    task = ClassificationTask(data, BATCH, eval_batch_size=1024, seed=0)
    meter = build_meter(EnergyConfig(), "cpu")
    meter.start()
    sink = io.StringIO()
    bar = ProgressLine(epochs, BATCH, show=lambda line: sink.write("\r" + line), width=120) if progress else None
    t0, c0 = time.perf_counter(), time.process_time()
    fit(model, task, opt, meter, Ledger(), max_epochs=epochs, display=bar)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    meter.close()
    return wall, cpu


def minimal(model: torch.nn.Module, data, epochs: int) -> tuple[float, float]:
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    x, y, n = data.x_train, data.y_train, data.x_train.shape[0]
    t0, c0 = time.perf_counter(), time.process_time()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
        loss_sum = torch.zeros(())
        for i in range(0, n, BATCH):
            idx = perm[i : i + BATCH]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
        loss_sum.item()
        model.eval()
        with torch.no_grad():
            correct = sum((model(data.x_test[i : i + 1024]).argmax(1) == data.y_test[i : i + 1024]).sum().item()
                          for i in range(0, data.x_test.shape[0], 1024))
        _ = correct / data.x_test.shape[0]
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=12, help="interleaved A/B repetitions")
    ap.add_argument("--epochs", type=int, default=5, help="epochs per repetition")
    # one thread: on a shared 2-core machine two OpenMP threads make timings swing 3× from load alone
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    data = load_dataset(DatasetConfig(name="digits"))
    init = create_model(ModelConfig(family="simple_cnn"), data.input_shape, data.num_classes)
    samples = data.x_train.shape[0] * args.epochs

    def once(fn) -> tuple[float, float]:
        return fn(copy.deepcopy(init), data, args.epochs)

    def with_progress(model, data, epochs):
        return framework(model, data, epochs, progress=True)

    def control(model, data, epochs):  # the framework again: the A/A ratio is the noise floor of this run
        return framework(model, data, epochs)

    arms = {"framework": framework, "minimal": minimal, "progress": with_progress, "control": control}
    for fn in arms.values():  # warm-up: first-call allocations and lazy imports (dynamo via SGD)
        once(fn)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in arms}
    order = list(arms)
    for i in range(args.pairs):  # each repetition runs every arm once, in a rotated order
        for name in order[i % len(order):] + order[:i % len(order)]:
            times[name].append(once(arms[name]))
    fw, mn, pg, aa = times["framework"], times["minimal"], times["progress"], times["control"]
    def tput(times: list[tuple[float, float]], k: int, pick) -> float:
        return samples / pick(t[k] for t in times)

    pair = [m[0] / f[0] for f, m in zip(fw, mn)]
    print(f"torch_threads {torch.get_num_threads()}")
    print(f"pairs {args.pairs}  epochs_per_rep {args.epochs}  samples_per_rep {samples}")
    print(f"framework_samples_per_s_best {tput(fw, 0, min):.0f}")
    print(f"minimal_samples_per_s_best {tput(mn, 0, min):.0f}")
    print(f"ratio_per_pair_wall {' '.join(f'{r:.3f}' for r in pair)}")
    print(f"loop_throughput_ratio_median_pair {statistics.median(pair):.3f}")
    print(f"loop_throughput_ratio_cpu_time_best {tput(fw, 1, min) / tput(mn, 1, min):.3f}")
    # best-of-N: interference from other processes only ever adds time (timeit's reasoning)
    print(f"loop_throughput_ratio {tput(fw, 0, min) / tput(mn, 0, min):.3f}")
    # the progress line on vs off, same loop (target: no measurable cost)
    on_off = [f[0] / p[0] for f, p in zip(fw, pg)]
    print(f"progress_on_off_ratio_median_pair {statistics.median(on_off):.3f}")
    print(f"progress_on_off_ratio_cpu_time_best {tput(pg, 1, min) / tput(fw, 1, min):.3f}")
    print(f"progress_on_off_ratio {tput(pg, 0, min) / tput(fw, 0, min):.3f}")
    # the same framework arm against itself: how far two identical arms drift apart on this machine now
    print(f"control_ratio_median_pair {statistics.median(f[0] / a[0] for f, a in zip(fw, aa)):.3f}")
    print(f"control_ratio {tput(aa, 0, min) / tput(fw, 0, min):.3f}")


if __name__ == "__main__":
    main()
