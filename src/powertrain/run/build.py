"""Building what a run trains with, in the order a run needs it: the device, its meter, then the setup.

``run()`` and ``launch.predict`` (which profiles a few steps of the same setup) share these steps, so a
prediction is always made on exactly what the run would train.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from powertrain.config import HardwareConfig, RunConfig
from powertrain.config.checks import check_precision


@dataclass
class Device:
    """The resolved device, its hardware profile, and (in a distributed run) this rank's part of the world."""

    device: Any  # torch.device
    profile: HardwareConfig
    dist: Optional[Any] = None  # run.distributed.DistributedRun
    run_dir: Optional[Path] = None  # where rank 0 keeps the run (the same as given outside DDP)

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"


@dataclass
class Training:
    """What ``fit`` needs besides the meter: the model (wrapped for compile/DDP), task and optimizer."""

    setup: Any  # paradigms.Setup: the unwrapped model, task, param groups, data record, notes
    model: Any  # what trains: setup.model, compiled and/or DDP-wrapped
    optimizer: Any
    scheduler: Any
    scaler: Any  # fp16 grad scaler, or None
    autocast: Callable[[], Any]


def autocast_factory(precision: str, device: Any) -> Callable[[], Any]:
    """A context manager factory for ``precision`` (bf16/fp16 autocast on CUDA; a no-op otherwise)."""
    import torch

    if precision == "fp32" or device.type != "cuda":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast("cuda", dtype=dtype)


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def open_device(cfg: RunConfig, run_dir: Optional[Path] = None, world: Optional[Any] = None) -> Device:
    """Resolve the device (joining the other ranks first in a distributed run) and pick its profile."""
    from powertrain.hardware import device as hw
    from powertrain.hardware.profiles import select_profile

    device = hw.resolve_device(cfg.hardware.device)
    dist = None
    if world is not None:  # join the other ranks (and take this local rank's GPU) before any work
        from powertrain.run.distributed import DistributedRun

        dist = DistributedRun(world, cfg, device, Path(run_dir or "."))
        device, run_dir = dist.device, dist.run_dir
    check_precision(cfg.precision, device.type)  # e.g. hardware=auto that landed on the CPU
    hw.set_cpu_threads(cfg.hardware.cpu_threads)
    return Device(device, select_profile(cfg.hardware, device), dist, run_dir)


def make_meter(cfg: RunConfig, dev: Device) -> Any:
    """The run's meter: it bills and synchronises the run's own GPU, not every visible one."""
    from powertrain.energy import build_meter

    tdp = {"cpu_tdp_w": None if dev.on_gpu else dev.profile.tdp_w,
           "gpu_tdp_w": dev.profile.tdp_w if dev.on_gpu else None}
    if dev.dist is not None:
        return dev.dist.build_meter(cfg.energy, dev.device, **tdp)
    return build_meter(cfg.energy, dev.device, **tdp)


def build_training(cfg: RunConfig, dev: Device) -> Training:
    """Seed, then the paradigm's setup, the optimizer and schedule, and the model as it trains."""
    import torch

    from powertrain.paradigms import build_setup
    from powertrain.train.optim import build_optimizer, build_scheduler

    seed_everything(cfg.seed)
    autocast = autocast_factory(cfg.precision, dev.device)
    setup = build_setup(cfg, dev.device, autocast)
    optimizer = build_optimizer(cfg.optimizer, setup.param_groups)
    scheduler = build_scheduler(cfg.optimizer, optimizer, cfg.max_epochs)
    scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
    model = torch.compile(setup.model) if cfg.compile else setup.model
    if dev.dist is not None:  # each rank its slice of every global batch; gradients averaged by DDP
        dev.dist.shard(setup.task)
        model = dev.dist.wrap(model)
    return Training(setup, model, optimizer, scheduler, scaler, autocast)
