"""``hydra/launcher=slurm`` with the Slurm controller down: one line, exit 2, nothing submitted.

No cluster is used (these are not ``slurm`` tests): ``sinfo`` and ``sbatch`` are stand-ins on PATH that
answer as the real clients do when slurmctld cannot be reached, so the real CLI, Hydra, the Slurm
launcher plugin and submitit's submission path run unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from faults.proc import SMALL, Run

pytestmark = pytest.mark.slow
DOWN = "Unable to contact slurm controller (connect failure)"


def _bin(tmp_path: Path, **scripts: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in scripts.items():
        exe = bin_dir / name
        exe.write_text("#!/bin/sh\n" + body)
        exe.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def _one_line(run: Run) -> str:
    err = run.stderr().strip()
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("powertrain: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_sinfo_cannot_reach_the_controller(tmp_path: Path) -> None:
    env = _bin(tmp_path, sinfo=f'echo "slurm_load_partitions: {DOWN}" >&2; exit 1\n',
               sbatch='echo "sbatch must not be called" >&2; touch "$0.called"; exit 1\n')
    run = Run(["-m", "hydra/launcher=slurm", *SMALL, "max_epochs=1", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
              tmp_path, extra_env=env)
    assert run.finish() == 2
    line = _one_line(run)
    assert line.startswith("powertrain: error: hydra/launcher='slurm' is not allowed: a Slurm cluster whose "
                           f"controller answers (sinfo: slurm_load_partitions: {DOWN}")
    assert line.endswith("nothing was submitted")
    assert not (tmp_path / "bin" / "sbatch.called").exists()


def test_sbatch_cannot_reach_the_controller(tmp_path: Path) -> None:
    # sinfo answers (from a cache, or before the controller went down); the submission is refused
    env = _bin(tmp_path, sinfo='echo "debug* 2 8000 4:00:00"\n',
               sbatch=f'echo "sbatch: error: Batch job submission failed: {DOWN}" >&2; exit 1\n')
    run = Run(["-m", "hydra/launcher=slurm", *SMALL, "max_epochs=1", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
              tmp_path, extra_env=env)
    assert run.finish() == 2
    line = _one_line(run)
    assert line == (f"powertrain: error: hydra/launcher='slurm' is not allowed: a submission sbatch accepts "
                    f"(sbatch: error: Batch job submission failed: {DOWN}); nothing was submitted")
