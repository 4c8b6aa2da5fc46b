"""The run's own lines: printed to stdout as always, and kept in the job's log file; and the one
progress line that updates in place on a terminal.

Hydra's job logging (conf/hydra/job_logging/powertrain.yaml) gives the logger ``powertrain.out`` one
handler, the job's ``powertrain.log``, and stops it from reaching the console handler, so every line is
on the terminal once (printed, exactly as before) and in the log with a timestamp. Outside a Hydra job
(tests, the library) the logger has no handler and the line is only printed.
"""

from __future__ import annotations

import logging
import sys

_log = logging.getLogger("powertrain.out")
_shown = {"width": 0}  # the width of the progress line on screen (0: none)


class JobLogFile(logging.FileHandler):
    """The job log's file handler (conf/hydra/job_logging/powertrain.yaml): a copy of the run's lines, so a
    write that fails (a full disk, a file-size limit) is dropped quietly instead of printing logging's
    traceback for every line; the run itself reports the disk problem once, in one line."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        pass


def say(text: str) -> None:
    """Print ``text`` (flushed) and write it to the job's log file when Hydra configured one."""
    clear_line()  # a progress line in place on the terminal gives way to the line
    print(text, flush=True)
    if _log.handlers:  # only Hydra's job logging sets it up (with propagate off): never shown twice
        for line in text.splitlines():
            _log.info(line)


def is_terminal() -> bool:
    """Whether stdout is a terminal (a progress line in place makes sense); never in a log or a pipe."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed stdout
        return False


def show_line(text: str) -> None:
    """Draw ``text`` over the current terminal line (carriage return, no newline)."""
    pad = max(_shown["width"] - len(text), 0)
    sys.stdout.write("\r" + text + " " * pad)
    sys.stdout.flush()
    _shown["width"] = len(text)


def clear_line() -> None:
    """Erase the progress line, if one is on screen, so the next printed line starts clean."""
    if _shown["width"]:
        sys.stdout.write("\r" + " " * _shown["width"] + "\r")
        sys.stdout.flush()
        _shown["width"] = 0


def num(x: float, decimals: int = 1, digits: int = 3) -> str:
    """``x`` with ``decimals`` decimals, or, below 1, with ``digits`` significant digits (0.000123, never
    0.0000 for a small non-zero value, and no exponent)."""
    if x == 0 or x != x or abs(x) >= 1:
        return f"{x:.{decimals}f}"
    import math

    places = max(decimals, digits - 1 - math.floor(math.log10(abs(x))))
    return f"{x:.{places}f}"


def metric_text(name: str, value: float) -> str:
    """A task's metric as the epoch lines and the summary show it: accuracy in percent, any other
    ``task.metric`` (the user's own, e.g. an R^2) as it is, to 4 decimals."""
    return f"{value * 100:.2f}%" if name == "accuracy" else f"{value:.4f}"


__all__ = ["JobLogFile", "clear_line", "is_terminal", "metric_text", "num", "say", "show_line"]
