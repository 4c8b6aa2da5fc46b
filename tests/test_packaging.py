"""An installed (non-editable) wheel carries its configs, data tables and Hydra plugins."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_install_runs_from_any_directory(tmp_path):
    wheels, target, cwd = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    cwd.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(REPO)], check=True, timeout=600)
    wheel = next(wheels.glob("powertrain-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, timeout=300)
    # PYTHONPATH puts the installed copy ahead of the editable checkout
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    probe = ("import powertrain.config.paths as p, powertrain, hydra_plugins.powertrain_optuna_sweeper as o; "
             "print(p.conf_dir()); print(powertrain.__file__)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out[0] == str(target / "powertrain" / "conf") and out[1].startswith(str(target))
    run = subprocess.run([sys.executable, "-m", "powertrain", "max_epochs=1", "dataset.limit_train=64",
                          "carbon.region=DEU", "hydra.run.dir=run"], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads((cwd / "run" / "result.json").read_text())
    assert result["status"] == "completed" and result["carbon"]["region"] == "DEU"
