"""Helpers the benchmark scripts share (run as ``python benchmarks/<name>.py``, so this directory is on
sys.path and ``from _common import ...`` finds this module)."""

from __future__ import annotations

import os


def child_env(threads: int) -> dict[str, str]:
    """This process's environment for a child ``python -m powertrain``, with ``OMP_NUM_THREADS=threads``
    (0: unset, torch's default). Set, never inherited: on a shared 2-core machine torch's default OpenMP
    threads can slow tiny models several-fold, and a value left in the shell would skew the comparison."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env
