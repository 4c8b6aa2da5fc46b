"""The ``multitask`` paradigm (knowledge sharing): one shared backbone, one head per task.

``paradigm.tasks`` names dataset presets from ``conf/dataset`` (``[digits, synthetic]``). Inputs are made
to fit one backbone: the **first** task sets the input shape; other tasks get their channels mapped
1 → 3 (repeat) or 3 → 1 (mean) and are resized (bilinear) to its height × width, once, when loaded.
Refused with a ConfigError: channel counts other than 1 ↔ 3 (no meaningful mapping, e.g. 2 → 3) and a
different aspect ratio (resizing would distort the images).

An epoch is one pass over every task's training split; ``mixing`` sets the batch order: ``round_robin``
(one batch of each task in turn; a task that runs out drops out) or ``proportional`` (a seeded shuffle of
all batches, so each task appears in proportion to its size). The loss of a batch is weighted by its
task's ``task_weights`` entry. The run reaches its target when every task reaches its own
(``task_targets``, else the global ``target_accuracy``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from powertrain.config import ConfigError, ParadigmConfig, RunConfig
from powertrain.config.checks import Check, each, fraction_open_closed, non_negative, one_of
from powertrain.data import DataSplits, DeviceBatches, dataset_preset, describe, load_dataset
from powertrain.models import create_model
from powertrain.models.parts import split_for_heads
from powertrain.paradigms import Setup
from powertrain.train import evaluate_split

NAME = "multitask"


@dataclass
class Config(ParadigmConfig):
    """The tasks (conf/dataset preset names) that share one backbone, and how batches are mixed."""

    name: str = NAME
    tasks: list[str] = field(default_factory=list)
    mixing: str = "round_robin"  # round_robin | proportional
    task_weights: list[float] = field(default_factory=list)
    task_targets: list[float] = field(default_factory=list)


CHECKS: dict[str, Check] = {
    "paradigm.mixing": one_of(("round_robin", "proportional")),
    "paradigm.task_weights": each(non_negative),
    "paradigm.task_targets": each(fraction_open_closed),
}


class MultiHead(nn.Module):
    """A shared backbone and one head per task: ``model(x, task)``."""

    def __init__(self, backbone: nn.Module, heads: dict[str, nn.Module]):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict(heads)

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        return self.heads[task](self.backbone(x))


class MultiTask:
    """Several classification tasks trained together (satisfies ``train.Task``).

    ``evaluate`` returns the mean accuracy and loss over tasks plus ``tasks``: {name: {accuracy, loss,
    target}}; ``annotate`` (called by ``train.fit`` with the energy so far) adds each task's
    ``energy_to_target_j`` / ``epochs_to_target`` from the epoch it first reached its target.
    """

    def __init__(self, data: dict[str, DataSplits], batch_size: int, eval_batch_size: int, seed: int,
                 weights: dict[str, float], targets: dict[str, Optional[float]], mixing: str = "round_robin",
                 autocast: Callable[[], Any] = contextlib.nullcontext):
        self.data, self.weights, self.targets, self.mixing = data, weights, targets, mixing
        self.names = list(data)
        self.seed, self.eval_batch_size, self.autocast = seed, eval_batch_size, autocast
        # a different shuffle per task, still reproducible from the run seed
        self.train = {n: DeviceBatches(d.x_train, d.y_train, batch_size, seed + 7919 * i)
                      for i, (n, d) in enumerate(data.items())}

    def order(self, epoch: int) -> list[str]:
        """The task of each batch of ``epoch``, in order."""
        counts = {n: len(b) for n, b in self.train.items()}
        if self.mixing == "proportional":
            slots = [n for n in self.names for _ in range(counts[n])]
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch + 17)
            return [slots[i] for i in torch.randperm(len(slots), generator=g).tolist()]
        out: list[str] = []
        for i in range(max(counts.values())):
            out += [n for n in self.names if i < counts[n]]
        return out

    def batches(self, epoch: int) -> Iterable[tuple[str, torch.Tensor, torch.Tensor]]:
        its: dict[str, Iterator[tuple[torch.Tensor, torch.Tensor]]] = {n: iter(b.epoch(epoch))
                                                                         for n, b in self.train.items()}
        for name in self.order(epoch):
            x, y = next(its[name])
            yield name, x, y

    def loss(self, model: nn.Module, batch: tuple[str, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        name, x, y = batch
        with self.autocast():
            return self.weights[name] * F.cross_entropy(model(x, name), y)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, Any]:
        tasks: dict[str, dict[str, Any]] = {}
        for name, d in self.data.items():
            m = evaluate_split(model, d.x_test, d.y_test, self.eval_batch_size, self.autocast,
                               head=lambda xb, _n=name: model(xb, _n))
            tasks[name] = {**m, "target": self.targets[name]}
        k = len(tasks)
        return {"accuracy": sum(t["accuracy"] for t in tasks.values()) / k,
                "loss": sum(t["loss"] for t in tasks.values()) / k, "tasks": tasks}

    def _hit(self, name: str, accuracy: float, target: Optional[float]) -> bool:
        t = self.targets[name] if self.targets[name] is not None else target
        return t is not None and accuracy >= t

    def annotate(self, metrics: dict[str, Any], energy_j: float, wall_s: float,
                 history: list[dict[str, Any]]) -> dict[str, Any]:
        """Add when each task first reached its target; derived from ``history``, so a resumed run agrees."""
        tasks = {n: dict(t) for n, t in metrics["tasks"].items()}
        last = (history[-1].get("tasks") or {}) if history else {}
        for name, t in tasks.items():
            before = last.get(name) or {}
            if before.get("energy_to_target_j") is not None:
                for k in ("energy_to_target_j", "time_to_target_s", "epochs_to_target"):
                    t[k] = before.get(k)
            elif t["target"] is not None and t["accuracy"] >= t["target"]:
                t.update(energy_to_target_j=energy_j, time_to_target_s=wall_s, epochs_to_target=len(history) + 1)
            else:
                t.update(energy_to_target_j=None, time_to_target_s=None, epochs_to_target=None)
        return {**metrics, "tasks": tasks}

    def reached(self, metrics: dict[str, Any], target: Optional[float]) -> bool:
        return all(self._hit(n, t["accuracy"], target) for n, t in metrics["tasks"].items())


def adapt_inputs(name: str, data: DataSplits, shape: tuple[int, int, int], first: str) -> tuple[DataSplits, list[str]]:
    """``data`` with inputs of ``shape`` (C, H, W): channels 1 ↔ 3, bilinear resize; ConfigError otherwise."""
    c0, h0, w0 = shape
    c, h, w = data.input_shape
    notes: list[str] = []
    if c != c0 and {c, c0} != {1, 3}:
        raise ConfigError("paradigm.tasks", name, f"tasks whose channel counts map onto {first}'s ({c} → {c0}: only "
                          "1 ↔ 3 is meaningful, by repeating or averaging the channels)")
    if h * w0 != w * h0:
        raise ConfigError("paradigm.tasks", name, f"tasks with {first}'s aspect ratio ({h}×{w} vs {h0}×{w0}; "
                          "resizing would distort the images)")

    def fit(x: torch.Tensor) -> torch.Tensor:
        if c != c0:
            x = x.repeat(1, c0, 1, 1) if c == 1 else x.mean(dim=1, keepdim=True)
        if (h, w) != (h0, w0):
            x = F.interpolate(x, size=(h0, w0), mode="bilinear", align_corners=False)
        return x.contiguous()

    if c != c0:
        notes.append(f"{name}: {c} → {c0} channel(s) ({'repeated' if c == 1 else 'averaged'}) to share {first}'s input")
    if (h, w) != (h0, w0):
        notes.append(f"{name}: resized {h}×{w} → {h0}×{w0} (bilinear) to share {first}'s input")
    if not notes:
        return data, notes
    return DataSplits(data.name, fit(data.x_train), data.y_train, fit(data.x_test), data.y_test, data.num_classes), notes


def _per_task(values: list[float], names: list[str], key: str, default: Any) -> dict[str, Any]:
    if not values:
        return {n: default for n in names}
    if len(values) != len(names):
        raise ConfigError(key, list(values), f"one value per task ({len(names)}: {', '.join(names)}) or []")
    return dict(zip(names, values))


def build(cfg: RunConfig, device: torch.device, autocast: Callable[[], Any]) -> Setup:
    """Shared backbone (``cfg.model`` without its classifier) and one head per task of ``paradigm.tasks``."""
    p = cfg.paradigm
    names = list(p.tasks)
    if not names:
        raise ConfigError("paradigm.tasks", [], "a list of dataset presets, e.g. [digits,synthetic]")
    if len(set(names)) != len(names):
        raise ConfigError("paradigm.tasks", names, "distinct dataset presets (each task gets its own head)")
    weights = _per_task(list(p.task_weights), names, "paradigm.task_weights", 1.0)
    targets = _per_task(list(p.task_targets), names, "paradigm.task_targets", cfg.target_accuracy)

    notes = ["dataset.* is not used with paradigm=multitask: the tasks' presets define the data"]
    data: dict[str, DataSplits] = {}
    shape: Optional[tuple[int, int, int]] = None
    for name in names:
        d = load_dataset(dataset_preset(name)).to(device)
        if shape is None:
            shape = d.input_shape
        else:
            d, adapted = adapt_inputs(name, d, shape, names[0])
            notes += adapted
        data[name] = d
    assert shape is not None

    model = create_model(cfg.model, shape, data[names[0]].num_classes)
    backbone, make_head = split_for_heads(model)
    net = MultiHead(backbone, {n: make_head(data[n].num_classes) for n in names}).to(device)
    task = MultiTask(data, cfg.batch_size, cfg.eval_batch_size, cfg.seed, weights, targets, p.mixing, autocast)
    info = {"name": "+".join(names), "input_shape": list(shape), "mixing": p.mixing,
            "tasks": {n: {**describe(d), "weight": weights[n], "target": targets[n]} for n, d in data.items()}}
    return Setup(net, task, [{"params": list(net.parameters())}], info, None, notes)
