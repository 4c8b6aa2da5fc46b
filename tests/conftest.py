"""Shared fixtures: compose a config the way the CLI does, build small run configs, run the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
_CLUSTER_SH = REPO / "slurm" / "cluster.sh"


@pytest.fixture(autouse=True)
def _close_figures() -> Any:
    """Close the figures a test drew and did not save (the report closes its own): pyplot keeps every
    open figure, and a few hundred tests' worth would hold memory and warn."""
    yield
    plt = sys.modules.get("matplotlib.pyplot")  # only where a test imported it: most never do
    if plt is not None:
        plt.close("all")


@pytest.fixture
def compose() -> Callable[..., Any]:
    """``compose("model=dense_poly", ...)`` -> the DictConfig Hydra composes for those overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import powertrain.compose.validate
    import powertrain.config.paths

    powertrain.compose.validate.register_configs()

    def _compose(*overrides: str) -> Any:
        # a fresh Hydra context per call: Hydra's global state must not leak between tests
        with initialize_config_dir(config_dir=str(powertrain.config.paths.conf_dir()), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=list(overrides))

    return _compose


@pytest.fixture
def tiny_cfg() -> Callable[..., Any]:
    """``tiny_cfg(max_epochs=2, **{"optimizer.lr": 0.1})`` -> a RunConfig on a small synthetic dataset.

    Quiet, on the CPU, no checkpoint: seconds per run. Dotted keys reach into the groups.
    """
    from powertrain.config import RunConfig

    def _make(**values: Any) -> Any:
        cfg = RunConfig()
        defaults = {
            "dataset.name": "synthetic", "dataset.train_size": 256, "dataset.test_size": 128,
            "model.family": "dense_poly", "optimizer.name": "sgd", "optimizer.lr": 0.05,
            "optimizer.momentum": 0.9, "optimizer.scheduler.name": "none", "hardware.device": "cpu",
            "batch_size": 64, "max_epochs": 3,
            "verbose": False, "save_checkpoint": False,
        }
        for dotted, v in {**defaults, **values}.items():
            if dotted.replace("__", ".") == "paradigm.name":  # each paradigm has its own schema
                from powertrain.compose.validate import paradigm_schema

                cfg.paradigm = paradigm_schema(v)()
                continue
            *parents, leaf = dotted.replace("__", ".").split(".")
            node = cfg
            for p in parents:
                node = getattr(node, p)
            if not hasattr(node, leaf):  # a typo in a test must not pass silently
                raise AttributeError(dotted)
            setattr(node, leaf, v)
        return cfg

    return _make


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess]:
    """``cli("max_epochs=1", cwd=tmp_path)`` runs ``python -m powertrain`` and returns the finished process."""

    def _run(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120,
             command: list[str] | None = None) -> subprocess.CompletedProcess:
        full_env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
        full_env.update(env or {})
        cmd = (command or [sys.executable, "-m", "powertrain"]) + list(args)
        return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)

    return _run


@pytest.fixture(scope="session")
def slurm_cluster() -> subprocess.CompletedProcess:
    if os.geteuid() != 0:
        pytest.skip("the local Slurm cluster needs root (writes /etc/slurm, starts daemons)")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("Slurm is not installed and apt-get is unavailable to install it")
    proc = subprocess.run(["bash", str(_CLUSTER_SH), "up"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"cluster.sh up failed:\n{proc.stdout}\n{proc.stderr}"
    # Jobs an earlier, interrupted session left behind would hold the node's 2 CPUs and keep this session's
    # jobs pending until their time limit: the tests start from an empty queue.
    clear = subprocess.run(["bash", str(_CLUSTER_SH), "clear"], capture_output=True, text=True, timeout=120)
    assert clear.returncode == 0, f"cluster.sh clear failed:\n{clear.stdout}\n{clear.stderr}"
    # Left running for later Slurm tests; `up` on a running cluster is a no-op.
    return proc


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """``nvml([FakeGpu(...), ...])`` installs a fake pynvml with those GPUs and returns the FakeNvml."""
    from fakes.nvml import FakeNvml

    def install(gpus: Any, **kwargs: Any) -> Any:
        fake = FakeNvml(gpus, **kwargs)
        monkeypatch.setitem(sys.modules, "pynvml", fake.module)
        return fake

    return install
