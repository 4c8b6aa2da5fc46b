"""One run across processes (issue 13): DDP with gloo on the CPU, every physical device billed once.

End to end on this machine: ``python -m powertrain distributed.nproc_per_node=2`` against the one-process
run of the same work (one result.json, the CPU package once, accuracy close), and a rank killed mid-run.
In process: the meter assignment and the run-wide ledger of a fake 2-node topology (two hostnames, fake
RAPL and fake NVML: no device twice, none dropped), and the per-rank batches (together: the global batch).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from fakes.host import bare_metal, kvm_guest
from fakes.nvml import FakeGpu, FakeNvml
from fakes.powercap import make_powercap
from powertrain.config import EnergyConfig, RunConfig
from powertrain.config.errors import ConfigError
from powertrain.data import DeviceBatches
from powertrain.energy import Ledger
from powertrain.energy.select import build_meter
from powertrain.run.distributed import RankInfo, assign_meters, check, detect_world, merge_measurements

RUN = ["dataset=digits", "max_epochs=3", "batch_size=64", "save_checkpoint=false", "hardware=cpu"]


# ---------------------------------------------------------------- settings and worlds


def test_batch_size_must_split_evenly_and_multitask_is_refused() -> None:
    cfg = RunConfig()
    cfg.distributed.nproc_per_node, cfg.batch_size = 3, 64
    with pytest.raises(ConfigError, match=r"batch_size.*64.*a multiple of the world size 3"):
        check(cfg, world=None)
    cfg.batch_size = 63
    check(cfg, world=None)
    cfg.paradigm.name = "multitask"
    with pytest.raises(ConfigError, match="scratch or pretrained"):
        check(cfg, world=None)


def test_worlds_from_torchrun_and_slurm_environments() -> None:
    assert detect_world({}) is None
    assert detect_world({"RANK": "0", "WORLD_SIZE": "1"}) is None  # torchrun --nproc_per_node=1
    w = detect_world({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "n1", "MASTER_PORT": "1234"})
    assert (w.rank, w.world_size, w.local_rank, w.master_addr, w.master_port, w.launcher) == (
        3, 4, 1, "n1", 1234, "torchrun")
    # an sbatch script's one process in a 2-task allocation is not a world of 2; an srun step is
    assert detect_world({"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_ID": "7"}) is None
    slurm = {"SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "7",
             "MASTER_ADDR": "node1"}
    w = detect_world(slurm)
    assert (w.rank, w.world_size, w.local_rank, w.master_addr, w.master_port, w.launcher) == (
        1, 2, 1, "node1", 20007, "slurm")
    cfg = RunConfig()
    cfg.distributed.nproc_per_node = 2
    with pytest.raises(ConfigError, match="distributed.nproc_per_node.*1 when slurm starts the ranks"):
        check(cfg, world=w)


def test_bad_nproc_fails_before_any_work(cli: Any, tmp_path: Path) -> None:
    proc = cli("distributed.nproc_per_node=0", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "powertrain: error: distributed.nproc_per_node=0 is not allowed: an integer >= 1")


# ---------------------------------------------------------------- data


def test_rank_batches_together_are_the_global_batch() -> None:
    x = torch.arange(103).float().unsqueeze(1)
    y = torch.arange(103)
    one = list(DeviceBatches(x, y, 32, seed=5).epoch(2))
    ranks = [list(DeviceBatches(x, y, 16, seed=5, rank=r, world_size=2).epoch(2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(one) == 4  # every rank takes as many steps
    for step, (_, y_one) in enumerate(one):
        together = torch.cat([ranks[0][step][1], ranks[1][step][1]])
        # the same samples as one process's global batch (the odd sample out is left for this epoch)
        assert set(together.tolist()) <= set(y_one.tolist())
        assert len(together) >= len(y_one) - 1
    seen = torch.cat([b[1] for r in ranks for b in r])
    assert len(seen) == len(set(seen.tolist())) == 102  # disjoint shards, one sample left out


# ---------------------------------------------------------------- a fake 2-node topology


def _uuid(host: int, i: int) -> str:
    return f"{host:04x}{i:04x}-1111-2222-3333-444444444444"


def test_two_nodes_every_device_billed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Node "alpha": bare metal, 2 sockets with RAPL, 2 GPUs; node "beta": a VM without RAPL, 2 GPUs.
    Five ranks: three on alpha (two of them share GPU 1), two on beta. One window on every rank."""
    hosts = {
        "alpha": (bare_metal(tmp_path / "alpha", sockets=2, cores=4), make_powercap(tmp_path / "alpha-rapl", 2)),
        "beta": (kvm_guest(tmp_path / "beta", vcpus=4), None),
    }
    layout = [("alpha", 0), ("alpha", 1), ("alpha", 1), ("beta", 0), ("beta", 1)]  # (host, GPU ordinal)
    infos = [RankInfo(r, h, 1000 + r, _uuid(list(hosts).index(h), g), affinity=(r,)) for r, (h, g) in enumerate(layout)]
    assignments = assign_meters(infos)
    assert {r: (a.node, a.gpu, a.cpu) for r, a in assignments.items()} == {
        0: ("node0", True, True), 1: ("node0", True, False), 2: ("node0", False, False),
        3: ("node1", True, True), 4: ("node1", True, False)}
    assert assignments[0].peers == (1001, 1002) and assignments[3].affinity == (3, 4)

    measurements = []
    for r, (host, gpu) in enumerate(layout):
        node, rapl = hosts[host]
        fake = FakeNvml([FakeGpu(f"GPU-{_uuid(list(hosts).index(host), i)}") for i in range(2)])
        monkeypatch.setitem(sys.modules, "pynvml", fake.module)
        a = assignments[r]
        cfg = EnergyConfig(powercap_root=str(rapl.root if rapl else tmp_path / "none"))
        meter = build_meter(cfg, f"cuda:{gpu}" if a.gpu else "cpu", sync=lambda: None, cpu=a.cpu, environ={},
                            host=node.paths, affinity=set(a.affinity), cuda_uuid=lambda i, h=host: None)
        meter.begin_window("train")
        time.sleep(0.05)
        measurements.append(meter.end_window("train"))
        meter.close()
    ledger = Ledger()
    ledger.add("train", merge_measurements("train", measurements, [a.node for a in assignments.values()]))
    names = [c["name"] for c in ledger.components()]
    assert sorted(names) == sorted(set(names))  # nothing twice
    assert set(names) == {  # nothing dropped: every GPU, each node's packages and DRAM
        "node0/gpu:0", "node0/gpu:1", "node0/cpu:package-0", "node0/cpu:package-1", "node0/dram:0",
        "node0/dram:1", "node1/gpu:0", "node1/gpu:1", "node1/cpu:package-0", "node1/dram:0"}
    assert ledger.total_j() == pytest.approx(sum(c["energy_j"] for c in ledger.components()))
    assert all(c["energy_j"] > 0 for c in ledger.components() if c["kind"] == "gpu")  # the fake GPUs draw 100 W


