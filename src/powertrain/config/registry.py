"""A name → builder table with a registering decorator (timm's idea, without ``_target_`` strings).

The registry is for what powertrain ships; the user's own callables join it through ``register_own`` (the
public ``powertrain.register_model`` / ``register_dataset``) or an installed package's entry points
(``[project.entry-points."powertrain.models"]``), which are listed without importing the package and
loaded when first built.
"""

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
        self._groups: set[str] = set()  # entry-point groups already added

    def register(self, name: str, **meta: Any) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            self[name] = fn
            self.meta[name] = dict(meta)
            return fn

        return deco

    def register_own(self, name: str, **meta: Any) -> Callable[[F], F]:
        """Register the user's own callable under ``name``: built like a ``_target_`` (meta ``own``), and
        remembered with the module that registered it (DDP ranks, study parts and Slurm tasks must import
        that module too: ``plugins=[...]``)."""
        if not isinstance(name, str) or not name:
            raise TypeError("register_model/register_dataset take the name first: @register_model('my_net')")

        def deco(fn: F) -> F:
            if not callable(fn):
                raise TypeError(f"{name}: a callable (a class or function) is registered, not {type(fn).__name__}")
            self[name] = fn
            self.meta[name] = {"own": True, "module": getattr(fn, "__module__", None), **meta}
            return fn

        return deco

    def add_entry_points(self, group: str) -> None:
        """Add every name installed packages declare under entry-point ``group`` (names already here win:
        a package cannot replace a shipped builder). Loaded when first built, not now. Once per group:
        scanning the installed packages costs ~10 ms."""
        if group in self._groups:
            return
        self._groups.add(group)
        for ep in _entry_points(group):
            if ep.name in self:
                continue
            self[ep.name] = EntryPointCallable(ep)  # type: ignore[assignment]
            self.meta[ep.name] = {"own": True, "entry_point": f"{ep.name} = {ep.value}",
                                  "module": ep.value.partition(":")[0]}

    def target(self, name: str) -> Callable[..., Any]:
        """The callable registered as ``name`` (an entry point is loaded now)."""
        fn = self[name]
        return fn.load() if isinstance(fn, EntryPointCallable) else fn


class EntryPointCallable:
    """A registry entry that loads its entry point on first use (listing names imports nothing)."""

    def __init__(self, ep: Any):
        self.ep = ep
        self._loaded: Optional[Callable[..., Any]] = None

    def load(self) -> Callable[..., Any]:
        if self._loaded is None:
            from powertrain.config.errors import ConfigError

            try:
                self._loaded = self.ep.load()
            except Exception as e:
                raise ConfigError(self.ep.group, self.ep.name, f"an entry point that loads ({self.ep.value}): "
                                  f"{type(e).__name__}: {e}".splitlines()[0]) from e
        return self._loaded

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.load()(*args, **kwargs)


def _entry_points(group: str) -> list[Any]:
    from importlib.metadata import entry_points

    return sorted(entry_points(group=group), key=lambda ep: ep.name)


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
