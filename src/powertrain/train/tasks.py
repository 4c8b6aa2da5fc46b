"""What the loop trains: the ``Task`` interface, the default single-dataset classification, and the same
over the user's own loss and evaluation (``task.loss``, ``task.evaluate``, ``task.metric``).

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
    # Optional: ``shard(rank, world_size, batch_size_per_rank, reduce)`` for a distributed run.


class SupervisedTask:
    """One dataset's batches, a loss and an evaluation: classification unless the user's own are given.

    ``data`` is ``DataSplits`` (tensors on the device: batches sliced there) or a ``DatasetPair`` (batches
    from a DataLoader with workers). ``loss_fn(model, batch) -> scalar tensor`` replaces cross-entropy;
    ``evaluate_fn(model, batches) -> dict`` replaces accuracy, ``batches`` iterating over the test split on
    the device (model in eval mode, no grad, autocast as the run's). ``metric`` names the entry of that dict
    that targets, reports and pruning read (it is also returned as ``accuracy``, the key they read).
    """

    def __init__(self, data: Any, batch_size: int, eval_batch_size: int, seed: int,
                 autocast: Callable[[], Any] = contextlib.nullcontext,
                 loss_fn: Optional[Callable[[nn.Module, Any], torch.Tensor]] = None,
                 evaluate_fn: Optional[Callable[[nn.Module, Iterable[Any]], dict[str, Any]]] = None,
                 metric: str = "accuracy"):
        self.data = data
        self.eval_batch_size, self.seed, self.autocast = eval_batch_size, seed, autocast
        self.loss_fn, self.evaluate_fn, self.metric = loss_fn, evaluate_fn, metric
        self.on_device = isinstance(data, DataSplits)
        self.train = self._train_batches(batch_size, 0, 1)
        self.eval_shard: tuple[int, int] = (0, 1)
        self.eval_reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
        self._test: dict[tuple[int, int], Any] = {}  # a loader's test batches, one per (rank, world_size)

    def _train_batches(self, batch_size: int, rank: int, world_size: int) -> Any:
        d = self.data
        if self.on_device:
            return DeviceBatches(d.x_train, d.y_train, batch_size, self.seed, rank=rank, world_size=world_size)
        from powertrain.data.loader import LoaderBatches

        return LoaderBatches(d.train, batch_size, self.seed, d.device, d.num_workers, rank=rank,
                             world_size=world_size)

    def shard(self, rank: int, world_size: int, batch_size_per_rank: int,
              reduce: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Train on this rank's slice of every global batch. The default evaluation takes its slice of the
        test split and sums the counts over the ranks with ``reduce`` (an all_reduce); the user's own
        evaluation sees the whole test split on every rank (its metrics cannot be summed), so every rank
        still holds the same metrics."""
        self.train = self._train_batches(batch_size_per_rank, rank, world_size)
        if self.evaluate_fn is None:
            self.eval_shard, self.eval_reduce = (rank, world_size), reduce

    def batches(self, epoch: int) -> Iterable[Any]:
        return self.train.epoch(epoch)

    @property
    def steps_per_epoch(self) -> Optional[int]:
        """Optimizer steps in one epoch (for the progress line); None when the batches cannot say."""
        return len(self.train) if hasattr(self.train, "__len__") else None

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        with self.autocast():
            if self.loss_fn is not None:
                return self.loss_fn(model, batch)
            x, y = batch
            return F.cross_entropy(model(x), y if y.dtype == torch.long else y.long())

    def test_batches(self, rank: int = 0, world_size: int = 1) -> Iterable[Any]:
        """The test split in order (this rank's every ``world_size``-th sample), batched, on the device."""
        d = self.data
        if self.on_device:
            x, y = d.x_test, d.y_test
            if world_size > 1:
                x, y = x[rank::world_size], y[rank::world_size]
            return _slices(x, y, self.eval_batch_size)
        # cached by shard: a loader built for one (rank, world_size) holds that shard's samples only
        loader = self._test.get((rank, world_size))
        if loader is None:
            from powertrain.data.loader import LoaderBatches

            loader = self._test[rank, world_size] = LoaderBatches(
                d.test, self.eval_batch_size, self.seed, d.device, d.num_workers, shuffle=False, rank=rank,
                world_size=world_size)
        return loader.epoch(0)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, Any]:
        # the DDP wrapper's forward may broadcast buffers (a collective): ranks evaluate different
        # numbers of batches, so they run the module itself
        model = getattr(model, "module", model) if type(model).__name__ == "DistributedDataParallel" else model
        if self.evaluate_fn is not None:
            return evaluate_own(model, self.evaluate_fn, self.test_batches(), self.metric, self.autocast)
        rank, world = self.eval_shard
        device = self.data.x_test.device if self.on_device else None  # None: the model's (a loader's batches)
        return _accuracy(model, self.test_batches(rank, world), self.autocast, None, self.eval_reduce, device)

    def reached(self, metrics: dict[str, Any], target: Optional[float]) -> bool:
        return target is not None and metrics["accuracy"] >= target


