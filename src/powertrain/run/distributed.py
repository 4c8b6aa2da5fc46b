"""One run across processes, GPUs and nodes: PyTorch DDP, with every physical device billed once
(who meters what, and the gathered meter, live in ``powertrain.energy.distributed``).

Ranks come from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), from a
multi-task Slurm step (SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID; the first host of the job's
node list, parsed by submitit's ``SlurmJobEnvironment``, is the master), or from ``distributed_local.launch_local``
(``distributed.nproc_per_node=N``: this command starts N ranks of itself and outlives them).

Energy: each rank builds a meter for the devices it owns (``assign_meters``): its GPU, by UUID, unless a
lower rank already holds that GPU; the node's CPU packages and DRAM in the lowest rank of each host,
billing the CPU time and memory of every rank on that host. At each window edge the ranks gather their
measurements (``all_gather_object``; never per step), so every rank holds the same run-wide ledger with
components named per node (``node0/cpu:package-0``, ``node1/gpu:0``) and takes the same budget decisions;
rank 0 writes the one result.json and the checkpoint.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from powertrain.config.errors import ConfigError
from powertrain.energy.distributed import (
    Assignment,
    GatheredMeter,
    RankInfo,
    assign_meters,
    gpu_uuid,
    join,
    merge_measurements,
    rank_meter,
)
from powertrain.results import RESULT_FILE

ENV_LAUNCHER = "POWERTRAIN_LAUNCHER"  # "local": the ranks' parent is launch_local, which names a dead rank
ENV_SWEEP_ID = "POWERTRAIN_SWEEP_ID"  # a multirun job's sweep id, for ranks started by launch_local
RANK_VIEWS = "ranks"  # run_dir/ranks/rank<r>.json: a failed rank's own result, for whoever writes the run's


@dataclass(frozen=True)
class World:
    """This process's place in a distributed run."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    launcher: str  # torchrun | slurm | local

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect_world(environ: Optional[dict[str, str]] = None) -> Optional[World]:
    """The world this process was started in, or None for a one-process run."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        if int(env["WORLD_SIZE"]) <= 1:
            return None
        return World(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0")),
                     env.get("MASTER_ADDR", "127.0.0.1"), int(env.get("MASTER_PORT", "29500")),
                     env.get(ENV_LAUNCHER, "torchrun"))
    # srun sets SLURM_STEP_NUM_TASKS for its step; a batch script's one process is not a world of N
    ntasks = int(env.get("SLURM_STEP_NUM_TASKS", "1") or 1)
    if "SLURM_PROCID" in env and ntasks > 1:
        port = int(env.get("MASTER_PORT") or 20000 + int(env.get("SLURM_JOB_ID", "0") or 0) % 20000)
        return World(int(env["SLURM_PROCID"]), ntasks, int(env.get("SLURM_LOCALID", "0")),
                     env.get("MASTER_ADDR") or _slurm_master(env), port, "slurm")
    return None


def _slurm_master(env: Any) -> str:
    try:
        from submitit.slurm.slurm import SlurmJobEnvironment

        return SlurmJobEnvironment().hostnames[0]
    except Exception:  # no submitit: the node list's first host through scontrol
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", "localhost")
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True)
        return (out.stdout.split() or ["localhost"])[0]


def check(cfg: Any, world: Optional[World] = None) -> None:
    """Refuse settings a distributed run cannot honour (called by validate, and by each rank at start)."""
    d = cfg.distributed
    world = world if world is not None else detect_world()
    if d.nproc_per_node > 1 and world is not None and world.launcher != "local":
        raise ConfigError("distributed.nproc_per_node", d.nproc_per_node,
                          f"1 when {world.launcher} starts the ranks (it sets the world size)")
    size = world.world_size if world is not None else d.nproc_per_node
    if size > 1:
        if cfg.batch_size % size:
            raise ConfigError("batch_size", cfg.batch_size, f"a multiple of the world size {size} "
                              f"(batch_size is the global batch; each rank takes batch_size / {size})")
        if cfg.paradigm.name == "multitask":
            raise ConfigError("paradigm.name", "multitask", "scratch or pretrained in a distributed run "
                              "(multitask evaluation is not sharded across ranks)")
    if d.backend == "nccl" and cfg.hardware.device == "cpu":
        raise ConfigError("distributed.backend", "nccl", "gloo or auto with hardware.device=cpu (NCCL needs GPUs)")


class EpochSync:
    """The epoch-end collectives of ``train.fit``: the same loss, clock and stop decision on every rank."""

    def __init__(self, world_size: int, device: Any):
        self.world_size, self.device = world_size, device

    def mean(self, t: Any) -> Any:
        t = t.detach().clone()
        _dist().all_reduce(t)
        return t / self.world_size

    def agree(self, wall_s: float, stop: bool) -> tuple[float, bool]:
        """The slowest rank's clock, and whether any rank was asked to stop (one all_reduce)."""
        import torch

        t = torch.tensor([wall_s, 1.0 if stop else 0.0], dtype=torch.float64, device=self.device)
        _dist().all_reduce(t, op=_dist().ReduceOp.MAX)
        wall, flag = t.tolist()
        return wall, flag > 0

    def sum(self, t: Any) -> Any:
        t = t.clone()
        _dist().all_reduce(t)
        return t


