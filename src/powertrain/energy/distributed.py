"""Energy across the ranks of a ``torch.distributed`` run: every physical device billed exactly once.

Each rank builds a meter for the devices it owns (``assign_meters``): its GPU, by UUID, unless a lower rank
already holds that GPU; a host's CPU packages and DRAM in the lowest rank of each host, billing the CPU time
and memory of every rank on that host. At each window end the ranks gather their measurements
(``all_gather_object``; never per step) and ``merge_measurements`` names the components per node
(``node0/cpu:package-0``, ``node1/gpu:0``), so every rank holds the same run-wide measurement.

Used by the CLI's DDP runs (``powertrain.run.distributed``) and by ``powertrain.Meter`` under a process
group the user started; torch.distributed is imported only when a group exists.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class RankInfo:
    """What one rank tells the others at start: where it runs and which GPU it holds."""

    rank: int
    host: str
    pid: int
    gpu_uuid: Optional[str] = None
    affinity: tuple[int, ...] = ()
    started_at: float = 0.0  # time.time() when the rank joined (rank 0's marks this attempt)
    run_dir: str = ""  # rank 0's is the run's: torchrun's ranks may each compose another ${now:...} dir


@dataclass(frozen=True)
class Assignment:
    """What one rank meters: its node's name, and whether it owns its GPU and its node's CPU/DRAM."""

    node: str  # node0, node1, ... in order of each host's lowest rank
    gpu: bool
    cpu: bool
    peers: tuple[int, ...] = ()  # pids of the other ranks on its host (billed with the CPU/DRAM)
    affinity: tuple[int, ...] = ()  # the CPUs of every rank on its host


def assign_meters(infos: list[RankInfo]) -> dict[int, Assignment]:
    """Each physical device metered by exactly one rank.

    A GPU (by UUID: unique across hosts) by the lowest rank that holds it; a host's CPU packages and DRAM
    by the lowest rank on that host, which also bills the other ranks' CPU time and memory there.
    """
    infos = sorted(infos, key=lambda i: i.rank)
    nodes: dict[str, str] = {}
    gpu_owner: dict[str, int] = {}
    cpu_owner: dict[str, int] = {}
    for i in infos:
        nodes.setdefault(i.host, f"node{len(nodes)}")
        cpu_owner.setdefault(i.host, i.rank)
        if i.gpu_uuid is not None:
            gpu_owner.setdefault(i.gpu_uuid, i.rank)
    out = {}
    for i in infos:
        on_host = [j for j in infos if j.host == i.host]
        out[i.rank] = Assignment(
            node=nodes[i.host], gpu=i.gpu_uuid is not None and gpu_owner[i.gpu_uuid] == i.rank,
            cpu=cpu_owner[i.host] == i.rank, peers=tuple(j.pid for j in on_host if j.rank != i.rank),
            affinity=tuple(sorted({c for j in on_host for c in j.affinity})),
        )  # fmt: skip
    return out


def merge_measurements(name: str, per_rank: list[Any], nodes: list[str]) -> Any:
    """One run-wide ``Measurement`` from every rank's: components renamed ``<node>/<component>``.

    A GPU is named by its NVML index on its host, so two ranks that each see their own GPU as cuda:0
    (one GPU per task under Slurm) still get two components.
    """
    from powertrain.energy.base import Measurement

    comps = []
    for m, node in zip(per_rank, nodes, strict=True):
        for c in m.components:
            local = c.name
            if c.kind == "gpu" and c.extra.get("nvml_index") is not None:
                local = f"gpu:{c.extra['nvml_index']}"
            comps.append(dataclasses.replace(c, name=f"{node}/{local}", extra=dict(c.extra)))
    return Measurement(name=name, time_s=max(m.time_s for m in per_rank), components=comps)


class GatheredMeter:
    """An ``EnergyMeter`` for the whole run: each rank's own meter, gathered at every window's end.

    ``end_window`` is a collective: every rank calls it at the same points (the loop's control flow is
    the same on every rank). A window ended after a failure (``end_open_windows``) is this rank's alone:
    its peers may be gone.
    """

    def __init__(self, local: Any, nodes: list[str], lines: list[tuple[str, list[str]]]):
        self.local, self.nodes, self._lines = local, nodes, lines
        self.rank = _dist().get_rank()
        self._unshared: list[Any] = []  # windows ended here whose gather failed: their joules are kept

    def start(self) -> None:
        self.local.start()

    def describe(self) -> str:
        return " · ".join(f"{who}: {text}" for who, (text, *_) in self._lines if text)

    def billing_lines(self) -> list[str]:
        return [f"{who} {line}" for who, (_, *lines) in self._lines for line in lines]

    def begin_window(self, name: str) -> None:
        self.local.begin_window(name)

    def end_window(self, name: str) -> Any:
        mine = self.local.end_window(name)
        gathered: list[Any] = [None] * len(self.nodes)
        try:
            _dist().all_gather_object(gathered, mine)
        except Exception:  # a peer is gone: this rank's joules of the window still go in the result
            self._unshared.append(mine)
            raise
        return merge_measurements(name, gathered, self.nodes)

    def end_open_windows(self) -> list[Any]:
        ended, self._unshared = self._unshared + self.local.end_open_windows(), []
        return [merge_measurements(m.name, [m], [self.nodes[self.rank]]) for m in ended]

    def close(self) -> None:
        self.local.close()




def gpu_uuid(device: Any) -> Optional[str]:
    """The UUID CUDA reports for ``device`` (None off the GPU): which physical GPU a rank holds."""
    if device.type != "cuda":
        return None
    import torch

    try:
        return str(torch.cuda.get_device_properties(device).uuid)
    except Exception:
        return f"{socket.gethostname()}:cuda:{device.index}"


def _dist() -> Any:
    import torch.distributed as dist

    return dist


def join(device: Any, run_dir: str = "") -> tuple[list[RankInfo], dict[int, Assignment]]:
    """Every rank's ``RankInfo`` (one ``all_gather_object``, a collective) and who meters what."""
    d = _dist()
    affinity = tuple(sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else ()
    me = RankInfo(d.get_rank(), socket.gethostname(), os.getpid(), gpu_uuid(device), affinity, time.time(), run_dir)
    infos: list[Any] = [None] * d.get_world_size()
    d.all_gather_object(infos, me)
    return infos, assign_meters(infos)


def rank_meter(energy_cfg: Any, device: Any, assignments: dict[int, Assignment], rank: int,
               **kwargs: Any) -> GatheredMeter:
    """Rank ``rank``'s meter for the devices ``assignments`` (``join``'s) gives it, wrapped so that every
    window is run-wide.

    A collective: every rank calls it once, in the same order as its other collectives.
    """
    mine = assignments[rank]
    nodes = [assignments[r].node for r in range(len(assignments))]  # each rank's node, in rank order
    from powertrain.energy.estimate import set_peer_processes
    from powertrain.energy.select import build_meter, device_sync

    if mine.cpu:
        set_peer_processes(list(mine.peers))  # the host's other ranks: their CPU time and memory
    local = build_meter(energy_cfg, device if mine.gpu else "cpu", sync=device_sync(device),
                        cpu=mine.cpu, affinity=set(mine.affinity) or None, **kwargs)
    gathered: list[Any] = [None] * len(nodes)
    lines = [local.describe() if local.sources else ""] + local.billing_lines()
    _dist().all_gather_object(gathered, lines)
    who = [f"{nodes[r]}/rank{r}" for r in range(len(nodes))]
    return GatheredMeter(local, nodes, [(w, g) for w, g in zip(who, gathered, strict=True) if g[0]])


__all__ = ["Assignment", "GatheredMeter", "RankInfo", "assign_meters", "gpu_uuid", "join", "merge_measurements",
           "rank_meter"]
