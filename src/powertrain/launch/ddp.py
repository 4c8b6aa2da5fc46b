"""The local launcher of a distributed run: ``distributed.nproc_per_node=N`` starts N ranks and outlives them.

Each rank is ``python -m powertrain`` with the same overrides (``powertrain.run.distributed`` reads the
variables set here). This process is the survivor: when a rank dies it names it in result.json.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from powertrain.run.distributed import ENV_LAUNCHER, ENV_SWEEP_ID, RANK_VIEWS, _result_since


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_local(cfg: Any, run_dir: Path, overrides: list[str], sweep_id: Optional[str] = None,
                 hydra_argv: Sequence[str] = ()) -> dict[str, Any]:
    """Start ``distributed.nproc_per_node`` ranks of this command on this machine and outlive them.

    Each rank is ``python -m powertrain`` with the same overrides, the run directory pinned and torchrun's
    variables set. This process forwards SIGTERM/SIGUSR2/SIGINT to every rank, and is the survivor that
    names a rank that died: result.json says ``failed``, which rank and how, and is written whoever died.
    ``hydra_argv``: Hydra overrides the ranks need to compose the same config (``hydra.searchpath``).
    """
    from powertrain.results import read_result
    from powertrain.run.build import check_plugins_reach

    check_plugins_reach(cfg, "the DDP ranks")  # before any rank starts

    n = cfg.distributed.nproc_per_node
    run_dir = Path(run_dir).resolve()
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE=str(n),
               LOCAL_WORLD_SIZE=str(n), **{ENV_LAUNCHER: "local"})
    if sweep_id is not None:
        env[ENV_SWEEP_ID] = sweep_id
    if "OMP_NUM_THREADS" not in env and cfg.hardware.cpu_threads is None:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n))  # as torchrun: no oversubscription
    cmd = [sys.executable, "-m", "powertrain", *overrides, *hydra_argv, f"hydra.run.dir={run_dir}"]
    t0 = time.time()
    procs = [subprocess.Popen(cmd, env=dict(env, RANK=str(r), LOCAL_RANK=str(r))) for r in range(n)]
    previous = {}

    def forward(signum: int, frame: Any) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT):
        previous[sig] = signal.signal(sig, forward)
    try:
        exits = _wait(procs, cfg.distributed.timeout_s)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    result = read_result(run_dir) if _result_since(run_dir, t0) else None
    bad = [(r, rc) for r, rc in exits if rc != 0]
    if result is not None and result["status"] != "failed" and all(rc in (0, 1) for _, rc in exits):
        return result
    return _record_failure(run_dir, cfg, overrides, sweep_id, result, bad, t0)


def _wait(procs: list[subprocess.Popen], grace_s: float) -> list[tuple[int, int]]:
    """Wait for every rank; ``(rank, returncode)`` in the order they ended. Once one has ended, the rest
    get ``grace_s`` to finish (their collectives fail fast when a peer is gone), then SIGTERM, then SIGKILL."""
    exits: list[tuple[int, int]] = []
    first_end: Optional[float] = None
    termed = False
    while len(exits) < len(procs):
        for r, p in enumerate(procs):
            if r not in (e[0] for e in exits) and p.poll() is not None:
                exits.append((r, p.returncode))
                first_end = first_end or time.monotonic()
        if first_end is not None and len(exits) < len(procs):
            late = time.monotonic() - first_end
            for p in procs:
                if p.poll() is None and late > grace_s + 10:
                    p.kill()
                elif p.poll() is None and late > grace_s and not termed:
                    p.terminate()
            termed = termed or late > grace_s
        time.sleep(0.05)
    return exits


def _exit_text(rc: int) -> str:
    if rc < 0:
        try:
            return f"died (signal {signal.Signals(-rc).name})"
        except ValueError:
            return f"died (signal {-rc})"
    return f"failed (exit code {rc})"


def _record_failure(run_dir: Path, cfg: Any, overrides: list[str], sweep_id: Optional[str],
                    result: Optional[dict[str, Any]], bad: list[tuple[int, int]], t0: float) -> dict[str, Any]:
    """result.json for a run in which a rank failed or died: the first rank to end badly is named."""
    import json

    from powertrain.results import now_iso, skeleton, write_result

    views = {}
    for path in sorted((run_dir / RANK_VIEWS).glob("rank*.json")):
        if path.stat().st_mtime >= t0 - 1.0:
            views[int(path.stem[4:])] = json.loads(path.read_text())
    rank, rc = bad[0] if bad else (0, 0)
    what = f"rank {rank} {_exit_text(rc)}"
    own = (result if rank == 0 else views.get(rank)) or {}
    if own.get("error"):
        what += f": {own['error']}"
    if result is None:  # rank 0 never wrote it: the lowest rank that left its view stands in
        result = views[min(views)] if views else skeleton(run_dir, overrides, dataclasses.asdict(cfg), sweep_id)
        what += "; rank 0 wrote no result" if rank != 0 else ""
    elif rank != 0 and result.get("error"):
        what += f"; rank 0: {result['error']}"
    result["status"], result["error"] = "failed", what
    print(f"powertrain: {what.split(': ')[0]}; result: {run_dir / 'result.json'} (failed)", file=sys.stderr,
          flush=True)
    result.setdefault("distributed", {})["failed_rank"] = rank
    result["run"]["finished_at"] = result["run"].get("finished_at") or now_iso()
    write_result(run_dir, result)
    return result


__all__ = ["launch_local", "free_port"]