def _dist() -> Any:
    import torch.distributed as dist

    return dist


# ---------------------------------------------------------------- one rank's run


class DistributedRun:
    """A rank's part of the run: joins the group, meters what it owns, shards data, wraps the model."""

    def __init__(self, world: World, cfg: Any, device: Any, run_dir: Path):
        import datetime

        import torch

        check(cfg, world)
        self.world, self.cfg = world, cfg
        if device.type == "cuda":  # one GPU per local rank; more ranks than GPUs share them
            device = torch.device("cuda", world.local_rank % max(torch.cuda.device_count(), 1))
            torch.cuda.set_device(device)
        self.device = device
        backend = cfg.distributed.backend
        self.backend = ("nccl" if device.type == "cuda" else "gloo") if backend == "auto" else backend
        _dist().init_process_group(
            self.backend, init_method=f"tcp://{world.master_addr}:{world.master_port}", rank=world.rank,
            world_size=world.world_size, timeout=datetime.timedelta(seconds=cfg.distributed.timeout_s),
        )  # fmt: skip
        self.infos, self.assignments = join(device, str(run_dir))
        self.started_at = self.infos[0].started_at
        self.run_dir = Path(self.infos[0].run_dir)  # checkpoint and result: where rank 0 keeps them
        self.batch_size_per_rank = cfg.batch_size // world.world_size
        self.sync = EpochSync(world.world_size, device)

    @property
    def is_main(self) -> bool:
        return self.world.is_main

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (a decision only rank 0 can take, e.g. whether to resume)."""
        box = [obj]
        _dist().broadcast_object_list(box, src=0)
        return box[0]

    def build_meter(self, energy_cfg: Any, device: Any, **kwargs: Any) -> GatheredMeter:
        """This rank's meter for the devices it owns, wrapped so that every window is run-wide."""
        return rank_meter(energy_cfg, device, self.assignments, self.world.rank, **kwargs)

    def shard(self, task: Any) -> None:
        """Give this rank its slice of every global batch and of the test split."""
        if not hasattr(task, "shard"):
            raise ConfigError("paradigm.name", self.cfg.paradigm.name, "scratch or pretrained in a distributed run")
        task.shard(self.world.rank, self.world.world_size, self.batch_size_per_rank, self.sync.sum)

    def wrap(self, model: Any) -> Any:
        import torch
        from torch.nn.parallel import DistributedDataParallel

        if self.device.type == "cuda":  # BatchNorm over the global batch; PyTorch has no CPU SyncBatchNorm
            # shares the parameters and running-stat tensors, so the optimizer and checkpoint see the same
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            return DistributedDataParallel(model, device_ids=[self.device.index])
        return DistributedDataParallel(model)

    def annotate(self, result: dict[str, Any]) -> None:
        """What the result says about the world: size, nodes, global and per-rank batch, who metered what."""
        hosts = {}
        for i in self.infos:
            hosts.setdefault(self.assignments[i.rank].node, {"host": i.host, "ranks": []})["ranks"].append(i.rank)
        result["world_size"] = self.world.world_size
        result["nodes"] = len(hosts)
        result["distributed"] = {
            "launcher": self.world.launcher, "backend": self.backend,
            "batch_size": self.cfg.batch_size, "batch_size_per_rank": self.batch_size_per_rank,
            "hosts": hosts,
            "metered_by": {f"rank{r}": [k for k, on in (("gpu", a.gpu), ("cpu+dram", a.cpu)) if on]
                           for r, a in self.assignments.items()},
        }  # fmt: skip

    def finish(self, result: dict[str, Any], run_dir: Path) -> None:
        """A failed rank other than 0 leaves its view; under torchrun or Slurm, with rank 0 gone, it writes
        the run's result itself (under ``launch_local`` the launcher does)."""
        from powertrain.results import write_json_atomic, write_result

        if not self.is_main and result["status"] == "failed":
            write_json_atomic(run_dir / RANK_VIEWS / f"rank{self.world.rank}.json", result)
            if self.world.launcher != "local" and not _result_since(run_dir, self.started_at, wait_s=5.0):
                result = dict(result, error=f"rank 0 ended without writing the result; rank "
                              f"{self.world.rank}: {result.get('error')}")
                write_result(run_dir, result)
        try:
            _dist().destroy_process_group()
        except Exception:  # a broken group (a peer died) must not hide the run's outcome
            pass


def _result_since(run_dir: Path, t0: float, wait_s: float = 0.0) -> bool:
    """Whether result.json was written at or after ``t0`` (this attempt), waiting up to ``wait_s``."""
    path = Path(run_dir) / RESULT_FILE
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if path.stat().st_mtime >= t0 - 1.0:
                return True
        except OSError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


__all__ = ["World", "detect_world", "check", "assign_meters", "merge_measurements", "GatheredMeter",
           "EpochSync", "DistributedRun", "Assignment", "RankInfo", "gpu_uuid"]
