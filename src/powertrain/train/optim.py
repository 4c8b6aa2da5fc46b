"""Optimizers and learning-rate schedulers by name."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Optional

import torch

from powertrain.config import OptimizerConfig

# name -> builder: the names config validation allows (``optimizer.name``)
OPTIMIZERS: dict[str, Callable[[OptimizerConfig, Iterable[Any]], torch.optim.Optimizer]] = {
    "sgd": lambda c, p: torch.optim.SGD(p, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov,
                                        weight_decay=c.weight_decay),
    "adam": lambda c, p: torch.optim.Adam(p, lr=c.lr, betas=(c.beta1, c.beta2), eps=c.eps,
                                          weight_decay=c.weight_decay),
    "adamw": lambda c, p: torch.optim.AdamW(p, lr=c.lr, betas=(c.beta1, c.beta2), eps=c.eps,
                                            weight_decay=c.weight_decay),
    "rmsprop": lambda c, p: torch.optim.RMSprop(p, lr=c.lr, alpha=c.alpha, eps=c.eps, momentum=c.momentum,
                                                weight_decay=c.weight_decay),
}
SCHEDULERS = ("none", "cosine", "step")  # the branches of build_scheduler's factor


def build_optimizer(cfg: OptimizerConfig, params: Iterable[Any]) -> torch.optim.Optimizer:
    """``params`` may be parameters or param groups (groups may carry their own ``lr``)."""
    return OPTIMIZERS[cfg.name](cfg, params)


def build_scheduler(cfg: OptimizerConfig, optimizer: torch.optim.Optimizer, max_epochs: int) -> Optional[Any]:
    """A per-epoch LambdaLR (linear warm-up, then cosine or step decay), or None."""
    s = cfg.scheduler
    if s.name == "none" and s.warmup_epochs == 0:
        return None

    def factor(epoch: int) -> float:
        if epoch < s.warmup_epochs:
            return (epoch + 1) / (s.warmup_epochs + 1)
        e = epoch - s.warmup_epochs
        if s.name == "cosine":
            span = max(max_epochs - s.warmup_epochs, 1)
            return 0.5 * (1 + math.cos(math.pi * min(e, span) / span))
        if s.name == "step":
            return s.gamma ** (e // s.step_size)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
