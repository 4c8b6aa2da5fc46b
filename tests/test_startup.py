"""Start-up pays only for what the run uses: a default CPU run imports none of the heavy optional libraries."""

from __future__ import annotations

import json
import subprocess
import sys

# not pynvml: CUDA builds of torch import it themselves from torch.cuda
HEAVY = ("torchvision", "timm", "wandb", "optuna", "submitit", "sklearn", "matplotlib", "pandas", "scipy")

PROBE = f"""
import json, runpy, sys
sys.argv = ["powertrain", *sys.argv[1:]]
try:
    runpy.run_module("powertrain", run_name="__main__")
except SystemExit as e:
    if e.code:
        raise
print("IMPORTED " + json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})))
"""


def _imported(tmp_path, *overrides: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *overrides, f"hydra.run.dir={tmp_path}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("IMPORTED "))
    return json.loads(line[len("IMPORTED "):])


def test_default_cpu_run_imports_no_heavy_optional_library(tmp_path):
    assert _imported(tmp_path / "a", "max_epochs=1", "dataset.limit_train=64") == []


def test_wandb_is_imported_only_when_tracking_asks_for_it(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    mods = _imported(tmp_path / "b", "max_epochs=1", "dataset.limit_train=64", "tracking=wandb")
    assert "wandb" in mods and "torchvision" not in mods and "timm" not in mods
