"""Samples/s of one run with 2 ranks (``distributed.nproc_per_node=2``) against 1 rank, for the same work.

Both runs train the same global batches (``batch_size`` is global) for the same epochs; the 1-rank run
uses every core of the machine for torch's threads, each of the 2 ranks half of them. Prints plain
``key value`` lines per run (samples/s of training, training and wall time, energy and its CPU part,
accuracy) and the 2-rank / 1-rank throughput and energy ratios.

Run: ``.venv/bin/python benchmarks/bench_distributed.py [--epochs N] [--device cpu|cuda]`` (about a
minute on 2 CPU cores). On a GPU machine ``--device cuda --nproc 2`` needs 2 GPUs for a scaling figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def one_run(tmp: str, name: str, nproc: int, args: argparse.Namespace) -> dict[str, Any]:
    run_dir = Path(tmp) / name
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    cmd = [sys.executable, "-m", "powertrain", f"dataset={args.dataset}", f"max_epochs={args.epochs}",
           f"batch_size={args.batch_size}", f"hardware.device={args.device}", "save_checkpoint=false",
           f"distributed.nproc_per_node={nproc}", f"hydra.run.dir={run_dir}"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=1200)
    wall_s = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{name} failed:\n{p.stderr[-2000:]}")
    r = json.loads((run_dir / "result.json").read_text())
    samples = r["data"]["train_size"] * r["metrics"]["epochs"]
    cpu_j = sum(c["energy_j"] for c in r["energy"]["components"] if c["kind"] == "cpu")
    out = {"samples_per_s": samples / r["time"]["train_s"], "train_s": r["time"]["train_s"],
           "command_wall_s": wall_s, "energy_j": r["energy"]["total_j"], "cpu_j": cpu_j,
           "accuracy": r["metrics"]["final_accuracy"], "components": len(r["energy"]["components"])}
    for k, v in out.items():
        print(f"{name}.{k} {v:.4g}" if isinstance(v, float) else f"{name}.{k} {v}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--nproc", type=int, default=2)
    args = ap.parse_args()
    print(f"cpus {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        one = one_run(tmp, "rank1", 1, args)
        many = one_run(tmp, f"rank{args.nproc}", args.nproc, args)
    print(f"samples_per_s_ratio {many['samples_per_s'] / one['samples_per_s']:.3g}")
    print(f"energy_ratio {many['energy_j'] / one['energy_j']:.3g}")


if __name__ == "__main__":
    main()
