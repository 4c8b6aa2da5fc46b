"""A name → builder table with a registering decorator (timm's idea, without ``_target_`` strings)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


class Registry(dict[str, F]):
    """``MODELS = Registry()``; ``@MODELS.register("dense_poly")`` adds a builder under that name."""

    def register(self, name: str) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            self[name] = fn
            return fn

        return deco
