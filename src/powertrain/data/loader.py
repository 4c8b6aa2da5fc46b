"""Batches from a DataLoader with worker processes, for datasets that are not small tensors.

The order of an epoch is the same permutation ``DeviceBatches`` draws (seeded with (seed, epoch)), so a
resumed run sees the batches an uninterrupted one would, and a rank of a distributed run takes every
``world_size``-th sample of it. The loader and its workers are made once and kept for the run
(``persistent_workers``): starting workers every epoch would cost seconds per epoch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any, Optional

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler


def default_workers() -> int:
    """min(4, CPUs this process may use − 1): one CPU stays with the training loop."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(4, cpus - 1))


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` (tensors, or tuples, lists and dicts of them) on ``device``; anything else as it is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple keeps its type
        return type(batch)(*(to_device(b, device) for b in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


class EpochOrder(Sampler[int]):
    """The sample indices of one epoch: a seeded permutation (or 0..n-1), this rank's share of it."""

    def __init__(self, n: int, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1):
        self.n, self.seed, self.shuffle, self.rank, self.world_size = n, seed, shuffle, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        if self.world_size > 1:
            # as DeviceBatches: drop the last n mod world_size so every rank takes as many steps
            keep = self.n - self.n % self.world_size if self.shuffle else self.n
            order = order[:keep][self.rank :: self.world_size]
        return order.tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def __len__(self) -> int:
        if self.world_size <= 1:
            return self.n
        if self.shuffle:
            return self.n // self.world_size
        return len(range(self.rank, self.n, self.world_size))


class LoaderBatches:
    """Mini-batches of ``dataset`` from a DataLoader, moved to ``device`` as they arrive."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, device: torch.device,
                 num_workers: int, shuffle: bool = True, drop_last: bool = False, rank: int = 0,
                 world_size: int = 1, collate_fn: Optional[Any] = None):
        self.dataset, self.device, self.num_workers = dataset, torch.device(device), num_workers
        self.order = EpochOrder(len(dataset), seed, shuffle, rank, world_size)  # type: ignore[arg-type]
        self.sampler = BatchSampler(self.order, batch_size, drop_last)
        self.collate_fn = collate_fn
        self._loader: Optional[DataLoader] = None

    def __len__(self) -> int:
        return len(self.sampler)

    def _make(self) -> DataLoader:
        if self._loader is None:
            on_gpu = self.device.type == "cuda"
            self._loader = DataLoader(
                self.dataset, batch_sampler=self.sampler, num_workers=self.num_workers,
                pin_memory=on_gpu, persistent_workers=self.num_workers > 0, collate_fn=self.collate_fn,
            )  # fmt: skip
        return self._loader

    def epoch(self, epoch: int) -> Iterator[Any]:
        self.order.set_epoch(epoch)
        for batch in self._make():
            yield to_device(batch, self.device)

    def first(self, n: int) -> Any:
        """The first ``n`` samples in file order, collated, on the CPU (no workers): for checks."""
        from torch.utils.data import default_collate

        samples: Sequence[Any] = [self.dataset[i] for i in range(min(n, len(self.dataset)))]  # type: ignore[arg-type]
        return (self.collate_fn or default_collate)(list(samples))
