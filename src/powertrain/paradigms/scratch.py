"""The ``scratch`` paradigm: a freshly initialised model trained on one dataset."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from powertrain.config import ParadigmConfig, RunConfig
from powertrain.paradigms import Setup, single_task

if TYPE_CHECKING:
    import torch

NAME = "scratch"


@dataclass
class Config(ParadigmConfig):
    """No fields of its own: the model starts from random weights."""

    name: str = NAME


def build(cfg: RunConfig, device: torch.device, autocast: Callable[[], Any]) -> Setup:
    """A fresh model for ``cfg.dataset``; every parameter is trained."""
    model, task, info = single_task(cfg, device, autocast)
    return Setup(model, task, [{"params": list(model.parameters())}], info)