class ClassificationTask(SupervisedTask):
    """Single-dataset classification, the default task: cross-entropy on (x, y), accuracy on the test split."""

    def __init__(self, data: Any, batch_size: int, eval_batch_size: int, seed: int,
                 autocast: Callable[[], Any] = contextlib.nullcontext):
        super().__init__(data, batch_size, eval_batch_size, seed, autocast)


def make_task(task_cfg: Any, data: Any, batch_size: int, eval_batch_size: int, seed: int,
              autocast: Callable[[], Any] = contextlib.nullcontext) -> SupervisedTask:
    """The task ``task_cfg`` (a ``TaskConfig``) names: classification, or the user's loss and evaluation."""
    from powertrain.config.targets import resolve

    if task_cfg.loss is None and task_cfg.evaluate is None:
        return ClassificationTask(data, batch_size, eval_batch_size, seed, autocast)
    loss_fn = resolve("task.loss", task_cfg.loss) if task_cfg.loss else None
    evaluate_fn = resolve("task.evaluate", task_cfg.evaluate) if task_cfg.evaluate else None
    return SupervisedTask(data, batch_size, eval_batch_size, seed, autocast, loss_fn, evaluate_fn, task_cfg.metric)


def _number(v: Any) -> Any:
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return v.item()
    return v


def evaluate_own(model: nn.Module, evaluate_fn: Callable[..., Any], batches: Iterable[Any], metric: str,
                 autocast: Callable[[], Any] = contextlib.nullcontext) -> dict[str, Any]:
    """The user's evaluation, in eval mode without grad; its ``metric`` is also returned as ``accuracy``.

    Raises:
        ConfigError: it returned no dict, or no number under ``metric``.
    """
    from powertrain.config.errors import ConfigError
    from powertrain.config.targets import label

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast():
            out = evaluate_fn(model, batches)
    finally:
        model.train(was_training)
    if not isinstance(out, dict):
        raise ConfigError("task.evaluate", label(evaluate_fn), f"a function returning a dict of metrics "
                          f"(it returned a {type(out).__name__})")
    metrics = {str(k): _number(v) for k, v in out.items()}
    value = metrics.get(metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError("task.metric", metric, f"a number-valued key of what task.evaluate returns "
                          f"({', '.join(metrics) or 'nothing'})")
    metrics["accuracy"] = float(value)
    return metrics


@torch.no_grad()
def evaluate_split(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                   autocast: Callable[[], Any] = contextlib.nullcontext,
                   head: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                   reduce: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on (x, y), with one host sync at the end.

    ``reduce`` sums (correct, loss, count) over the ranks of a distributed run (each holds a slice).
    """
    return _accuracy(model, _slices(x, y, batch_size), autocast, head, reduce, device=x.device)


def _slices(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) in order, ``batch_size`` at a time (the last batch may be short)."""
    return ((x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, x.shape[0], batch_size))


@torch.no_grad()
def _accuracy(model: nn.Module, batches: Iterable[Any], autocast: Callable[[], Any],
              head: Optional[Callable[[torch.Tensor], torch.Tensor]],
              reduce: Optional[Callable[[torch.Tensor], torch.Tensor]],
              device: Optional[torch.device] = None) -> dict[str, float]:
    """Accuracy and mean cross-entropy over (x, y) batches; the sums stay on the device until the end."""
    was_training = model.training
    model.eval()
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    correct = torch.zeros((), device=device, dtype=torch.long)
    loss_sum = torch.zeros((), device=device)
    n = 0
    for xb, yb in batches:
        yb = yb if yb.dtype == torch.long else yb.long()
        with autocast():
            out = model(xb) if head is None else head(xb)
        loss_sum += F.cross_entropy(out.float(), yb, reduction="sum")
        correct += (out.argmax(1) == yb).sum()
        n += yb.shape[0]
    model.train(was_training)
    if reduce is not None:
        sums = reduce(torch.stack([correct.double(), loss_sum.double(),
                                   torch.tensor(float(n), device=device, dtype=torch.float64)]))
        correct_n, loss_total, n_total = sums.tolist()
        count = max(int(n_total), 1)
        return {"accuracy": correct_n / count, "loss": loss_total / count}
    count = max(n, 1)
    return {"accuracy": correct.item() / count, "loss": loss_sum.item() / count}
