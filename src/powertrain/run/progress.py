"""Progress that survives any kill: the running result.json and the resumable checkpoint, saved while training.

After every epoch (and, inside an epoch, once ``checkpoint.every_s`` has passed since the last save) the
session hands a *snapshot* to ``Progress.submit``: the result as it stands (status ``running``) and the
checkpoint's tensors already copied to host memory. A background thread writes them (checkpoint first,
then result.json, each atomically with fsync), so the training thread pays for the copy only.

Saves are spaced (``should_save``): an epoch's end is skipped while a save is in flight, or when the last
one ended less than ``checkpoint.min_interval_s`` ago, or less than ``SPACING`` times its own duration
ago. So saving never takes more than about 1/SPACING of the run, however short its epochs or large its
checkpoint, and a kill loses at most that interval (plus the epoch in progress): the default run's 40
epochs of ~40 ms are saved about once a second, a paper-scale epoch after every epoch.

The same thread is the run's heartbeat: it refreshes result.json's mtime every ``HEARTBEAT_S``, and raises
``due`` (read once per step, a plain attribute) when a save inside the epoch is owed. A save that fails
(a full disk, a read-only directory) is kept in ``error``; the session stops the run at its next save,
and the last good files stay as they were (the temporary files are removed).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from powertrain.results import HEARTBEAT_S, RESULT_FILE, write_result

SPACING = 20.0  # a save waits at least this many times the last save's duration: at most ~5 % of the run


class ProgressError(RuntimeError):
    """A progress save failed: the run stops, its last good result.json and checkpoint stay."""


class Progress:
    """The background writer and heartbeat of one run (see the module doc)."""

    def __init__(self, run_dir: Path, every_s: float, write_checkpoint: Callable[[dict[str, Any]], None],
                 heartbeat_s: float = HEARTBEAT_S, min_interval_s: float = 1.0):
        self.run_dir, self.every_s, self.heartbeat_s = Path(run_dir), every_s, heartbeat_s
        self.min_interval_s = min_interval_s
        self._busy = False  # a save is being written
        self._save_ended = -float("inf")  # monotonic time the last save ended
        self._save_s = 0.0  # how long it took
        self.saves, self.writer_s, self.writer_cpu_s = 0, 0.0, 0.0  # what saving cost (in result.json)
        self._write_checkpoint = write_checkpoint
        self.due = False  # raised by the thread when a save inside the epoch is owed; read once per step
        self.on_mid_epoch: Optional[Callable[[int], None]] = None  # the session's save, given steps so far
        self.error: Optional[str] = None  # the first failed save, one line
        self.saved: Optional[dict[str, Any]] = None  # what the last good save holds (epoch, at)
        self._pending: Optional[tuple[dict[str, Any], Optional[dict[str, Any]], dict[str, Any]]] = None
        self._cond = threading.Condition()
        self._closing = False
        self._last_submit = time.monotonic()
        self._last_touch = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="powertrain-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def mid_epoch(self, steps: int) -> None:
        """Called by ``fit`` when ``due`` is raised: save now (the train window was cut just before)."""
        self.due = False
        if self.on_mid_epoch is not None:
            self.on_mid_epoch(steps)

    def should_save(self) -> bool:
        """Whether an epoch that just ended is saved now (see the module doc); one that is not is saved
        with a later epoch, and the run's end always is."""
        if self._busy or self._pending is not None:
            return False
        return time.monotonic() - self._save_ended >= max(self.min_interval_s, SPACING * self._save_s)

    def submit(self, result: dict[str, Any], checkpoint: Optional[dict[str, Any]], label: dict[str, Any]) -> None:
        """Hand a snapshot to the writer; a snapshot still waiting is replaced (the newest wins)."""
        with self._cond:
            self._pending = (result, checkpoint, label)
            self._last_submit = time.monotonic()
            self.due = False
            self._cond.notify()

    def write_now(self, result: dict[str, Any]) -> None:
        """Write ``result`` from the calling thread (the first running record, before training starts)."""
        write_result(self.run_dir, result)
        self._last_touch = time.monotonic()

    def check(self) -> None:
        """Raise ``ProgressError`` if a save has failed since the last check."""
        if self.error is not None:
            raise ProgressError(self.error)

    def stats(self) -> dict[str, Any]:
        """What the saves cost, for the final result.json (``progress``)."""
        return {"saves": self.saves, "last_saved_epoch": (self.saved or {}).get("epoch"),
                "writer_s": self.writer_s, "writer_cpu_s": self.writer_cpu_s}

    def close(self, timeout_s: float = 120.0) -> None:
        """Write what is still pending, then stop the thread (the final result.json comes after this)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    # ------------------------------------------------------------------------------------ the thread

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closing:
                    now = time.monotonic()
                    wait = min(self._last_touch + self.heartbeat_s, self._last_submit + self.every_s) - now
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                job, self._pending = self._pending, None
                closing = self._closing
                self._busy = job is not None
            if job is not None:
                t0, cpu0 = time.monotonic(), time.thread_time()
                self._save(*job)
                self._save_ended = time.monotonic()
                self._save_s = self._save_ended - t0
                self.saves += 1
                self.writer_s += self._save_s
                self.writer_cpu_s += time.thread_time() - cpu0
                self._busy = False
            elif closing:
                return
            else:
                self._tick()

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._last_submit >= self.every_s:
            self.due = True  # the training thread saves at its next step
            self._last_submit = now  # not again before the next period, whether or not it got there
        if now - self._last_touch >= self.heartbeat_s:
            with contextlib.suppress(OSError):  # no result.json yet, or a full disk: the save will say
                os.utime(self.run_dir / RESULT_FILE)
            self._last_touch = now

    def _save(self, result: dict[str, Any], checkpoint: Optional[dict[str, Any]], label: dict[str, Any]) -> None:
        if self.error is not None:
            return  # after a failed save nothing more is written: the last good files are the record
        try:
            if checkpoint is not None:  # first: a result.json never names a checkpoint that is not there
                self._write_checkpoint(checkpoint)
            write_result(self.run_dir, result)
        except OSError as e:
            what = f"{e.strerror or type(e).__name__}" + (f": {e.filename}" if e.filename else "")
            kept = (f"the last good result.json and checkpoint (after epoch {self.saved['epoch']}) are kept"
                    if self.saved else "no progress was saved before")
            # no log line: a full disk fails the log file too; the session says it once, on stderr
            self.error = f"could not save progress after epoch {label.get('epoch')} ({what}); {kept}"
            return
        self.saved = dict(label)
        self._last_touch = time.monotonic()


__all__ = ["Progress", "ProgressError"]
