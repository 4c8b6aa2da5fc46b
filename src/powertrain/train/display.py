"""A progress line inside an epoch: steps, samples/s and joules so far, redrawn in place on a terminal.

A paper-scale epoch takes minutes; the epoch line only comes at its end. ``ProgressLine`` is built by the run
only when stdout is a terminal (``console.is_terminal``), so logs, pipes and tests get no extra lines.
Cheap by construction: ``step()`` adds one and reads a monotonic clock (no meter, no device sync), and the
line is redrawn at most every ``interval_s`` (4 times a second by default). The joules shown are the
ledger's total through the last window plus, inside an epoch, the previous train window's mean power
times the time since this one began (marked ``~``): a display, never recorded.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import Any, Optional

from powertrain import console


class ProgressLine:
    """The in-place progress line of one run (see the module docstring)."""

    def __init__(self, max_epochs: int, samples_per_step: int, interval_s: float = 0.25,
                 clock: Callable[[], float] = time.monotonic, show: Callable[[str], None] = console.show_line,
                 width: Optional[int] = None) -> None:
        self.max_epochs, self.samples_per_step, self.interval_s = max_epochs, samples_per_step, interval_s
        self.clock, self.show = clock, show
        # one column short of the terminal: a line that wraps cannot be redrawn with a carriage return
        self.width = (width or shutil.get_terminal_size((100, 24)).columns) - 1
        self.epoch = self.steps = 0
        self.total: Optional[int] = None
        self.energy_j = 0.0
        self.power_w: Optional[float] = None
        self.t_epoch = self.next_t = 0.0
        self.draws = 0

    def begin_epoch(self, epoch: int, steps_total: Optional[int], energy_j: float) -> None:
        """A train window starts: ``energy_j`` is the ledger's total so far."""
        self.epoch, self.total, self.steps, self.energy_j = epoch, steps_total, 0, energy_j
        self.t_epoch = self.clock()
        self.next_t = self.t_epoch + self.interval_s

    def step(self) -> None:
        """One optimizer step was queued (called per step: keep it to an add and a clock read)."""
        self.steps += 1
        now = self.clock()
        if now >= self.next_t:
            self.next_t = now + self.interval_s
            self.show(self.line(now)[: self.width])
            self.draws += 1

    def end_epoch(self, train: Any) -> None:
        """The train window ended (``train``: its Measurement): learn its mean power, take the line away."""
        if train is not None and getattr(train, "time_s", 0) > 0:
            self.power_w = train.total_j / train.time_s
        if self.draws:
            console.clear_line()

    def line(self, now: float) -> str:
        """The text of the progress line at time ``now``."""
        elapsed = max(now - self.t_epoch, 1e-9)
        rate = self.steps * self.samples_per_step / elapsed
        if self.total:
            done = min(self.steps / self.total, 1.0)
            bar = "#" * int(done * 20)
            where = f"[{bar:<20}] step {self.steps}/{self.total}"
        else:
            where = f"step {self.steps}"
        energy = f"  {self.energy_j:.1f} J so far" if self.energy_j else ""  # first epoch: nothing billed yet
        if self.power_w is not None:  # the open window's share, from the last train window's mean power
            energy = f"  ~{self.energy_j + self.power_w * elapsed:.1f} J so far"
        return f"epoch {self.epoch + 1:>3}/{self.max_epochs}  {where}  {rate:,.0f} samples/s{energy}"


__all__ = ["ProgressLine"]
