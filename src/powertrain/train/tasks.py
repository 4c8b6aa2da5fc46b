"""What the loop trains: the ``Task`` interface and the default, single-dataset classification.

A task owns its batches, its loss and its evaluation; ``fit`` knows nothing else about the data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any, Optional, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from powertrain.data import DataSplits, DeviceBatches


class Task(Protocol):
    """What the loop trains: batches, a loss, and an evaluation. Paradigms provide their own."""

    def batches(self, epoch: int) -> Iterable[Any]: ...

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor: ...

    def evaluate(self, model: nn.Module) -> dict[str, Any]:
        """At least ``accuracy`` and ``loss``; may add e.g. ``tasks`` (per-task metrics)."""
        ...

    def reached(self, metrics: dict[str, Any], target: Optional[float]) -> bool: ...

    # Optional: ``annotate(metrics, energy_j=..., wall_s=..., history=...) -> metrics`` is called after each
    # evaluation with the energy and time so far and the earlier history rows (see paradigm_multitask).


class ClassificationTask:
    """Single-dataset classification on device-resident tensors."""

    def __init__(self, data: DataSplits, batch_size: int, eval_batch_size: int, seed: int,
                 autocast: Callable[[], Any] = contextlib.nullcontext):
        self.data = data
        self.train = DeviceBatches(data.x_train, data.y_train, batch_size, seed)
        self.eval_batch_size = eval_batch_size
        self.autocast = autocast
        self.seed = seed
        self.eval_shard: tuple[int, int] = (0, 1)
        self.eval_reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None

    def shard(self, rank: int, world_size: int, batch_size_per_rank: int,
              reduce: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Train on this rank's slice of every global batch; evaluate its slice of the test split and
        sum the counts over the ranks with ``reduce`` (an all_reduce), so every rank sees the same metrics."""
        self.train = DeviceBatches(self.data.x_train, self.data.y_train, batch_size_per_rank, self.seed,
                                   rank=rank, world_size=world_size)
        self.eval_shard, self.eval_reduce = (rank, world_size), reduce

    def batches(self, epoch: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        return self.train.epoch(epoch)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch (for the progress line)."""
        return len(self.train)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        with self.autocast():
            return F.cross_entropy(model(x), y)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, Any]:
        # the DDP wrapper's forward may broadcast buffers (a collective): ranks evaluate different
        # numbers of batches, so they run the module itself
        model = getattr(model, "module", model) if type(model).__name__ == "DistributedDataParallel" else model
        rank, world = self.eval_shard
        x, y = self.data.x_test, self.data.y_test
        if world > 1:
            x, y = x[rank::world], y[rank::world]
        return evaluate_split(model, x, y, self.eval_batch_size, self.autocast, reduce=self.eval_reduce)

    def reached(self, metrics: dict[str, Any], target: Optional[float]) -> bool:
        return target is not None and metrics["accuracy"] >= target


@torch.no_grad()
def evaluate_split(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                   autocast: Callable[[], Any] = contextlib.nullcontext,
                   head: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                   reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on (x, y), with one host sync at the end.

    ``reduce`` sums (correct, loss, count) over the ranks of a distributed run (each holds a slice).
    """
    was_training = model.training
    model.eval()
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    loss_sum = torch.zeros((), device=x.device)
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        with autocast():
            out = model(xb) if head is None else head(xb)
        loss_sum += F.cross_entropy(out.float(), yb, reduction="sum")
        correct += (out.argmax(1) == yb).sum()
    model.train(was_training)
    if reduce is not None:
        sums = reduce(torch.stack([correct.double(), loss_sum.double(),
                                   torch.tensor(float(x.shape[0]), device=x.device, dtype=torch.float64)]))
        correct_n, loss_total, n_total = sums.tolist()
        n = max(int(n_total), 1)
        return {"accuracy": correct_n / n, "loss": loss_total / n}
    n = max(int(x.shape[0]), 1)
    return {"accuracy": correct.item() / n, "loss": loss_sum.item() / n}
