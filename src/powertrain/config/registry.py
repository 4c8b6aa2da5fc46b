"""A name → builder table with a registering decorator (timm's idea, without ``_target_`` strings)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import ModuleType
from typing import Any, Optional, TypeVar

F = TypeVar("F", bound=Callable)


class Registry(dict[str, F]):
    """``MODELS = Registry()``; ``@MODELS.register("dense_poly")`` adds a builder under that name.

    Keyword arguments to ``register`` are facts about the entry (e.g. a dataset that reads files under
    ``dataset.root``), kept beside it in ``meta`` so no second list of names is needed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            self[name] = fn
            self.meta[name] = dict(meta)
            return fn

        return deco


def discover(package: str, path: Iterable[str]) -> dict[str, ModuleType]:
    """``module.NAME`` → module for every module of ``package`` (the plug-in folders: paradigms, studies).

    Listing the folder instead of keeping a table means adding a plug-in is adding its file.
    """
    found: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(list(path)):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        found[getattr(module, "NAME", info.name)] = module
    return dict(sorted(found.items()))


class LazyModules(Mapping[str, ModuleType]):
    """A read-only name → module table filled by ``discover`` on first use (importing is not free)."""

    def __init__(self, package: str, path: Iterable[str]):
        self._package, self._path = package, list(path)
        self._table: Optional[dict[str, ModuleType]] = None

    def _load(self) -> dict[str, ModuleType]:
        if self._table is None:
            self._table = discover(self._package, self._path)
        return self._table

    def __getitem__(self, name: str) -> ModuleType:
        return self._load()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())
