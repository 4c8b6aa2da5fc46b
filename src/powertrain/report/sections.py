"""The report's building blocks, plain dataclasses: study drivers import them without matplotlib or pandas."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    """A table of the report: column names, rows of cells (numbers, text or None), an optional caption."""

    columns: list[str]
    rows: list[list[Any]]
    caption: str = ""


@dataclass
class Section:
    """One section of the report: a title, a paragraph, tables and ``(name, matplotlib Figure)`` pairs.

    The figure name becomes ``figures/<name>.png`` / ``.svg``; keep it a short slug.
    """

    title: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, Any]] = field(default_factory=list)
