"""Check command-line overrides against the schema before Hydra composes or launches anything.

Hydra would report a wrong type in several lines and exit 1, and in a multirun only after the sweep
started. Here every value of every override (each element of a sweep ``a,b,c`` too) is type-checked
against the ``RunConfig`` schema and range-checked with ``config.CHECKS``, and the first bad one becomes
a one-line ``ConfigError``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from powertrain.config import GROUPS, ConfigError, RunConfig, check_value


def _flat_keys(node: Any, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    keys = []
    for k in node.keys():
        v = node._get_node(k)
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, DictConfig):
            keys += _flat_keys(v, full + ".")
    return keys


def _values(override: Any) -> Iterable[Any]:
    from hydra.core.override_parser.types import ChoiceSweep, Glob, IntervalSweep, RangeSweep

    if not override.is_sweep_override():
        return [override.value()]
    v = override.value()
    if isinstance(v, ChoiceSweep):
        return list(v.list)
    if isinstance(v, RangeSweep):
        return list(override.sweep_iterator())
    if isinstance(v, (IntervalSweep, Glob)):
        return []  # bounds of a search space; the sweeper checks each sampled value when it composes
    return []


def check_overrides(argv: list[str]) -> None:
    """Raise ConfigError for the first override whose key is unknown or whose value is not allowed."""
    args = [a for a in argv if "=" in a and not a.startswith("-")]
    if not args:
        return
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except Exception as e:  # Hydra's grammar error is already one clear line
        raise ConfigError("overrides", " ".join(args), str(e).splitlines()[0]) from None
    schema = OmegaConf.structured(RunConfig)
    known = None
    # an extra search path may hold more group options than conf/ does: leave those to Hydra
    searchpath = any(ov.key_or_group.startswith("hydra.searchpath") for ov in parsed)
    for ov in parsed:
        key = ov.key_or_group
        if key in GROUPS and ov.package is None and not searchpath and not ov.is_delete():
            _check_group_option(key, ov)
            continue
        if ov.package is not None or key.startswith("hydra") or ov.is_delete() or ov.is_add() \
                or ov.is_force_add() or key in GROUPS or key == "experiment":
            continue
        if OmegaConf.select(schema, key, throw_on_missing=False, default="__absent__") == "__absent__":
            known = known or _flat_keys(schema)
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(key, ov.input_line.split("=", 1)[1] if ov.input_line else "",
                              f"an existing config key{hint}")
        for value in _values(ov):
            # the schema itself is the probe: keys are checked independently, and building a fresh
            # structured config per value costs ~30 ms of start-up each
            try:
                OmegaConf.update(schema, key, value, merge=True)
            except OmegaConfBaseException:
                raise ConfigError(key, value, f"a value of type {_type_name(schema, key)}") from None
            check_value(key, OmegaConf.select(schema, key))


def _check_group_option(group: str, override: Any) -> None:
    """Hydra reports an unknown group option in many lines with exit 1; make it one line (exit 2)."""
    from powertrain.config import _one_of
    from powertrain.paths import conf_dir

    options = tuple(sorted(p.stem for p in (conf_dir() / group).glob("*.yaml")))
    for value in _values(override):
        msg = _one_of(options)(value)
        if msg is not None:
            raise ConfigError(group, value, msg)


def _type_name(schema: Any, key: str) -> str:
    from omegaconf import OmegaConf

    parent, _, leaf = key.rpartition(".")
    node = schema if not parent else OmegaConf.select(schema, parent)
    ref = node._get_node(leaf)
    t = getattr(ref, "_metadata", None)
    name = getattr(getattr(t, "ref_type", None), "__name__", None) or str(getattr(t, "ref_type", "value"))
    name = name.replace("typing.", "").replace("Optional[", "null or ").rstrip("]")
    return {"int": "integer", "float": "number", "bool": "true/false", "str": "string"}.get(name, name)

