"""A background ticker for power-sampling sources (NVML power integration, RAPL wraparound polling)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Optional

log = logging.getLogger("powertrain.energy.base")


class PeriodicThread:
    """Calls ``fn`` every ``interval_s`` in a daemon thread until ``stop``.

    Sleeps on an ``Event`` so it costs nothing between ticks and stops at once. An exception from ``fn``
    is logged once and the thread keeps ticking: a metering bug must not end a training run.
    """

    def __init__(self, fn: Callable[[], Any], interval_s: float, name: str):
        self.fn, self.interval_s, self.name = fn, interval_s, name
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._logged = False

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.fn()
            except Exception:
                if not self._logged:
                    log.exception("%s: sampling failed (logged once)", self.name)
                    self._logged = True

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
