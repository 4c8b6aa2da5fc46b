"""Optimizers and learning-rate schedulers by name."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Optional

import torch

from powertrain.config import OptimizerConfig


def build_optimizer(cfg: OptimizerConfig, params: Iterable[Any]) -> torch.optim.Optimizer:
    """``params`` may be parameters or param groups (groups may carry their own ``lr``)."""
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                                weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                                 weight_decay=cfg.weight_decay)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.name!r}")


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
