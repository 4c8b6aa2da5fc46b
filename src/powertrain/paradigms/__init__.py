"""Learning paradigms: how a run gets its model, data and task.

Each paradigm is one module in this package (plus one YAML, conf/paradigm/<name>.yaml) that defines:

- ``NAME``: the ``paradigm.name`` it answers to;
- ``Config``: its schema, a dataclass subclassing ``config.ParadigmConfig`` (registered with Hydra as
  ``base_<NAME>``; the YAML starts with ``defaults: [base_<NAME>, _self_]``);
- ``check(cfg)`` (optional): the checks that need the whole RunConfig, raising ConfigError;
- ``build(cfg, device, autocast) -> Setup``: the model, task and parameter groups.

Modules are found by listing the package, so adding one needs no edit here. This file imports no torch:
validation and Hydra's ConfigStore read ``Config`` before any run starts.

Layer: imports ``train``, ``data``, ``models``, ``results`` and ``config``; ``run`` calls ``build_setup``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from powertrain.config import RunConfig
from powertrain.config.registry import LazyModules

if TYPE_CHECKING:
    import torch
    from torch import nn

    from powertrain.train import SupervisedTask, Task


@dataclass
class Setup:
    model: nn.Module
    task: Task
    param_groups: list[dict[str, Any]]
    data: dict[str, Any]  # what the result says about the data
    upstream: Optional[dict[str, Any]] = None  # energy/carbon spent before this run (pretraining)
    notes: list[str] = field(default_factory=list)  # e.g. "classifier head replaced (10 → 4 classes)"


# ``paradigm.name`` → its module, for every module of this package (imported on first use)
PARADIGMS = LazyModules(__name__, __path__)


def build_setup(cfg: RunConfig, device: torch.device, autocast: Callable[[], Any]) -> Setup:
    """Model, task and parameter groups for ``cfg.paradigm.name``."""
    return PARADIGMS[cfg.paradigm.name].build(cfg, device, autocast)


def single_task(cfg: RunConfig, device: torch.device,
                autocast: Callable[[], Any]) -> tuple[nn.Module, SupervisedTask, dict[str, Any]]:
    """Load the dataset onto the device and build the model for it, and the task ``cfg.task`` names."""
    from powertrain.data import describe, load_data
    from powertrain.models import create_model
    from powertrain.train import make_task

    data = load_data(cfg.dataset, classification=cfg.task.loss is None).to(device)
    model = create_model(cfg.model, data.input_shape, data.num_classes).to(device)
    task = make_task(cfg.task, data, cfg.batch_size, cfg.eval_batch_size, cfg.seed, autocast)
    return model, task, describe(data)
