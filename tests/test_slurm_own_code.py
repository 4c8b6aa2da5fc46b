"""The user's own model and dataset (outside src/powertrain) as a Slurm array on the REAL local cluster.

Each task is a fresh process on the compute node: it must find the user's code through PYTHONPATH (the
submitting environment is exported), the config dir of their own through the composed config, and names
registered in a plug-in module through ``plugins=[...]``. A name registered only in a wrapper script is
refused before anything is submitted. Run by the lead (``-m slurm``); every test cancels its jobs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from own_lab import lab_env, write_lab
from slurm_fixtures import scancel_quietly

pytestmark = pytest.mark.slurm


def _array_ids(sweep: Path) -> list[str]:
    folder = sweep / ".submitit"
    if not folder.is_dir():
        return []
    return sorted({m.group(1) for d in folder.iterdir() if (m := re.fullmatch(r"(\d+)_\d+", d.name))})


def _sweep(lab: dict[str, Path], tmp_path: Path, *args: str, command: list[str] | None = None,
           timeout: float = 400) -> tuple[subprocess.CompletedProcess, Path]:
    sweep = tmp_path / "sweep"
    env = {k: v for k, v in lab_env(lab).items() if not k.startswith("SLURM_")}
    cmd = (command or [sys.executable, "-m", "powertrain"]) + ["-m", "hydra/launcher=slurm_local", *args,
                                                               "max_epochs=1", f"hydra.sweep.dir={sweep}"]
    try:
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    finally:
        scancel_quietly(*_array_ids(sweep))
    return proc, sweep


def _rows(sweep: Path) -> list[dict[str, Any]]:
    return json.loads((sweep / "sweep_summary.json").read_text())["rows"]


def test_own_model_and_data_from_a_search_path_run_as_a_slurm_array(slurm_cluster: Any, tmp_path: Path) -> None:
    lab = write_lab(tmp_path / "own")
    proc, sweep = _sweep(lab, tmp_path, f"hydra.searchpath=[file://{lab['conf']}]", "model=my_net,simple_cnn",
                         "dataset=my_data")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(_array_ids(sweep)) == 1  # really one Slurm array
    rows = _rows(sweep)
    assert [r["status"] for r in rows] == ["completed", "completed"]
    r = json.loads((sweep / "0" / "result.json").read_text())
    assert r["config"]["model"]["_target_"] == "mylab_pt.nets.MyNet" and r["data"]["name"] == "mylab_pt.data.images"


def test_a_plugin_named_in_plugins_reaches_the_slurm_tasks(slurm_cluster: Any, tmp_path: Path) -> None:
    lab = write_lab(tmp_path / "own")
    proc, sweep = _sweep(lab, tmp_path, "plugins=[mylab_pt.plugin]", "model.family=lab_net",
                         "dataset.name=lab_images", "optimizer=sgd,adam")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["status"] for r in _rows(sweep)] == ["completed", "completed"]


def test_a_name_only_a_wrapper_script_registers_is_refused_before_submitting(slurm_cluster: Any,
                                                                             tmp_path: Path) -> None:
    lab = write_lab(tmp_path / "own")
    script = tmp_path / "train.py"
    script.write_text("import powertrain, torch\n\n"
                      "@powertrain.register_model('script_net')\n"
                      "def script_net(in_features, num_classes):\n"
                      "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_features, num_classes))\n\n"
                      "from powertrain.__main__ import main\nmain()\n")
    proc, sweep = _sweep(lab, tmp_path, "model.family=script_net", "optimizer=sgd,adam",
                         command=[sys.executable, str(script)])
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "model.family='script_net' is not allowed" in proc.stderr and "registered by __main__" in proc.stderr
    assert _array_ids(sweep) == []  # nothing was submitted
