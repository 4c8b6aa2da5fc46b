"""What a local sweep costs over its jobs: a 4-point grid of the default run vs one default run.

Both through the real CLI (``python -m powertrain``), in a temporary working directory. The grid is
``-m seed=0,1,2,3``: four times the default run's work in one process (Hydra's basic launcher), plus the
sweep summary. One process start (Python, torch, Hydra plugin scan) is paid once, so the target is a
ratio ≤ 4. Single and grid runs alternate ``--repeats`` times so drift in machine load hits both; the
medians are compared. Prints plain ``key value`` lines.

Run: ``.venv/bin/python benchmarks/bench_sweep.py`` (about 1 min on 2 cores with the defaults).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _time_cli(args: list[str], cwd: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "powertrain", *args], cwd=cwd, env=env, capture_output=True,
                       text=True)
    wall_s = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"powertrain {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    return wall_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--extra", nargs="*", default=[], help="overrides for both, e.g. max_epochs=2")
    a = ap.parse_args()
    single_s, grid_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        for _ in range(a.repeats):
            single_s.append(_time_cli(["verbose=false", *a.extra], cwd))
            grid_s.append(_time_cli(["-m", "seed=0,1,2,3", "verbose=false", *a.extra], cwd))
    single, grid = statistics.median(single_s), statistics.median(grid_s)
    print(f"single_run_wall_s {single:.2f}")
    print(f"grid4_wall_s {grid:.2f}")
    print(f"grid4_over_single_ratio {grid / single:.2f}")


if __name__ == "__main__":
    main()