# ---------------------------------------------------------------- end to end on this machine


def _run(tmp_path: Path, name: str, *extra: str, timeout: float = 240) -> tuple[subprocess.CompletedProcess, dict]:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR" and not k.startswith("SLURM_")}
    env["OMP_NUM_THREADS"] = "1"  # both runs: one thread per process, so they compare like with like
    out = tmp_path / name
    proc = subprocess.run([sys.executable, "-m", "powertrain", *RUN, *extra, f"hydra.run.dir={out}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    assert (out / "result.json").exists(), proc.stderr[-2000:]
    return proc, json.loads((out / "result.json").read_text())


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, Path]:
    tmp = tmp_path_factory.mktemp("ddp")
    p1, one = _run(tmp, "one")
    p2, two = _run(tmp, "two", "distributed.nproc_per_node=2")
    assert p1.returncode == 0 and p2.returncode == 0, p2.stderr[-2000:]
    return one, two, tmp


def test_two_ranks_write_one_result_with_the_cpu_once(one_and_two: tuple[dict, dict, Path]) -> None:
    one, two, tmp = one_and_two
    assert sorted(p.name for p in (tmp / "two").glob("*.json")) == ["result.json"]
    assert not (tmp / "two" / "ranks").exists()  # no rank failed
    assert (two["world_size"], two["nodes"], one["world_size"], one["nodes"]) == (2, 1, 1, 1)
    d = two["distributed"]
    assert (d["launcher"], d["backend"], d["batch_size"], d["batch_size_per_rank"]) == ("local", "gloo", 64, 32)
    assert d["metered_by"] == {"rank0": ["cpu+dram"], "rank1": []}
    names = [c["name"] for c in two["energy"]["components"]]
    assert names == [f"node0/{c['name']}" for c in one["energy"]["components"]]  # same parts, once each
    assert len([n for n in names if n.startswith("node0/cpu:")]) == 1
    e = two["energy"]
    assert e["total_j"] == pytest.approx(sum(c["energy_j"] for c in e["components"]))
    assert two["metrics"]["steps"] == one["metrics"]["steps"]  # the same work: the same global steps


def test_two_ranks_do_not_double_the_energy(one_and_two: tuple[dict, dict, Path]) -> None:
    """Billed twice, the node's CPU would draw more than its threads can: the 2-rank run's CPU power stays
    within what the threads held can draw, and its energy is not double the one-process run's."""
    one, two, _ = one_and_two
    (cpu,) = [c for c in two["energy"]["components"] if c["kind"] == "cpu"]
    busy_s = two["time"]["train_s"] + two["time"]["eval_s"]
    if cpu["method"] == "per_thread_coefficient_estimate":
        assert cpu["energy_j"] / busy_s <= cpu["threads_held"] * cpu["w_per_thread_max"] * 1.01
    elif cpu["method"] == "tdp_utilization_estimate":
        assert cpu["energy_j"] / busy_s <= cpu["packages"] * cpu["tdp_w"] * cpu.get("share", 1.0) * 1.01
    # per second of training, both runs bill the same node: never twice the power
    p1 = one["energy"]["total_j"] / (one["time"]["train_s"] + one["time"]["eval_s"])
    p2 = two["energy"]["total_j"] / busy_s
    assert p2 < 1.9 * p1


def test_two_ranks_reach_the_accuracy_of_one(one_and_two: tuple[dict, dict, Path]) -> None:
    one, two, _ = one_and_two
    assert two["metrics"]["final_accuracy"] == pytest.approx(one["metrics"]["final_accuracy"], abs=0.03)
    assert two["metrics"]["final_accuracy"] > 0.5


def _children(pid: int) -> dict[int, int]:
    """rank -> pid of the local launcher's ranks."""
    out = {}
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        rank = [e for e in env if e.startswith(b"RANK=")]
        if rank:
            out[int(rank[0][5:])] = int(child)
    return out


def test_a_rank_that_dies_fails_the_run_naming_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR" and not k.startswith("SLURM_")}
    out = tmp_path / "run"
    args = [*RUN, "max_epochs=500", "distributed.nproc_per_node=2", f"hydra.run.dir={out}"]
    proc = subprocess.Popen([sys.executable, "-m", "powertrain", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # training is under way: rank 0 reported an epoch
            if line.startswith("epoch"):
                break
        os.kill(_children(proc.pid)[1], signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "failed"
    assert result["error"].startswith("rank 1 died (signal SIGKILL)")
    assert result["distributed"]["failed_rank"] == 1
    assert result["energy"]["total_j"] > 0  # rank 0 kept the joules of the epochs before
    epochs = result["metrics"]["epochs"]  # and what they trained: the failure keeps its history
    assert epochs >= 1 and [h["epoch"] for h in result["history"]] == list(range(1, epochs + 1))
    assert "rank 1 died (signal SIGKILL)" in stderr


def _keys(d: Any, prefix: str = "") -> set[str]:
    """Every key path of a result, down to the dicts (lists of dicts by their first item)."""
    out = set()
    if isinstance(d, list) and d and isinstance(d[0], dict):
        d = d[0]
    if isinstance(d, dict):
        for k, v in d.items():
            out |= {f"{prefix}{k}"} | _keys(v, f"{prefix}{k}.")
    return out


@pytest.mark.slurm
def test_two_task_slurm_job_has_the_structure_of_the_local_run(slurm_cluster: Any, tmp_path: Path) -> None:
    """``hydra.launcher.tasks_per_node=2``: one run of 2 ranks through srun, billed and recorded as the local
    launcher's 2-rank run is (only the launcher differs)."""
    from slurm_fixtures import scancel_quietly

    small = ["max_epochs=1", "dataset.limit_train=512"]
    _, local = _run(tmp_path, "local", *small, "distributed.nproc_per_node=2")
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR" and not k.startswith("SLURM_")}
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "powertrain", "-m", "hydra/launcher=slurm_local", "hydra.launcher.tasks_per_node=2",
           *RUN, *small, f"hydra.sweep.dir={sweep}"]
    try:
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    finally:
        ids = {p.name.split("_")[0] for p in (sweep / ".submitit").glob("*")} if (sweep / ".submitit").exists() else set()
        scancel_quietly(*ids)
    assert proc.returncode == 0, proc.stderr[-2000:]
    slurm = json.loads((sweep / "0" / "result.json").read_text())
    assert slurm["status"] == local["status"] == "completed"
    assert (slurm["world_size"], slurm["nodes"]) == (local["world_size"], local["nodes"]) == (2, 1)
    assert slurm["distributed"]["launcher"] == "slurm" and local["distributed"]["launcher"] == "local"
    assert {k: v for k, v in slurm["distributed"].items() if k not in ("launcher", "hosts")} == {
        k: v for k, v in local["distributed"].items() if k not in ("launcher", "hosts")}
    assert [c["name"] for c in slurm["energy"]["components"]] == [c["name"] for c in local["energy"]["components"]]
    ignore = ("run.", "hardware.", "history.", "energy.components.")  # per-run details, not structure
    assert {k for k in _keys(slurm) if not k.startswith(ignore)} == {k for k in _keys(local) if not k.startswith(ignore)}
    assert slurm["metrics"]["steps"] == local["metrics"]["steps"]
