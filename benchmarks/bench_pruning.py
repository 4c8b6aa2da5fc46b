"""The same TPE search with and without a pruner, side by side: campaign energy and the best accuracy.

Both searches run ``python -m powertrain -m hydra/sweeper=optuna`` on the same data, search space, seed and
number of trials; one adds ``hydra.sweeper.pruner=<pruner>``. Printed per search: campaign energy (every
trial's total_j, pruned ones included), epochs trained (a count the machine's load cannot blur), trials
pruned, best accuracy. Target (issue 14): less campaign energy with the pruner at a comparable best accuracy.

Run: ``.venv/bin/python benchmarks/bench_pruning.py [--pruner median|hyperband|successive_halving]
[--trials 16] [--epochs 6]`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPACE = ["optimizer=choice(sgd,adam)", "optimizer.lr=tag(log,interval(1e-4,0.3))", "batch_size=choice(32,64,128)"]


def search(tmp: Path, name: str, pruner: str, trials: int, epochs: int) -> dict:
    sweep = tmp / name
    cmd = [sys.executable, "-m", "powertrain", "-m", "hydra/sweeper=optuna", "hydra.sweeper.sampler=tpe",
           "hydra.sweeper.seed=0", f"hydra.sweeper.n_trials={trials}", f"hydra.sweeper.pruner={pruner}",
           *SPACE, "dataset=digits", f"max_epochs={epochs}", "hardware.cpu_threads=1", "verbose=false",
           f"hydra.sweep.dir={sweep}"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{name} failed (rc {p.returncode}):\n{p.stderr[-3000:]}")
    s = json.loads((sweep / "sweep_summary.json").read_text())
    epochs_trained = sum(json.loads((Path(r["dir"]) / "result.json").read_text())["metrics"]["epochs"]
                         for r in s["rows"] if (Path(r["dir"]) / "result.json").exists())
    c = s["campaign"]
    return {"name": name, "energy_j": c["total_energy_j"], "best_accuracy": c["best_accuracy"],
            "epochs": epochs_trained, "pruned": s["status_counts"].get("pruned", 0), "trials": len(s["rows"]),
            "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pruner", default="median", choices=("median", "hyperband", "successive_halving"))
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = [search(tmp, "no_pruner", "none", args.trials, args.epochs),
                search(tmp, args.pruner, args.pruner, args.trials, args.epochs)]
    print(f"TPE seed 0, {args.trials} trials, max_epochs {args.epochs}, digits, {' '.join(SPACE)}")
    print(f"{'search':<20}{'campaign_J':>12}{'epochs':>8}{'pruned':>8}{'best_acc_%':>12}{'wall_s':>9}")
    for r in rows:
        print(f"{r['name']:<20}{r['energy_j']:>12.1f}{r['epochs']:>8}{r['pruned']:>8}"
              f"{r['best_accuracy'] * 100:>12.2f}{r['wall_s']:>9.1f}")
    a, b = rows
    print(f"energy_saved_share {1 - b['energy_j'] / a['energy_j']:.3f}  epochs_saved_share "
          f"{1 - b['epochs'] / a['epochs']:.3f}  best_accuracy_delta_pp {(b['best_accuracy'] - a['best_accuracy']) * 100:+.2f}")


if __name__ == "__main__":
    main()
