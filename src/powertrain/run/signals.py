"""SIGTERM/SIGUSR2 during a run (Slurm preemption or time limit): stop at the next step and checkpoint."""

from __future__ import annotations

import logging
import signal
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

    def __call__(self) -> bool:
        return self.flag

    def _handle(self, signum: int, frame: Any) -> None:
        self.flag, self.signum = True, signum

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGUSR2):
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self.signum is not None and callable(self._previous.get(self.signum)):
            self._deferred = self._previous[self.signum]
        self._previous.clear()

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
