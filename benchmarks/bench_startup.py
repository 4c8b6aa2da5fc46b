"""Cold start: seconds from launching ``python -m powertrain`` to the end of its first optimizer step.

Method (see README.md): the parent notes the wall clock, launches a fresh interpreter, and the child
registers torch's *global* optimizer step post-hook (``torch.optim.optimizer.
register_optimizer_step_post_hook``), which fires after the first ``step()`` of any optimizer, prints the
wall clock and exits at once. No product code is changed or instrumented. Three commands, interleaved,
each ``--repeat`` times, median:
- ``powertrain``: ``python -m powertrain max_epochs=1 dataset.limit_train=64`` through the real entry point
  (override pre-check, Hydra compose, validate, run: data, model, meter, first step);
- ``minimal``: a hand-written script doing the same work with no framework: import torch, read the same
  digits file, build the same SimpleCNN with torch.nn, SGD, one step;
- ``import_torch``: ``python -c "import torch"`` to exit, the floor any PyTorch program pays.
Headline: ``startup_ratio`` = powertrain ÷ minimal (target ≤ 1.5); the ratio to ``import torch`` is shown
too. Every child imports torch before the hook is registered; powertrain imports it before its first step
anyway, so only the order changes, not the total.

Run: ``.venv/bin/python benchmarks/bench_startup.py`` (about 1 min on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HOOK = """
import os, sys, time
import torch.optim.optimizer as _o
def _first_step(opt, args, kwargs):
    os.write(1, f"\\nFIRST_STEP_AT {time.time():.6f}\\n".encode())
    os._exit(0)
_o.register_optimizer_step_post_hook(_first_step)
"""

POWERTRAIN = HOOK + """
import runpy
sys.argv = ["powertrain", *sys.argv[1:]]
runpy.run_module("powertrain", run_name="__main__", alter_sys=True)
raise SystemExit("no optimizer step happened")
"""

# what a user would write by hand for the same first step (same data file, same network, same optimizer)
MINIMAL = HOOK + """
import gzip, importlib.util, pathlib
import numpy as np, torch
from torch import nn
spec = importlib.util.find_spec("sklearn")
path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "digits.csv.gz"
with gzip.open(path, "rt") as f:
    raw = np.loadtxt(f, delimiter=",", dtype=np.float32)
x = torch.from_numpy(raw[:, :-1].reshape(-1, 1, 8, 8)); y = torch.from_numpy(raw[:, -1].astype(np.int64))
x = (x - x.mean()) / x.std()
model = nn.Sequential(
    nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(3, 9, 3, padding=1), nn.BatchNorm2d(9), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
    nn.Linear(36, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
idx = torch.randperm(len(y))[:64]
loss = nn.functional.cross_entropy(model(x[idx]), y[idx]); loss.backward(); opt.step()
raise SystemExit("no optimizer step happened")
"""


def first_step_s(code: str, args: list[str], cwd: str) -> float:
    t0 = time.time()
    p = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, timeout=300)
    stamps = [ln for ln in p.stdout.splitlines() if ln.startswith("FIRST_STEP_AT ")]
    if p.returncode != 0 or not stamps:
        raise SystemExit(f"child failed (rc {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return float(stamps[0].split()[1]) - t0


def exit_s(code: str, cwd: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=cwd, check=True, timeout=300)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        pt_args = ["max_epochs=1", "dataset.limit_train=64", f"hydra.run.dir={tmp}/run"]
        first_step_s(POWERTRAIN, pt_args, tmp)  # warm the page cache for all three alike
        pt, mn, imp = [], [], []
        for _ in range(args.repeat):
            pt.append(first_step_s(POWERTRAIN, pt_args, tmp))
            mn.append(first_step_s(MINIMAL, [], tmp))
            imp.append(exit_s("import torch", tmp))

    med = statistics.median
    print(f"repeat {args.repeat}")
    print(f"powertrain_first_step_s {med(pt):.2f}  ({' '.join(f'{t:.2f}' for t in pt)})")
    print(f"minimal_first_step_s {med(mn):.2f}  ({' '.join(f'{t:.2f}' for t in mn)})")
    print(f"import_torch_s {med(imp):.2f}  ({' '.join(f'{t:.2f}' for t in imp)})")
    print(f"startup_ratio_vs_import_torch {med(pt) / med(imp):.2f}")
    print(f"startup_ratio {med(pt) / med(mn):.2f}")


if __name__ == "__main__":
    main()
