"""Learning paradigms: how a run gets its model, data and task.

``build_setup`` returns everything the loop needs. ``scratch`` trains a fresh model on one dataset;
``pretrained`` (knowledge recycling) and ``multitask`` (knowledge sharing) plug in here through
``PARADIGMS`` and may report upstream energy that the result accounts for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from powertrain.config import RunConfig
from powertrain.data import describe, load_dataset
from powertrain.models import create_model
from powertrain.registry import Registry
from powertrain.train import ClassificationTask, Task


@dataclass
class Setup:
    model: nn.Module
    task: Task
    param_groups: list[dict[str, Any]]
    data: dict[str, Any]  # what the result says about the data
    upstream: Optional[dict[str, Any]] = None  # energy/carbon spent before this run (pretraining)
    notes: list[str] = field(default_factory=list)  # e.g. "classifier head replaced (10 → 4 classes)"


Builder = Callable[[RunConfig, torch.device, Callable[[], Any]], Setup]
PARADIGMS: Registry[Builder] = Registry()
register_paradigm = PARADIGMS.register


def build_setup(cfg: RunConfig, device: torch.device, autocast: Callable[[], Any]) -> Setup:
    """Model, task and parameter groups for ``cfg.paradigm.name``."""
    if cfg.paradigm.name not in PARADIGMS:
        import importlib

        importlib.import_module(f"powertrain.paradigm_{cfg.paradigm.name}")  # registers itself
    return PARADIGMS[cfg.paradigm.name](cfg, device, autocast)


def single_task(cfg: RunConfig, device: torch.device, autocast: Callable[[], Any]) -> tuple[nn.Module, ClassificationTask, dict[str, Any]]:
    """Load the dataset onto the device and build the model for it."""
    data = load_dataset(cfg.dataset).to(device)
    model = create_model(cfg.model, data.input_shape, data.num_classes).to(device)
    task = ClassificationTask(data, cfg.batch_size, cfg.eval_batch_size, cfg.seed, autocast)
    return model, task, describe(data)


@register_paradigm("scratch")
def scratch(cfg: RunConfig, device: torch.device, autocast: Callable[[], Any]) -> Setup:
    model, task, info = single_task(cfg, device, autocast)
    return Setup(model, task, [{"params": list(model.parameters())}], info)
