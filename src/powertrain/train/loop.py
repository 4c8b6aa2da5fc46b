"""The training loop: plain PyTorch, no Hydra, no trackers.

``fit`` trains a ``Task`` epoch by epoch inside energy windows ("train", then "eval") and stops on the
first of: max_epochs, target accuracy reached, energy or time budget spent, a non-finite loss, or a stop
request (preemption). It returns a ``FitResult``; the caller turns that into result.json.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from powertrain.energy.base import EnergyMeter, Ledger, combine
from powertrain.train.tasks import Task


def train_step(task: Task, model: nn.Module, optimizer: torch.optim.Optimizer, batch: Any,
               scaler: Optional[Any] = None) -> torch.Tensor:
    """One optimizer step on ``batch`` (with the fp16 grad scaler when given); returns the loss, not synced."""
    optimizer.zero_grad(set_to_none=True)
    loss = task.loss(model, batch)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss


@dataclass
class FitState:
    """Everything that survives a preemption besides model/optimizer weights."""

    epoch: int = 0  # epochs completed
    steps: int = 0
    best_accuracy: float = 0.0
    energy_to_target_j: Optional[float] = None
    time_to_target_s: Optional[float] = None
    train_s: float = 0.0
    eval_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FitResult:
    status: str  # completed | target_reached | diverged | budget_exhausted | preempted | pruned
    state: FitState
    final_metrics: dict[str, Any]
    final_loss: Optional[float]
    reason: str = ""


def _train_epoch(model: nn.Module, task: Task, optimizer: torch.optim.Optimizer, meter: EnergyMeter,
                 ledger: Ledger, st: FitState, scaler: Optional[Any], stop_requested: Optional[Callable[[], bool]],
                 progress: Optional[Any], display: Optional[Any] = None) -> tuple[Any, Any, int, bool]:
    """One epoch of steps in a "train" window: (measurement, summed loss on the device, steps, preempted).

    ``stop_requested`` is asked after every step (one process only; None in a distributed run, whose
    ranks agree at the epoch's end). The window's joules go into ``ledger`` (and its time into
    ``st.train_s``) here. ``progress`` (one process only, or None: a distributed run's window ends are
    collectives, and a run may save nothing mid-epoch) has a ``due`` flag its own
    thread raises every ``checkpoint.every_s``: then the window is cut there, so the joules so far are in the
    ledger, and ``progress.mid_epoch(steps)`` saves them with a checkpoint before the steps go on.
    ``display`` is the terminal's progress line (``train.display.ProgressLine``), or None.
    """
    tick = None
    if display is not None:
        display.begin_epoch(st.epoch, getattr(task, "steps_per_epoch", None), ledger.total_j())
        tick = display.step
    meter.begin_window("train")
    loss_sum = torch.zeros((), device=_device_of(model))
    n_batches, preempted, parts = 0, False, []
    for batch in task.batches(st.epoch):
        loss = train_step(task, model, optimizer, batch, scaler)
        if tick is not None:  # the progress line: an add and a clock read, never a meter or a sync
            tick()
        # summed on the device: no host sync per step
        loss_sum += loss.detach().float()
        n_batches += 1
        # one process stops at once; ranks agree at the epoch's end (a rank leaving mid-epoch would
        # leave the others waiting in their next gradient all-reduce)
        if stop_requested is not None and stop_requested():
            preempted = True
            break
        if progress is not None and progress.due:  # a flag, not a clock read: nothing per step but this
            parts.append(_add_train(meter.end_window("train"), ledger, st))  # the window end syncs
            progress.mid_epoch(n_batches)
            meter.begin_window("train")
    parts.append(_add_train(meter.end_window("train"), ledger, st))  # the window end syncs the device
    m_train = combine(parts)
    if display is not None:
        display.end_epoch(m_train)
    return m_train, loss_sum, n_batches, preempted


def _add_train(m: Any, ledger: Ledger, st: FitState) -> Any:
    ledger.add("train", m)
    st.train_s += m.time_s
    return m


def _eval_epoch(model: nn.Module, task: Task, meter: EnergyMeter, ledger: Ledger,
                st: FitState) -> tuple[dict[str, Any], Any]:
    """Evaluate in an "eval" window and count the epoch as done: (metrics, the window's measurement)."""
    meter.begin_window("eval")
    metrics = dict(task.evaluate(model))
    m_eval = meter.end_window("eval")
    ledger.add("eval", m_eval)
    st.eval_s += m_eval.time_s
    st.epoch += 1
    st.best_accuracy = max(st.best_accuracy, metrics["accuracy"])
    return metrics, m_eval


@dataclass
class _Limits:
    """The stop conditions checked after each evaluation."""

    max_epochs: int
    target_accuracy: Optional[float]
    energy_budget_j: Optional[float]
    time_budget_s: Optional[float]


def _stop_after_epoch(task: Task, st: FitState, metrics: dict[str, Any], last_loss: Optional[float],
                      limits: _Limits, energy_j: float, wall_s: float, prune_reason: Optional[str],
                      stop_now: bool) -> Optional[FitResult]:
    """The FitResult that ends the loop after this epoch, or None to go on (the order is the contract:
    a run that reached its target says so even when a pruner or budget would also have stopped it)."""
    if task.reached(metrics, limits.target_accuracy):
        st.energy_to_target_j = energy_j
        st.time_to_target_s = wall_s
        return FitResult("target_reached", st, metrics, last_loss)
    if prune_reason and st.epoch < limits.max_epochs:
        return FitResult("pruned", st, metrics, last_loss, prune_reason)
    if limits.energy_budget_j is not None and energy_j >= limits.energy_budget_j:
        return FitResult("budget_exhausted", st, metrics, last_loss,
                         f"energy budget {limits.energy_budget_j:g} J spent ({energy_j:.1f} J)")
    if limits.time_budget_s is not None and wall_s >= limits.time_budget_s:
        return FitResult("budget_exhausted", st, metrics, last_loss,
                         f"time budget {limits.time_budget_s:g} s spent ({wall_s:.1f} s)")
    if stop_now:
        return FitResult("preempted", st, metrics, last_loss, "stop requested (signal)")
    return None


def _epoch_row(st: FitState, last_loss: float, metrics: dict[str, Any], m_train: Any, m_eval: Any,
               ledger: Ledger, energy_j: float, wall_s: float, lr: float) -> dict[str, Any]:
    """The epoch's history row (what trackers log and result.json keeps)."""
    return {
        "epoch": st.epoch, "steps": st.steps, "train_loss": last_loss, **metrics,
        "epoch_train_j": m_train.total_j, "epoch_eval_j": m_eval.total_j,
        "epoch_train_s": m_train.time_s, "epoch_eval_s": m_eval.time_s,
        "energy_j": energy_j, "wall_s": wall_s,
        "epoch_components_j": _per_component(m_train, m_eval),
        "components_j": {c["name"]: c["energy_j"] for c in ledger.components()},  # cumulative
        "lr": lr,
    }


def fit(
    model: nn.Module,
    task: Task,
    optimizer: torch.optim.Optimizer,
    meter: EnergyMeter,
    ledger: Ledger,
    *,
    max_epochs: int,
    scheduler: Optional[Any] = None,
    target_accuracy: Optional[float] = None,
    energy_budget_j: Optional[float] = None,
    time_budget_s: Optional[float] = None,
    state: Optional[FitState] = None,
    scaler: Optional[Any] = None,
    stop_requested: Callable[[], bool] = lambda: False,
    on_epoch: Callable[[dict[str, Any]], Optional[str]] = lambda row: None,
    clock_offset_s: float = 0.0,
    sync: Optional[Any] = None,
    progress: Optional[Any] = None,
    display: Optional[Any] = None,
) -> FitResult:
    """Train until a stop condition; every joule goes into ``ledger`` under "train" or "eval".

    ``state`` continues a resumed run; ``clock_offset_s`` is the wall time of earlier attempts (for the
    time budget and time-to-target). ``on_epoch`` may return a reason to stop: the run ends ``pruned``
    (an Optuna pruner decided it cannot win), after the target check, so a run that got there says so.
    ``sync`` (``powertrain.run.distributed.EpochSync``) makes the ranks of a distributed run decide together
    at each epoch's end: mean training loss, clock and stop request are agreed, so every rank leaves the
    loop at the same epoch with the same status. ``progress`` (``powertrain.run.progress``) saves the run
    inside long epochs (one process only); the caller saves it at each epoch's end through ``on_epoch``.
    ``state`` is updated in place, so a caller that passed one keeps every finished epoch if fit raises.
    ``display`` (``train.display.ProgressLine``) draws a line inside each epoch on a terminal; its per-step
    cost is an add and a clock read.
    """
    st = state if state is not None else FitState()
    # one process: stop requests and progress saves are checked per step; ranks only at the epoch's end
    progress = progress if sync is None else None
    limits = _Limits(max_epochs, target_accuracy, energy_budget_j, time_budget_s)
    t_start = time.perf_counter() - clock_offset_s
    metrics: dict[str, Any] = st.history[-1] if st.history else {}
    last_loss: Optional[float] = metrics.get("train_loss")
    model.train()
    while st.epoch < max_epochs:
        m_train, loss_sum, n_batches, preempted = _train_epoch(
            model, task, optimizer, meter, ledger, st, scaler, stop_requested if sync is None else None,
            progress, display)
        st.steps += n_batches
        if sync is not None:
            loss_sum = sync.mean(loss_sum)  # every rank took n_batches steps
        last_loss = loss_sum.item() / max(n_batches, 1)
        if preempted:
            return FitResult("preempted", st, metrics, last_loss, "stop requested (signal)")
        if not math.isfinite(last_loss):
            return FitResult("diverged", st, metrics, last_loss, f"non-finite training loss in epoch {st.epoch + 1}")
        if scheduler is not None:
            scheduler.step()

        metrics, m_eval = _eval_epoch(model, task, meter, ledger, st)
        energy_j = ledger.total_j()
        wall_s = time.perf_counter() - t_start
        stop_now = stop_requested()
        if sync is not None:  # the slowest rank's clock, and a signal to any rank stops all of them
            wall_s, stop_now = sync.agree(wall_s, stop_now)
        # a task may add what only the loop knows, e.g. multitask: the energy when each task hit its target
        annotate = getattr(task, "annotate", None)
        if annotate is not None:
            metrics = annotate(metrics, energy_j=energy_j, wall_s=wall_s, history=st.history)
        row = _epoch_row(st, last_loss, metrics, m_train, m_eval, ledger, energy_j, wall_s,
                         optimizer.param_groups[0]["lr"])
        st.history.append(row)
        ledger.epochs.append({k: row[k] for k in ("epoch", "energy_j", "wall_s", "components_j")})
        prune_reason = on_epoch(row)
        if sync is not None:  # the pruner asks on one rank: every rank stops with it
            _, prune = sync.agree(0.0, bool(prune_reason))
            prune_reason = prune_reason or ("pruned (decided on rank 0)" if prune else None)
        done = _stop_after_epoch(task, st, metrics, last_loss, limits, energy_j, wall_s, prune_reason, stop_now)
        if done is not None:
            return done
    return FitResult("completed", st, metrics, last_loss)


def _per_component(*ms: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in ms:
        for c in m.components:
            out[c.name] = out.get(c.name, 0.0) + c.energy_j
    return out


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")
