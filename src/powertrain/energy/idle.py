"""Idle power baseline: what the machine draws while this process sleeps.

``RunSession`` measures it before training (``energy.idle_baseline_s``) so a result can report the energy
above idle, the part the training itself caused.
"""

from __future__ import annotations

import threading

from powertrain.energy.base import EnergyMeter, Measurement

IDLE_WINDOW = "idle"


def measure_idle(meter: EnergyMeter, seconds: float) -> Measurement:
    """Sleep for ``seconds`` inside an ``idle`` window and return its measurement.

    Add it to the ledger under phase ``idle``: ``Ledger.total_j`` leaves that phase out by default.

    Raises:
        ValueError: if ``seconds`` is not positive.
    """
    if not seconds > 0:
        raise ValueError(f"idle baseline needs seconds > 0, got {seconds!r}")
    meter.begin_window(IDLE_WINDOW)
    # Event.wait rather than time.sleep in a loop: one syscall, nothing else runs in this process
    threading.Event().wait(seconds)
    return meter.end_window(IDLE_WINDOW)


def mean_power_w(m: Measurement) -> float:
    """Mean power of a window in watts (0.0 for an empty window)."""
    return m.total_j / m.time_s if m.time_s > 0 else 0.0

