"""What checking a grid whole costs: the README's 4-job grid (``-m optimizer=sgd,adam batch_size=32,256``)
with ``hydra/sweeper=powertrain`` (the default: every point validated and probed before the first job) against
Hydra's ``hydra/sweeper=basic`` (each job checked when it starts), alternated in pairs.

Prints the wall time of both whole sweeps side by side, their ratio, and the check's own time from its log
line (``checked N sweep points in X s (composing Y s, which Hydra does anyway; checks Z s)``). The checks'
time is mostly the first import of the model and data code and the first meta-device forward (which
imports ``torch._dynamo``), work the first job of a local sweep does anyway; under the Slurm launcher the
submitting process pays it once per sweep.

Run: ``.venv/bin/python benchmarks/bench_sweep_check.py [--pairs N] [--epochs N]``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import child_env

GRID = ["optimizer=sgd,adam", "batch_size=32,256"]
LINE = re.compile(r"checked (\d+) sweep points in ([\d.]+) s \(composing ([\d.]+) s.*checks ([\d.]+) s\)")


def _sweep(tmp: Path, name: str, sweeper: str, epochs: int, env: dict[str, str]) -> tuple[float, tuple | None]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "powertrain", "-m", f"hydra/sweeper={sweeper}", *GRID,
                        f"max_epochs={epochs}", "verbose=false", f"hydra.sweep.dir={tmp / name}",
                        "hydra.callbacks.sweep_summary.write_report=false"],
                       cwd=tmp, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"sweep failed (rc {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    m = LINE.search(p.stdout + p.stderr)
    return wall, (tuple(float(x) for x in m.groups()) if m else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for the runs (0 = unset)")
    args = ap.parse_args()
    env = child_env(args.threads)
    checked, basic, lines = [], [], []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for i in range(args.pairs):
            order = ["powertrain", "basic"] if i % 2 == 0 else ["basic", "powertrain"]
            for sweeper in order:
                wall, line = _sweep(tmp, f"{sweeper}{i}", sweeper, args.epochs, env)
                (checked if sweeper == "powertrain" else basic).append(wall)
                if line:
                    lines.append(line)
            print(f"pair {i}  checked {checked[-1]:.2f} s  basic {basic[-1]:.2f} s  ratio "
                  f"{checked[-1] / basic[-1]:.4f}", flush=True)
    print(f"grid {' '.join(GRID)}  epochs {args.epochs}  pairs {args.pairs}")
    print(f"wall_s_checked {statistics.median(checked):.2f}  wall_s_basic {statistics.median(basic):.2f}  "
          f"difference_s {statistics.median(checked) - statistics.median(basic):.2f}")
    print(f"wall_ratio {statistics.median(c / b for c, b in zip(checked, basic)):.4f}")
    if lines:
        print(f"check_s {statistics.median(x[1] for x in lines):.2f}  (composing {statistics.median(x[2] for x in lines):.2f} s, "
              f"which Hydra does anyway; checks {statistics.median(x[3] for x in lines):.2f} s) for {int(lines[0][0])} points")


if __name__ == "__main__":
    main()
