"""Per-layer-type energy attribution: which kind of layer the training energy went to.

No meter reads energy per layer. What can be measured is time: a few training steps (forward, backward,
optimizer step) run under ``torch.profiler`` after training has ended, and every profiled operation's
self time (device time on a GPU, CPU time otherwise) is given to a layer type by its own name or the
nearest enclosing operation that names one (``aten::mm`` under ``AddmmBackward0`` is a linear layer's
backward). The train window's joules are then split by those time shares. That is an *attribution* under
a stated assumption (power is the same whatever runs), recorded as such in result.json
(``energy.layer_attribution``), never as a measurement. Profiling runs outside the training loop, so the
loop keeps its speed; the profiled steps happen after the checkpoint is saved and change nothing the
result reports.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from typing import Any, Optional

TYPES = ("conv", "linear", "activation", "norm", "pool", "optimizer", "other")
METHOD = "profiler_time_share_attribution"
ASSUMPTION = ("the train window's energy split by each layer type's share of profiled operator time "
              "(equal power whatever runs): an attribution, not a measurement")

# checked in order: the first type whose keyword is in an operation's lower-cased name (or its nearest
# ancestor's) wins. "optimizer" first: Adam's foreach ops sit under "Optimizer.step#Adam.step".
_KEYWORDS = (
    ("optimizer", ("optimizer.", "_foreach_", "accumulategrad")),
    ("conv", ("conv",)),
    ("norm", ("batch_norm", "batchnorm", "layer_norm", "layernorm", "group_norm", "groupnorm")),
    ("pool", ("pool",)),
    ("activation", ("relu", "threshold", "clamp_min", "gelu", "silu", "sigmoid", "tanh", "hardswish",
                    "softplus")),
    ("linear", ("addmm", "linear", "aten::mm", "mmbackward", "tbackward")),
)


def classify(name: str) -> Optional[str]:
    """The layer type an operation's name says, or None when it says none."""
    n = name.lower()
    for kind, words in _KEYWORDS:
        if any(w in n for w in words):
            return kind
    return None


def _type_of(event: Any, cache: dict[int, str]) -> str:
    chain, e = [], event
    while e is not None:
        if id(e) in cache:
            kind = cache[id(e)]
            break
        kind = classify(e.name)
        if kind is not None:
            break
        chain.append(e)
        e = e.cpu_parent
    else:
        kind = "other"
    for c in chain:
        cache[id(c)] = kind
    cache[id(event)] = kind
    return kind


def time_shares(events: Iterable[Any], device_time: bool) -> dict[str, float]:
    """Self time per layer type in microseconds from profiler events (``FunctionEvent``)."""
    out = dict.fromkeys(TYPES, 0.0)
    cache: dict[int, str] = {}
    for e in events:
        t = (getattr(e, "self_device_time_total", 0.0) if device_time else e.self_cpu_time_total) or 0.0
        if t > 0:
            out[_type_of(e, cache)] += float(t)
    return out


def profile_steps(step: Callable[[], None], steps: int, on_gpu: bool) -> tuple[dict[str, float], float]:
    """Run ``step`` once unprofiled (warm), then ``steps`` times under torch.profiler.

    Returns (microseconds per layer type, wall seconds of the profiled steps).
    """
    import torch
    from torch.profiler import ProfilerActivity, profile

    step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    prof = profile(activities=activities)
    t0 = time.perf_counter()
    with _quiet_stderr():  # kineto writes start/stop lines (and a GPU probe error on CPU hosts) to fd 2
        prof.__enter__()
    try:
        for _ in range(steps):
            step()
        if on_gpu:
            torch.cuda.synchronize()
    finally:
        with _quiet_stderr():
            prof.__exit__(None, None, None)
    wall_s = time.perf_counter() - t0
    return time_shares(prof.events(), device_time=on_gpu), wall_s


@contextlib.contextmanager
def _quiet_stderr() -> Any:
    """File descriptor 2 to /dev/null for the block: C++ logging bypasses Python's sys.stderr."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def attribution(times_us: dict[str, float], steps: int, wall_s: float, on_gpu: bool) -> dict[str, Any]:
    """The record result.json keeps (``energy.layer_attribution``); joules are added from the train energy
    when the result is filled (``with_energy``)."""
    total = sum(times_us.values())
    shares = {k: (v / total if total else 0.0) for k, v in times_us.items()}
    return {"method": METHOD, "measured": False, "steps": steps,
            "basis": "GPU kernel self time" if on_gpu else "CPU operator self time",
            "assumption": ASSUMPTION, "profiled_wall_s": wall_s, "share": shares, "energy_j": None}


def with_energy(record: dict[str, Any], train_j: Optional[float]) -> dict[str, Any]:
    """``record`` with the train window's joules split by its shares."""
    if train_j is not None:
        record["energy_j"] = {k: share * train_j for k, share in record["share"].items()}
    return record


def profile_layers(model: Any, task: Any, optimizer: Any, steps: int, on_gpu: bool,
                   autocast: Callable[[], Any] = contextlib.nullcontext) -> dict[str, Any]:
    """Profile ``steps`` training steps of ``model`` on one batch of ``task``; the attribution record."""
    batch = next(iter(task.batches(0)))
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = task.loss(model, batch)
        loss.backward()
        optimizer.step()

    times, wall_s = profile_steps(step, steps, on_gpu)
    return attribution(times, steps, wall_s, on_gpu)
