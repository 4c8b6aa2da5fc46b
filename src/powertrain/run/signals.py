"""SIGTERM/SIGUSR2 (Slurm preemption or time limit) and Ctrl-C during a run: stop at the next step, checkpoint.

The first Ctrl-C (SIGINT) stops the run like a preemption, with status ``interrupted``; a second one
leaves at once (``KeyboardInterrupt``: result.json is still written, the checkpoint is the last progress
save). A Ctrl-C while the result is being written is held until it is written, then raised.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any, Optional

log = logging.getLogger("powertrain")


class StopRequest:
    """Set by SIGTERM/SIGUSR2 (Slurm preemption or time limit): the loop checkpoints and stops.

    A handler installed before ours (e.g. submitit's, which requeues the job and exits at once) is not
    called from the signal: the run would die without a checkpoint. It is deferred: ``chain()`` calls it
    once the checkpoint and result.json are written, so under submitit a SIGUSR2 still requeues the job,
    and the requeued job resumes in the same Hydra job directory. Without such a handler (a plain CLI
    run, SIG_DFL) the run just ends with status ``preempted`` and exit code 1.
    """

    def __init__(self) -> None:
        self.flag = False
        self.signum: Optional[int] = None
        self._previous: dict[int, Any] = {}
        self._deferred: Any = None
        self._sigint_previous: Any = None  # Python's handler, while a Ctrl-C is held (see uninstall)
        self._held = False

    def __call__(self) -> bool:
        return self.flag

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:  # the second Ctrl-C: leave now
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # and a third one ends the process outright
            raise KeyboardInterrupt
        if signum == signal.SIGINT:
            print("\npowertrain: Ctrl-C: stopping after this step with a checkpoint (Ctrl-C again to leave "
                  "at once)", file=sys.stderr, flush=True)
        self.flag, self.signum = True, signum

    @property
    def interrupted(self) -> bool:
        """Whether the stop was a Ctrl-C (status ``interrupted``) rather than a preemption signal."""
        return self.signum == signal.SIGINT

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        """Restore the earlier handlers, except that a Ctrl-C is held until ``release`` (the run is writing
        its result: a KeyboardInterrupt now would leave it half done)."""
        for sig, handler in self._previous.items():
            if sig == signal.SIGINT:
                self._sigint_previous = handler
                signal.signal(sig, self._hold)
                continue
            signal.signal(sig, handler)
        if self.signum not in (None, signal.SIGINT) and callable(self._previous.get(self.signum)):
            # (Python's own SIGINT handler would only raise KeyboardInterrupt after the run has ended)
            self._deferred = self._previous[self.signum]
        self._previous.clear()

    def _hold(self, signum: int, frame: Any) -> None:
        self._held = True

    def release(self) -> None:
        """After the result is written: the earlier Ctrl-C handler back, and a Ctrl-C held meanwhile raised."""
        if self._sigint_previous is None:
            return
        signal.signal(signal.SIGINT, self._sigint_previous)
        self._sigint_previous = None
        if self._held:
            self._held = False
            raise KeyboardInterrupt

    def chain(self) -> None:
        """Call the deferred earlier handler of the received signal (may requeue and exit)."""
        handler, self._deferred = self._deferred, None
        if handler is not None and self.signum is not None:
            try:
                handler(self.signum, None)
            except Exception as e:
                # submitit raises "Job not requeued because: timed-out too many times" (max_num_timeout
                # spent) to end the task; the run is checkpointed and its result.json says preempted,
                # so the task returns that result instead of failing its Hydra job (which aborts the
                # sweep before its summary). A requeue exits with SystemExit, which still propagates.
                log.warning("not requeued: %s", str(e).strip().splitlines()[0] if str(e).strip() else e)
