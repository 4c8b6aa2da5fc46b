"""The user's own code: importable paths resolved, callables called with the arguments they accept, and
plug-in modules imported.

Every route into powertrain for code it does not ship goes through here: a ``_target_`` in a model or
dataset config, ``task.loss`` / ``task.evaluate``, a name added with ``register_model`` /
``register_dataset`` or an installed package's entry point. So every route gets the same checks and the same
one-line errors: a path that does not import, a callable that rejects its arguments (with a did-you-mean
over the arguments it does take), a module named in ``plugins`` that fails to import.

A leaf module (imports only ``powertrain.config.errors``): the registries, data and models use it.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Optional

from powertrain.config.errors import ConfigError, did_you_mean, first_line

ENV_PLUGINS = "POWERTRAIN_PLUGINS"  # modules every powertrain process imports first (comma-separated)


def label(fn: Any) -> str:
    """``module.Name`` of a callable, for messages."""
    fn = getattr(fn, "func", fn)  # functools.partial
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


def _import_module(key: str, path: str, name: str) -> Any:
    """``importlib.import_module(name)``; ConfigError (naming ``key`` and ``path``) when it fails."""
    try:
        return importlib.import_module(name)
    except ConfigError:
        raise
    except Exception as e:  # a missing module, or an error inside the user's module: both are bad input
        raise ConfigError(key, path, f"an importable callable: importing {name} failed: {first_line(e)}") from e


def _longest_module(key: str, path: str, parts: list[str]) -> tuple[Any, list[str]]:
    """The longest importable prefix of ``parts`` as a module, and the attribute names after it."""
    for i in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:i])
        try:
            return importlib.import_module(name), parts[i:]
        except ModuleNotFoundError as e:
            # only "this module does not exist" means: try a shorter prefix; a module that exists but
            # imports something missing is the user's error to see
            if e.name is None or not (name == e.name or name.startswith(e.name + ".")):
                raise ConfigError(key, path, f"an importable callable: importing {name} failed: "
                                  f"{first_line(e)}") from e
        except ConfigError:
            raise
        except Exception as e:
            raise ConfigError(key, path, f"an importable callable: importing {name} failed: {first_line(e)}") from e
    raise ConfigError(key, path, f"an importable callable: no module named {parts[0]!r} "
                      "(is its folder on PYTHONPATH, or its package installed?)")


def resolve(key: str, path: Any) -> Callable[..., Any]:
    """The callable that ``path`` names: ``"pkg.mod.Name"`` or ``"pkg.mod:Name"`` (nested attributes allowed).

    Raises:
        ConfigError: naming ``key`` and ``path`` when the module does not import, the attribute is missing
            (with a did-you-mean over the module's names) or the object is not callable.
    """
    if not isinstance(path, str) or not path.strip() or path.strip(".:") != path or " " in path:
        raise ConfigError(key, path, "an importable callable such as mylab.nets.MyNet or mylab.nets:MyNet")
    if ":" in path:
        module_name, _, attr_path = path.partition(":")
        obj, attrs = _import_module(key, path, module_name), attr_path.split(".")
    else:
        parts = path.split(".")
        if len(parts) < 2:
            raise ConfigError(key, path, "a dotted path module.Name (a bare name cannot be imported)")
        obj, attrs = _longest_module(key, path, parts)
    for attr in attrs:
        if not hasattr(obj, attr):
            names = [n for n in dir(obj) if not n.startswith("_")]
            where = getattr(obj, "__name__", type(obj).__name__)
            raise ConfigError(key, path, f"an importable callable: {where} has no attribute {attr!r}"
                              f"{did_you_mean(attr, names)}")
        obj = getattr(obj, attr)
    if not callable(obj):
        raise ConfigError(key, path, f"a callable ({path} is a {type(obj).__name__})")
    return obj


def parameters(fn: Callable[..., Any]) -> tuple[Optional[list[inspect.Parameter]], bool]:
    """``fn``'s keyword-passable parameters and whether it takes ``**kwargs`` (None: no signature known)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins and C extensions have none
        return None, True
    named = [p for p in sig.parameters.values()
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    return named, var_kw


def arguments(key: str, target: str, fn: Callable[..., Any], given: Mapping[str, Any],
              offered: Mapping[str, Any], arg_prefix: str,
              fields: Optional[Mapping[str, tuple[Any, Any]]] = None, kept: Iterable[str] = ()) -> dict[str, Any]:
    """The keyword arguments for ``fn``.

    Args:
        given: the user's own arguments (the keys beside ``_target_``): always passed.
        offered: what powertrain knows (the data's shape): passed when ``fn`` names it.
        fields: schema fields ``name -> (value, default)`` a callable may also take (``model.dropout``,
            ``dataset.noise``): passed when ``fn`` names them and they are set away from their default or
            ``fn`` requires them; at their default ``fn``'s own default applies. Set away from its default
            for an ``fn`` that does not name it, a field is refused (it would be silently ignored), unless
            powertrain itself uses it (``kept``).

    Raises:
        ConfigError: a given argument or set field ``fn`` does not take (at ``<arg_prefix>.<name>``, with a
            did-you-mean), or a required parameter that nothing provides (at ``key``).
    """
    params, var_kw = parameters(fn)
    if params is None:
        return dict(given)
    names = [p.name for p in params]
    required = {p.name for p in params if p.default is inspect.Parameter.empty}
    takes = ", ".join(names) or "no keyword arguments"
    if not var_kw:
        for name, value in given.items():
            if name not in names:
                raise ConfigError(f"{arg_prefix}.{name}", value, f"an argument {target} takes ({takes})"
                                  f"{did_you_mean(name, names)}")
    kwargs = dict(given)
    kwargs.update({k: v for k, v in offered.items() if k in names and k not in given})
    for name, (value, default) in (fields or {}).items():
        changed = value != default
        if name in names and name not in kwargs and (changed or name in required):
            kwargs[name] = value
        elif changed and name not in names and name not in kept and not var_kw:
            raise ConfigError(f"{arg_prefix}.{name}", value, f"its default ({default}) for {target}, which "
                              f"takes no {name} argument ({takes})")
    missing = [n for n in names if n in required and n not in kwargs]
    if missing:
        offers = ", ".join([*offered, *(fields or {})]) or "nothing"
        raise ConfigError(key, target, f"a callable whose required arguments are all given: it needs "
                          f"{', '.join(missing)} (set +{arg_prefix}.{missing[0]}=...; powertrain passes the "
                          f"ones it names of: {offers})")
    return kwargs


def call(key: str, target: str, fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    """``fn(**kwargs)``; whatever it raises (it refused its arguments, or failed building) becomes one
    ConfigError naming ``key``, ``target`` and the error (``HYDRA_FULL_ERROR=1`` shows the traceback)."""
    try:
        return fn(**kwargs)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(key, target, f"a callable that builds with these arguments "
                          f"({', '.join(sorted(kwargs)) or 'none'}): {first_line(e)}") from e


# ----------------------------------------------------------------------------------------- plug-ins


def plugin_names(extra: Iterable[str] = (), environ: Optional[Mapping[str, str]] = None) -> list[str]:
    """The plug-in modules of this process: ``$POWERTRAIN_PLUGINS`` (comma-separated) then ``extra``."""
    env = os.environ if environ is None else environ
    names = [n.strip() for n in env.get(ENV_PLUGINS, "").replace(";", ",").split(",")]
    return list(dict.fromkeys(n for n in [*names, *map(str, extra)] if n))


def import_plugins(names: Iterable[str], key: str = "plugins") -> None:
    """Import each module (where the user's ``register_model`` / ``register_dataset`` calls live).

    Raises:
        ConfigError: naming the module that does not import and why.
    """
    for name in names:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except ConfigError:
            raise
        except Exception as e:
            raise ConfigError(key, name, f"an importable module (a plug-in): {first_line(e)}") from e


def import_env_plugins() -> None:
    """The modules ``$POWERTRAIN_PLUGINS`` names (the key of the error is the variable)."""
    import_plugins(plugin_names(), key=ENV_PLUGINS)


def plugins_in_argv(argv: Iterable[str]) -> list[str]:
    """The modules a ``plugins=[a,b]`` (or ``+plugins=a``) override names, read before Hydra composes:
    the command-line checks need the plug-ins' names registered."""
    names: list[str] = []
    for arg in argv:
        key, eq, value = arg.lstrip("+").partition("=")
        if eq and key == "plugins":
            names += [v.strip().strip("'\"") for v in value.strip().strip("[]").split(",") if v.strip()]
    return names
