"""The one error type for bad input, and the one "did you mean" helper.

Every module that refuses a value raises ``ConfigError``; the entry point turns it into one line on stderr
and exit code 2. This module imports nothing from powertrain, so anything may use it without a cycle.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A configuration value that is not allowed. ``str(err)`` is a one-line message for the user."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={shown(value)} is not allowed: {allowed}")

    @classmethod
    def relayed(cls, message: str, key: str) -> ConfigError:
        """The one-line error of a child process (a study's part), passed on unchanged."""
        err = cls(key, None, message)
        err.args = (message,)
        return err

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


ECHO_CHARS = 200  # a value longer than this is shown cut, with its length


_TYPE_WORDS = {"str": "string", "int": "integer", "float": "number", "bool": "true/false"}


def type_name(name: str) -> str:
    """A schema type's name (``int``, ``Optional[float]``) in the words of messages and --help (``integer``,
    ``number or null``)."""
    name = name.replace("typing.", "")
    if name.startswith("Optional[") and name.endswith("]"):
        return f"{type_name(name[len('Optional['):-1])} or null"
    return _TYPE_WORDS.get(name, name)


def first_line(err: BaseException) -> str:
    """``Type: first line of the message`` (``Type`` alone for an empty one): an exception in one line."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def shown(value: Any) -> str:
    """``repr(value)``, cut to about ``ECHO_CHARS`` characters (a 20,000-character value stays one line)."""
    text = repr(value)
    if len(text) <= ECHO_CHARS:
        return text
    return f"{text[: ECHO_CHARS - 40]}… ({len(str(value))} characters)"


def close_matches(value: Any, options: Iterable[str], n: int = 1, cutoff: float = 0.6) -> list[str]:
    """The options closest to ``value`` (at most ``n``, best first): the one similarity measure of every
    did-you-mean hint."""
    return difflib.get_close_matches(str(value), list(options), n=n, cutoff=cutoff)


def did_you_mean(value: Any, options: Iterable[str], quote: bool = True) -> str:
    """`` (did you mean 'x'?)`` for the closest option, or ``""`` when none is close."""
    close = close_matches(value, options)
    if not close:
        return ""
    return f" (did you mean {close[0]!r}?)" if quote else f" (did you mean {close[0]}?)"


def one_of_message(value: Any, options: Iterable[str]) -> str:
    """``one of a, b, c (did you mean 'b'?)``: what is allowed, for a ConfigError."""
    options = list(options)
    return "one of " + ", ".join(options) + did_you_mean(value, options)
