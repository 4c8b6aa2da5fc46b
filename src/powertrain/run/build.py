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
from powertrain.config.errors import first_line


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
    from powertrain.hardware.profiles import tdp_split

    tdp = tdp_split(dev.profile, dev.on_gpu)
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


# ------------------------------------------------------------------------ the user's code, checked first

PROBE_SAMPLES = 4  # samples put through the model before the run starts: a batch, and BatchNorm-safe


def uses_own_code(cfg: RunConfig) -> bool:
    """Whether the run builds the user's model, data or step (then ``check_model_on_data`` runs first)."""
    from powertrain import data, models

    return (models.is_own(cfg.model) or data.is_own(cfg.dataset) or cfg.task.loss is not None
            or cfg.task.evaluate is not None)


def _probe_batch(data: Any, n: int) -> Any:
    from powertrain.config import ConfigError
    from powertrain.data import DataSplits
    from powertrain.data.loader import LoaderBatches

    if isinstance(data, DataSplits):
        return data.x_train[:n], data.y_train[:n]
    try:
        return LoaderBatches(data.train, n, 0, "cpu", 0, shuffle=False).first(n)
    except Exception as e:
        raise ConfigError("dataset", data.name, f"samples that batch together (torch's default_collate): "
                          f"{first_line(e)}") from e


def _shape(x: Any) -> str:
    return "×".join(map(str, x.shape)) if hasattr(x, "shape") else type(x).__name__


def check_model_on_data(cfg: RunConfig, keep_data: bool = False) -> dict[str, Any]:
    """Build the dataset and model of ``cfg`` on the CPU and put one batch of ``PROBE_SAMPLES`` through the
    run's step (forward or ``task.loss``, backward) and evaluation, before any meter starts.

    ``keep_data``: hold the loaded dataset for the run in this process (``data.load_data``), so it is not
    loaded twice. Sweeps can call this for every grid point before the first job. A multitask run (its
    data are dataset presets) is not probed.

    Returns:
        What was found: ``input_shape``, ``num_classes``, ``batches`` (on_device or dataloader) and the
        model's output shape.

    Raises:
        ConfigError: one line naming the key, the model or function, the input shape and the error: a
            dataset whose samples are not (x, y) of the right types, a model or loss that fails on the batch
            or returns the wrong shape, an evaluation without its metric.
    """
    import torch

    from powertrain.config import ConfigError
    from powertrain.config.targets import label, resolve
    from powertrain.data import describe, load_data
    from powertrain.models import create_model
    from powertrain.train.tasks import _accuracy, evaluate_own

    if cfg.paradigm.name == "multitask":
        return {}
    seed_everything(cfg.seed)
    data = load_data(cfg.dataset, classification=cfg.task.loss is None, keep=keep_data)
    batch = _probe_batch(data, PROBE_SAMPLES)
    model = create_model(cfg.model, data.input_shape, data.num_classes)
    what = cfg.model._target_ or cfg.model.family
    inputs = f"inputs {_shape(batch[0])} from {data.name}"
    found = {k: v for k, v in describe(data).items() if k in ("input_shape", "num_classes", "batches")}
    model.train()
    if cfg.task.loss is not None:
        loss_fn = resolve("task.loss", cfg.task.loss)
        try:
            loss = loss_fn(model, batch)
        except Exception as e:
            raise ConfigError("task.loss", cfg.task.loss, f"a loss that runs on one batch ({inputs}, model "
                              f"{what}): {first_line(e)}") from e
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.requires_grad:
            got = f"a tensor of shape {list(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ConfigError("task.loss", cfg.task.loss, f"a function returning the batch's loss as a scalar "
                              f"tensor autograd can differentiate (it returned {got}"
                              f"{'' if not isinstance(loss, torch.Tensor) or loss.requires_grad else ' without grad'})")
        loss.backward()
    if cfg.task.evaluate is None:  # classification: N × num_classes scores, cross-entropy against y
        try:
            out = model(batch[0])
        except Exception as e:
            raise ConfigError("model", what, f"a model whose forward takes a batch of {inputs}: "
                              f"{first_line(e)}") from e
        n, k = len(batch[0]), data.num_classes
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (n, k):
            got = _shape(out) if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
            raise ConfigError("model", what, f"a model that maps a batch of {inputs} to {n}×{k} class scores "
                              f"(it returned {got}; other outputs need task.loss and task.evaluate)")
        found["output_shape"] = list(out.shape)
        try:
            _accuracy(model, [batch], contextlib.nullcontext, None, None)
        except Exception as e:
            raise ConfigError("model", what, f"scores and labels of {data.name} that give a cross-entropy "
                              f"({first_line(e)})") from e
    else:
        evaluate_fn = resolve("task.evaluate", cfg.task.evaluate)
        try:
            evaluate_own(model, evaluate_fn, [batch], cfg.task.metric)
        except ConfigError:
            raise
        except Exception as e:
            raise ConfigError("task.evaluate", label(evaluate_fn), f"an evaluation that runs on one batch "
                              f"({inputs}, model {what}): {first_line(e)}") from e
    return found


def check_plugins_reach(cfg: Any, who: str, families: tuple[str, ...] = (), datasets: tuple[str, ...] = ()) -> None:
    """Refuse a model or dataset that the processes powertrain is about to start could not find.

    A name registered in this process only (``register_model`` in a wrapper script or a notebook) trains
    here, but DDP ranks, study parts and Slurm tasks are fresh processes that import only the modules named
    in ``plugins`` / ``$POWERTRAIN_PLUGINS`` (entry points and ``_target_`` paths they find themselves).

    Args:
        cfg: a ``RunConfig`` or the composed DictConfig (``model``, ``dataset``, ``plugins``).
        who: the processes, for the message ("the DDP ranks").
        families, datasets: more names to check (the values a sweep will give ``model.family`` etc.).

    Raises:
        ConfigError: naming the key, the name, the module that registered it and the fix.
    """
    from powertrain.config import ConfigError
    from powertrain.config.targets import plugin_names
    from powertrain.data import registered_datasets
    from powertrain.models import registered_models

    reach = plugin_names(list(getattr(cfg, "plugins", None) or []))
    own_model, own_data = getattr(cfg.model, "_target_", None), getattr(cfg.dataset, "_target_", None)
    checks = [("model.family", "model", registered_models(), n) for n in
              (() if own_model else (cfg.model.family,)) + tuple(families)]
    checks += [("dataset.name", "dataset", registered_datasets(), n) for n in
               (() if own_data else (cfg.dataset.name,)) + tuple(datasets)]
    for key, kind, registry, name in checks:
        meta = registry.meta.get(name, {})
        module = meta.get("registered_in") or meta.get("module")
        if not meta.get("own") or meta.get("entry_point") or module is None:
            continue
        if any(m == p or m.startswith(p + ".") for m in (module, meta.get("module") or module) for p in reach):
            continue
        fix = ("move it into a module and name that in plugins=[...] (or $POWERTRAIN_PLUGINS)" if module == "__main__"
               else f"name its module in plugins=[{module}] (or $POWERTRAIN_PLUGINS={module})")
        raise ConfigError(key, name, f"a {kind} {who} can import: it was registered by {module} in this process "
                          f"only; {fix}")
