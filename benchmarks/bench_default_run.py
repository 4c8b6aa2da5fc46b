"""The default run as a user starts it: ``python -m powertrain`` (digits, SimpleCNN, SGD + cosine, 40 epochs).

Measures the wall time of the whole command (interpreter start to exit) and reads the final accuracy
from its result.json. Targets: final accuracy ≥ 95 % within 30 s wall. Prints plain ``key value`` lines.

Run: ``.venv/bin/python benchmarks/bench_default_run.py [--repeat N]`` (about 10 s per repetition).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import child_env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1)
    # diagnostic: on a loaded machine torch's default OpenMP threads can slow tiny models several-fold
    ap.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for the run (0 = unset)")
    args = ap.parse_args()
    env = child_env(args.threads)

    walls, accs, train_s = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            run_dir = Path(tmp) / f"run{i}"
            t0 = time.perf_counter()
            p = subprocess.run([sys.executable, "-m", "powertrain", f"hydra.run.dir={run_dir}"], cwd=tmp,
                               env=env, capture_output=True, text=True, timeout=600)
            walls.append(time.perf_counter() - t0)
            if p.returncode != 0:
                raise SystemExit(f"default run failed (rc {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
            result = json.loads((run_dir / "result.json").read_text())
            accs.append(result["metrics"]["final_accuracy"])
            train_s.append(result["time"]["train_s"] + result["time"]["eval_s"])

    wall, acc = statistics.median(walls), min(accs)
    print(f"repeat {args.repeat}  omp_num_threads {args.threads or 'default'}")
    print(f"wall_s {wall:.1f}  ({' '.join(f'{w:.1f}' for w in walls)})")
    print(f"train_and_eval_s {statistics.median(train_s):.1f}")
    print(f"final_accuracy {acc:.4f}  ({' '.join(f'{a:.4f}' for a in accs)})")
    print(f"meets_targets {acc >= 0.95 and wall <= 30.0}")


if __name__ == "__main__":
    main()
