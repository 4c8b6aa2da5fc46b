"""Prediction error on the smoke grid: ``predict=true`` first, then the same sweep into the same directory.

Prints per job and in total the predicted and measured energy (total_j: train + eval) and the error
(predicted - measured) / measured. Target (issue 14): total within 15 %.

Run: ``.venv/bin/python benchmarks/bench_predict.py [extra overrides]`` (about a minute on 2 cores);
default grid ``optimizer=sgd,adam batch_size=32,256 dataset=digits max_epochs=3``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from powertrain.report.predicted import compare

GRID = ["-m", "optimizer=sgd,adam", "batch_size=32,256", "dataset=digits", "max_epochs=3"]


def main() -> None:
    extra = sys.argv[1:]
    with tempfile.TemporaryDirectory() as d:
        sweep = Path(d) / "grid"
        base = [sys.executable, "-m", "powertrain", *GRID, *extra, f"hydra.sweep.dir={sweep}"]
        for args in (["predict=true"], ["verbose=false"]):
            p = subprocess.run(base + args, cwd=d, capture_output=True, text=True, timeout=1800)
            if p.returncode != 0:
                raise SystemExit(f"{' '.join(args)} failed (rc {p.returncode}):\n{p.stderr[-3000:]}")
        record = json.loads((sweep / "predict.json").read_text())
        actual = []
        for job in sorted((p for p in sweep.iterdir() if (p / "result.json").exists()), key=lambda p: p.name):
            r = json.loads((job / "result.json").read_text())
            actual.append({"overrides": r["run"]["overrides"], "energy_j": r["energy"]["total_j"],
                           "wall_s": r["time"]["wall_s"], "status": r["status"]})
    c = compare(record, actual)
    print(f"grid: {' '.join(GRID[1:] + extra)}; profiling {record['total']['profile_wall_s']:.1f} s")
    print(f"{'job':<5}{'predicted_J':>12}{'±J':>8}{'measured_J':>12}{'error_%':>9}{'wall_err_%':>11}  overrides")
    for j in c["jobs"]:
        print(f"{j['job']:<5}{j['predicted_j']:>12.2f}{j['uncertainty_j']:>8.2f}{j['actual_j']:>12.2f}"
              f"{j['energy_error_pct']:>9.1f}{j['wall_error_pct']:>11.1f}  {' '.join(j['overrides'])}")
    t = c["total"]
    print(f"total{t['predicted_j']:>12.2f}{'':>8}{t['actual_j']:>12.2f}{t['energy_error_pct']:>9.1f}")


if __name__ == "__main__":
    main()
