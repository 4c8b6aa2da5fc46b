"""Check command-line overrides against the schema before Hydra composes or launches anything.

Hydra would report a wrong type in several lines and exit 1, and in a multirun only after the sweep
started. Here every value of every override (each element of a sweep ``a,b,c`` too) is type-checked
against the ``RunConfig`` schema and range-checked with ``config.CHECKS``, and the first bad one becomes
a one-line ``ConfigError``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

from powertrain.compose.validate import check_value
from powertrain.compose.validate import schema as run_schema
from powertrain.config import CHOICE_GROUPS
from powertrain.config.errors import ConfigError, did_you_mean, one_of_message, type_name


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


def override_values(override: Any) -> Iterable[Any]:
    """The values a parsed override gives its key: one, or each of a choice or range sweep (none for an
    interval or glob, whose values the sweeper samples)."""
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


def _last_choice(parsed: list[Any], group: str) -> Optional[str]:
    values = [v for ov in parsed if ov.key_or_group == group and ov.package is None for v in override_values(ov)]
    return str(values[-1]) if values else None


def _preset(experiment: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """The study driver and the paradigm a conf/experiment preset chooses (None where it sets none)."""
    if experiment is None:
        return None, None
    from omegaconf import OmegaConf

    from powertrain.config.paths import conf_dir

    node = OmegaConf.load(conf_dir() / "experiment" / f"{experiment}.yaml")
    driver = OmegaConf.select(node, "study.driver", default=None)
    paradigm = None
    for entry in node.get("defaults") or []:
        if isinstance(entry, str) or not hasattr(entry, "items"):
            continue
        for k, v in entry.items():
            if str(k).split(" ")[-1].lstrip("/") == "paradigm":
                paradigm = str(v)
    return driver, paradigm


def hydra_args(argv: list[str]) -> Optional[Any]:
    """``argv`` parsed by Hydra's own argument parser (``.overrides``, ``.shell_completion``, ``.config_dir``,
    ...), so a flag's value (``-c job``, ``-cd DIR``, ``-sc install=bash``) is never taken for an override.
    None when Hydra would refuse the command line itself: then Hydra says why, as it always has."""
    import contextlib
    import io

    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    parser.exit_on_error = False  # Python >= 3.9: raise instead of printing usage and exiting
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            args, unknown = parser.parse_known_args(argv)
    except (Exception, SystemExit):  # e.g. --cfg with a bad choice: Hydra prints its own usage line
        return None
    return None if unknown else args


def other_configs(args: Any) -> bool:
    """Whether the command line adds or swaps config sources (``--config-dir``, ``--config-path``,
    ``--config-name``): group options and presets may then live outside conf/, so Hydra judges them."""
    return bool(args is not None and (args.config_dir or args.config_path or args.config_name))


def check_overrides(argv: list[str], other_sources: bool = False) -> None:
    """Raise ConfigError for the first override whose key is unknown or whose value is not allowed.

    ``argv`` holds the overrides (Hydra's flags taken out, see ``hydra_args``); ``other_sources``: the
    command line adds a config directory, so group options are not checked against conf/ alone.
    """
    args = [a for a in argv if "=" in a and not a.startswith("-")]
    if not args:
        return
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except Exception:
        raise _parse_error(args) from None
    # an extra search path may hold more group options than conf/ does: leave those to Hydra
    searchpath = other_sources or any(ov.key_or_group.startswith("hydra.searchpath") for ov in parsed)
    for ov in parsed:
        if ov.key_or_group in CHOICE_GROUPS and ov.package is None and not searchpath and not ov.is_delete():
            _check_group_option(ov.key_or_group, ov)
        elif ov.key_or_group.startswith("hydra/") and ov.package is None and not searchpath and not ov.is_delete():
            _check_group_option(ov.key_or_group, ov, _hydra_options(ov.key_or_group))
    experiment = _last_choice(parsed, "experiment")
    # a preset of conf/experiment is read with a search path too (its study.* keys are checked against it)
    shipped = experiment is not None and _shipped_preset(experiment)
    driver, preset_paradigm = _preset(experiment) if not searchpath or shipped else (None, None)
    if experiment is not None and driver is None and not searchpath:
        from powertrain.studies import STUDIES

        raise ConfigError("experiment", experiment, "a study preset that sets study.driver (one of "
                          f"{', '.join(STUDIES)}; see conf/experiment/*.yaml)")
    driver = _last_choice(parsed, "study.driver") or driver
    paradigm = _last_choice(parsed, "paradigm") or preset_paradigm or "scratch"
    schema = run_schema(paradigm, driver)
    known = None
    for ov in parsed:
        key = ov.key_or_group
        if ov.package is not None or key.startswith("hydra") or ov.is_delete() or key in CHOICE_GROUPS:
            continue
        if OmegaConf.select(schema, key, throw_on_missing=False, default="__absent__") == "__absent__":
            if ov.is_add() and _own_argument(key):
                continue  # +model.width=64: an argument of the user's model, checked against it by validate
            # also for +key=value: Hydra would append the key and nothing would read it
            known = known or _flat_keys(schema)
            value = ov.input_line.split("=", 1)[1] if ov.input_line else ""
            hint = f"; an argument of your own model or dataset: +{key}={value}" if _own_argument(key) else ""
            raise ConfigError(key, value, f"an existing config key{did_you_mean(key, known, quote=False)}{hint}")
        for value in override_values(ov):
            # the schema itself is the probe: keys are checked independently, and building a fresh
            # structured config per value costs ~30 ms of start-up each
            try:
                OmegaConf.update(schema, key, value, merge=True)
            except (OmegaConfBaseException, OverflowError, ValueError) as e:
                raise ConfigError(key, value, f"a value of type {_type_name(schema, key)}"
                                  + (" within its range" if "too large" in str(e) else "")) from None
            try:  # an interpolation (${oc.env:X}) is resolved here, as the run would resolve it
                resolved = OmegaConf.select(schema, key)
            except OmegaConfBaseException as e:
                raise ConfigError(key, value, f"an interpolation that resolves to a value of type "
                                  f"{_type_name(schema, key)} ({_interpolation_problem(e)})") from None
            check_value(key, resolved)
            _check_number(key, value, resolved)


def _shipped_preset(experiment: str) -> bool:
    from powertrain.config.paths import conf_dir

    return (conf_dir() / "experiment" / f"{experiment}.yaml").is_file()


def _own_argument(key: str) -> bool:
    """``model.<name>`` / ``dataset.<name>``: where the arguments of the user's callable sit."""
    group, _, name = key.partition(".")
    return group in ("model", "dataset") and bool(name)


def _check_group_option(group: str, override: Any, options: Optional[tuple[str, ...]] = None) -> None:
    """Hydra reports an unknown group option in many lines with exit 1; make it one line (exit 2)."""
    from powertrain.config.paths import group_options

    if options is None:
        options = group_options(group)
    for value in override_values(override):
        if value not in options and not (group == "experiment" and value is None):
            raise ConfigError(group, value, one_of_message(value, options))


def _type_name(schema: Any, key: str) -> str:
    from omegaconf import OmegaConf

    parent, _, leaf = key.rpartition(".")
    node = schema if not parent else OmegaConf.select(schema, parent)
    ref = node._get_node(leaf)
    t = getattr(ref, "_metadata", None)
    return type_name(getattr(getattr(t, "ref_type", None), "__name__", None) or str(getattr(t, "ref_type", "value")))



def _hydra_options(group: str) -> tuple[str, ...]:
    """The options of a Hydra group (``hydra/launcher``, ``hydra/sweeper``, ...): powertrain's conf/, Hydra's
    own conf/ and every plugin's ConfigStore entries (the plugin scan Hydra runs at start anyway)."""
    import hydra
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    from powertrain.config.paths import conf_dir

    Plugins.instance()  # imports hydra_plugins.*: each registers its configs
    node: Any = ConfigStore.instance().repo
    for part in group.split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    names = {k[: -len(".yaml")] for k in node if k.endswith(".yaml")} if isinstance(node, dict) else set()
    for root in (conf_dir(), Path(hydra.__file__).parent / "conf"):
        names |= {p.stem for p in (root / group).glob("*.yaml")}
    return tuple(sorted(names))


def _parse_error(args: list[str]) -> ConfigError:
    """One line for the first override Hydra's grammar refuses (with a hint to quote non-ASCII text)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for arg in args:
        try:
            parser.parse_overrides([arg])
        except Exception as e:
            key, _, value = arg.partition("=")
            if not value.isascii():
                return ConfigError(key, value, f"a value in quotes when it holds characters beyond ASCII: "
                                   f"{key}='{value}' (quote it for the shell too: \"{key}='{value}'\")")
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            return ConfigError(key, value, f"an override Hydra can parse ({why}; see "
                               "https://hydra.cc/docs/advanced/override_grammar/basic)")
    return ConfigError("overrides", " ".join(args), "overrides Hydra can parse together")


def _interpolation_problem(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    for prefix in ("KeyError raised while resolving interpolation: ", "While dereferencing interpolation "):
        text = text.replace(prefix, "")
    return text.strip().strip('"')


INT64 = 2**63


def _check_number(key: str, given: Any, value: Any) -> None:
    """Numbers PyTorch, JSON and numpy can hold: 64-bit integers and finite floats."""
    if isinstance(value, bool):
        return
    if isinstance(value, int) and not -INT64 <= value < INT64:
        raise ConfigError(key, given, "an integer that fits in 64 bits (|value| < 2**63)")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(key, given, "a finite number")
