"""Real processes for the fault tests: start ``python -m powertrain``, wait for a marker, inject the fault.

Every wait is for a marker the run itself produces (an epoch line on stdout, a field in its result.json),
never a fixed sleep; the deadlines only turn a hang into a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

DEADLINE_S = 180.0
# small, CPU-only, one thread (so neighbours' load changes the pace, not the order of events)
SMALL = ["dataset=synthetic", "dataset.train_size=2048", "dataset.test_size=256", "batch_size=32",
         "hardware.device=cpu", "hardware.cpu_threads=1"]


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR" and not k.startswith("SLURM_")}


class Run:
    """``python -m powertrain *args`` in ``cwd``; stdout read line by line, stderr drained by a thread.

    Both are pipes, not files: a file-size limit on the run (the full-disk tests) must not cut its own
    error output.
    """

    def __init__(self, args: list[str], cwd: Path, preexec: Optional[Callable[[], None]] = None,
                 extra_env: Optional[dict[str, str]] = None):
        self.lines: list[str] = []
        self._err_chunks: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "powertrain", *args], cwd=cwd,
                                     env={**env(), **(extra_env or {})}, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, preexec_fn=preexec)
        # drained as it comes, so a chatty stderr can never block the run
        self._err_thread = threading.Thread(target=self._drain, daemon=True)
        self._err_thread.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for chunk in iter(lambda: self.proc.stderr.readline(), ""):
            self._err_chunks.append(chunk)

    def wait_line(self, prefix: str, timeout_s: float = DEADLINE_S) -> str:
        """Read stdout until a line starts with ``prefix`` (the marker); fail at the deadline or at exit."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith(prefix):
                return line
            assert time.monotonic() < deadline, f"no {prefix!r} line within {timeout_s} s"
        raise AssertionError(f"the run ended (rc {self.proc.wait()}) before a {prefix!r} line:\n"
                             f"{''.join(self.lines)}\n{self.stderr()}")

    def finish(self, timeout_s: float = DEADLINE_S) -> int:
        assert self.proc.stdout is not None
        try:
            self.proc.wait(timeout=timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.lines.append(self.proc.stdout.read())
        self._err_thread.join(10)
        return self.proc.returncode

    def stdout(self) -> str:
        return "".join(self.lines)

    def stderr(self) -> str:
        return "".join(self._err_chunks)


def wait_for(condition: Callable[[], Any], what: str, timeout_s: float = DEADLINE_S, proc: Any = None) -> Any:
    """Poll ``condition`` (a marker the run writes) until it is truthy; fail at the deadline or if ``proc``
    ends first."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before {what}")
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s"
        time.sleep(0.05)


def result_json(run_dir: Path) -> Optional[dict[str, Any]]:
    """The run's result.json as written (None while absent); atomic writes: never half a file."""
    try:
        return json.loads((Path(run_dir) / "result.json").read_text())
    except FileNotFoundError:
        return None


def temp_files(run_dir: Path) -> list[str]:
    """Files an atomic write would leave behind if it were interrupted (none should be)."""
    return sorted(p.name for p in Path(run_dir).iterdir() if p.name.startswith((".result.json.", ".checkpoint.pt.",
                                                                               ".powertrain-probe-")))
