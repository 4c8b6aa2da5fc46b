"""Progress saves on vs off: the default run with result.json + checkpoint.pt rewritten after every epoch
(``checkpoint.progress=true``, the default) against the same run saving only at its end
(``checkpoint.progress=false``). Target: the saves cost at most 2 % of the run's wall time.

Both variants run the real command (``python -m powertrain``, digits + SimpleCNN, 40 epochs), alternated
in pairs so that machine load hits both alike. Printed side by side, per pair and as medians:

- ``wall_ratio``: whole command, interpreter start to exit (what a user waits for);
- ``fit_ratio``: train + eval time from each result.json (the part the saves can slow: the snapshot on
  the training thread, and the background writer competing for the GIL and the disk);
- ``cpu_ratio``: CPU seconds of the whole command, the writer thread's included (less swayed by other
  processes' load than wall time on a shared machine);
- ``in_process_fit_ratio``: the same comparison inside one process (``run()`` alternated), without the
  interpreter start-up and per-process memory layout that make two processes differ by several percent.

Ratios above 1 are the saves' cost. On a shared machine the differences between two runs can be larger
than that cost, so the work of saving is also measured directly (each run's result.json ``progress``: the
training thread's snapshot time and the writer thread's CPU time) and printed as a share of the fit. ``--threads 1`` (the default) keeps torch to one thread, as the
other benchmarks do on a shared 2-core machine; ``--threads 0`` leaves torch's default.

Run: ``.venv/bin/python benchmarks/bench_checkpoint.py [--pairs N] [--epochs N]`` (about 20 s a pair here).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import child_env


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run(tmp: Path, name: str, progress: bool, epochs: int,
         env: dict[str, str]) -> tuple[float, float, int, float, dict]:
    """(wall s, fit s, epochs, CPU s, result.json "progress": what the saving itself took) of one command."""
    run_dir = tmp / name
    cpu0 = _cpu_s()
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "powertrain", f"checkpoint.progress={str(progress).lower()}",
                        f"max_epochs={epochs}", "verbose=false", f"hydra.run.dir={run_dir}"], cwd=tmp, env=env,
                       capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"run failed (rc {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    cpu = _cpu_s() - cpu0
    result = json.loads((run_dir / "result.json").read_text())
    fit = result["time"]["train_s"] + result["time"]["eval_s"]
    return wall, fit, result["metrics"]["epochs"], cpu, result.get("progress") or {}


def _in_process(pairs: int, epochs: int, threads: int) -> None:
    """The same comparison inside one process (``powertrain.run.run`` on the default config, alternated):
    no interpreter start-up, no different memory layout per process, so less noise on the fit time."""
    import torch

    from powertrain.config import RunConfig
    from powertrain.run import run

    if threads:
        torch.set_num_threads(threads)
    fits: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp_name:
        for i in range(pairs + 1):  # the first pair warms up imports and caches
            for progress in ((True, False) if i % 2 == 0 else (False, True)):
                cfg = RunConfig()
                cfg.verbose, cfg.max_epochs, cfg.checkpoint.progress = False, epochs, progress
                r = run(cfg, Path(tmp_name) / f"{progress}{i}", [])
                if i:
                    fits[progress].append(r["time"]["train_s"] + r["time"]["eval_s"])
    ratios = [a / b for a, b in zip(fits[True], fits[False])]
    print(f"in_process_fit_s_on {statistics.median(fits[True]):.3f}  off {statistics.median(fits[False]):.3f}")
    print(f"in_process_fit_ratio {statistics.median(ratios):.4f}  (pairs: {' '.join(f'{x:.3f}' for x in ratios)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--in-process-pairs", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for the runs (0 = unset)")
    args = ap.parse_args()
    env = child_env(args.threads)

    on, off = [], []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        _run(tmp, "warmup", True, 1, env)  # page cache and .pyc files warm for both; its costs are not kept
        for i in range(args.pairs):
            order = [(True, on), (False, off)] if i % 2 == 0 else [(False, off), (True, on)]
            for progress, out in order:
                out.append(_run(tmp, f"{'on' if progress else 'off'}{i}", progress, args.epochs, env))
            print(f"pair {i}  on wall {on[-1][0]:.2f} s fit {on[-1][1]:.3f} s  |  off wall {off[-1][0]:.2f} s "
                  f"fit {off[-1][1]:.3f} s  |  ratio wall {on[-1][0] / off[-1][0]:.4f} fit "
                  f"{on[-1][1] / off[-1][1]:.4f}", flush=True)
    if on:
        wall_pairs = [a[0] / b[0] for a, b in zip(on, off)]
        fit_pairs = [a[1] / b[1] for a, b in zip(on, off)]
        cpu_pairs = [a[3] / b[3] for a, b in zip(on, off)]
        print(f"epochs {on[0][2]}  pairs {args.pairs}  omp_num_threads {args.threads or 'default'}")
        print(f"wall_s_on {statistics.median(a[0] for a in on):.2f}  wall_s_off {statistics.median(b[0] for b in off):.2f}")
        print(f"fit_s_on {statistics.median(a[1] for a in on):.3f}  fit_s_off {statistics.median(b[1] for b in off):.3f}")
        print(f"wall_ratio {statistics.median(wall_pairs):.4f}  (best-of {min(a[0] for a in on) / min(b[0] for b in off):.4f})")
        print(f"fit_ratio {statistics.median(fit_pairs):.4f}  (best-of {min(a[1] for a in on) / min(b[1] for b in off):.4f})")
        print(f"cpu_ratio {statistics.median(cpu_pairs):.4f}  (CPU seconds of the whole command, the writer "
              f"thread's included: {statistics.median(a[3] for a in on):.2f} vs {statistics.median(b[3] for b in off):.2f})")
        costs = [a[4] for a in on]  # the measured runs with saves only (not the 1-epoch warm-up)
        saves = statistics.median(c["saves"] for c in costs)
        snap = statistics.median(c["snapshot_s"] for c in costs)
        cpu_w = statistics.median(c["writer_cpu_s"] for c in costs)
        fit_on = statistics.median(a[1] for a in on)
        print(f"saves_per_run {saves:g}  snapshot_s {snap:.4f}  writer_cpu_s {cpu_w:.4f}  writer_wall_s "
              f"{statistics.median(c['writer_s'] for c in costs):.4f}")
        print(f"measured_save_share {(snap + cpu_w) / fit_on:.4f}  (training-thread snapshots + writer CPU, over "
              "the fit time: the saves' cost from the work itself, not from a difference of two noisy times)")
        print(f"per_epoch_cost_ms {(statistics.median(a[1] for a in on) - statistics.median(b[1] for b in off)) / on[0][2] * 1e3:.2f}")
    if args.in_process_pairs:
        _in_process(args.in_process_pairs, args.epochs, args.threads)


if __name__ == "__main__":
    main()
