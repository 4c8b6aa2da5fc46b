"""Optuna search on current Optuna: search space, samplers, objectives, and the checks done before launch.

The Hydra sweeper plugin (``hydra_plugins.powertrain_optuna_sweeper``) is a thin shell around this
module; everything here takes plain values so it can be checked before Hydra starts (``check_argv``, one
line and exit 2 for a bad sampler, an unknown sweeper key, or a search space that does not parse) and
tested without a sweep. optuna is imported inside the functions that need it.

Search space, in Hydra's override syntax (in ``hydra.sweeper.params`` or on the command line):
``choice(a,b)`` / ``a,b`` -> categorical; ``range(1,5)`` -> integers (Python range); ``interval(lo,hi)``
-> float (int if both bounds are ints or tagged ``int``); ``tag(log, interval(lo,hi))`` -> log scale.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from powertrain.config import ConfigError
from powertrain.config.errors import did_you_mean, one_of_message

SAMPLERS = ("grid", "random", "tpe", "gp", "nsga2")
DIRECTIONS = ("maximize", "minimize")


@dataclass
class OptunaSweeperConf:
    """``hydra/sweeper=optuna``: every key is type-checked by Hydra and value-checked by ``check_conf``."""

    _target_: str = "hydra_plugins.powertrain_optuna_sweeper.optuna_sweeper.PowertrainOptunaSweeper"
    sampler: str = "tpe"  # grid | random | tpe | gp | nsga2
    n_trials: int = 20
    n_jobs: int = 1  # trials launched together per batch (a Slurm array per batch under the Slurm launcher)
    seed: Optional[int] = None
    n_startup_trials: Optional[int] = None  # tpe/gp: random trials before the model is used (None: Optuna's 10)
    objective: Any = "accuracy"  # a name of powertrain.report.OBJECTIVES, or a list of them
    direction: Any = None  # None = each objective's natural direction; or maximize|minimize (list)
    storage: Optional[str] = None  # sqlite file path or SQLAlchemy URL; None = in memory (not resumable)
    study_name: str = "powertrain"
    load_if_exists: bool = True  # with storage: continue the study of that name
    params: dict[str, str] = field(default_factory=dict)  # key -> search space expression
    # stop losing trials at an epoch's end (powertrain.run.prune); needs one objective. Without a storage the
    # study lives in <sweep_dir>/optuna_study.db, so trials in other processes or Slurm tasks reach it
    pruner: str = "none"  # none | median | successive_halving | hyperband
    pruner_startup_trials: int = 3  # median: trials that finish before any is pruned
    pruner_warmup_epochs: int = 1  # median: epochs before pruning; successive_halving/hyperband: min_resource


CONF_KEYS = tuple(f.name for f in dataclasses.fields(OptunaSweeperConf) if f.name != "_target_")


def as_list(v: Any) -> list[Any]:
    """A scalar or sequence (incl. an omegaconf ListConfig) as a plain list."""
    if v is None:
        return []
    if isinstance(v, (str, int, float)):
        return [v]
    return list(v)


def objectives_and_directions(objective: Any, direction: Any) -> tuple[list[str], list[str]]:
    """Checked objective names and one direction each (defaults from ``report.OBJECTIVES``)."""
    from powertrain.report import OBJECTIVES

    objs = [str(o) for o in as_list(objective)]
    if not objs:
        raise ConfigError("hydra.sweeper.objective", objective, "one or more of " + ", ".join(OBJECTIVES))
    for o in objs:
        if o not in OBJECTIVES:
            raise ConfigError("hydra.sweeper.objective", o, one_of_message(o, OBJECTIVES))
    dirs = [str(d) for d in as_list(direction)] or [OBJECTIVES[o][2] for o in objs]
    if len(dirs) != len(objs) or any(d not in DIRECTIONS for d in dirs):
        raise ConfigError("hydra.sweeper.direction", direction,
                          f"null, or maximize|minimize for each of the {len(objs)} objective(s)")
    return objs, dirs


def check_conf(conf: dict[str, Any]) -> None:
    """Value checks of the sweeper settings (types are Hydra's job)."""
    unknown = [k for k in conf if k not in CONF_KEYS and k != "_target_"]
    if unknown:
        raise ConfigError(f"hydra.sweeper.{unknown[0]}", conf[unknown[0]], "an optuna sweeper key: "
                          + ", ".join(CONF_KEYS) + did_you_mean(unknown[0], CONF_KEYS, quote=False))
    sampler = conf.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise ConfigError("hydra.sweeper.sampler", sampler, one_of_message(sampler, SAMPLERS))
    for key, low in (("n_trials", 1), ("n_jobs", 1), ("pruner_startup_trials", 0), ("pruner_warmup_epochs", 0)):
        v = conf.get(key, 1)
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise ConfigError(f"hydra.sweeper.{key}", v, f"an integer >= {low}")
    v = conf.get("n_startup_trials")
    if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
        raise ConfigError("hydra.sweeper.n_startup_trials", v, "null or an integer >= 0")
    objs, _ = objectives_and_directions(conf.get("objective", "accuracy"), conf.get("direction"))
    from powertrain.run.prune import PRUNERS

    pruner = conf.get("pruner", "none")
    if pruner not in PRUNERS:
        raise ConfigError("hydra.sweeper.pruner", pruner, one_of_message(pruner, PRUNERS))
    if pruner != "none" and len(objs) > 1:
        raise ConfigError("hydra.sweeper.pruner", pruner, "none with several objectives (Optuna prunes "
                          "single-objective studies only)")


# ------------------------------------------------------------------------------------ search space


@dataclass
class Param:
    """One searched key: an Optuna distribution, and for the grid sampler its explicit values."""

    key: str
    distribution: Any
    grid_values: Optional[list[Any]]  # None: continuous (interval), not usable by the grid sampler


def _check_bound(key: str, value: Any) -> None:
    from powertrain.compose.overrides import check_overrides

    if not key.startswith("hydra."):
        check_overrides([f"{key}={value}"])  # a bound the run would refuse fails now, not in every trial


def parse_param(key: str, override: Any) -> Optional[Param]:
    """The Param for a parsed Hydra override, or None if it is a fixed value (passed through as is)."""
    import optuna.distributions as od
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    if not override.is_sweep_override():
        return None
    v = override.value()
    tags = set(getattr(v, "tags", None) or ())
    if isinstance(v, ChoiceSweep):
        values = [_plain(key, x) for x in v.list]
        for x in values:
            _check_bound(key, x)
        return Param(key, od.CategoricalDistribution(values), values)
    if isinstance(v, RangeSweep):
        values = [_plain(key, x) for x in override.sweep_iterator()]
        if not values:
            raise ConfigError(key, override.input_line.split("=", 1)[-1], "a range with at least one value")
        for x in (values[0], values[-1]):
            _check_bound(key, x)
        if all(isinstance(x, int) for x in values):
            # range(5,1,-1) counts down: the distribution needs low <= high and a positive step
            step = abs(values[1] - values[0]) if len(values) > 1 else 1
            return Param(key, od.IntDistribution(min(values), max(values), step=step), values)
        return Param(key, od.CategoricalDistribution(values), values)
    if isinstance(v, IntervalSweep):
        lo, hi, log = v.start, v.end, "log" in tags
        if lo is None or hi is None or not lo < hi:
            raise ConfigError(key, f"interval({lo},{hi})", "an interval with low < high")
        if log and lo <= 0:
            raise ConfigError(key, f"interval({lo},{hi})", "a log-scale interval with low > 0")
        if "int" in tags or (isinstance(lo, int) and isinstance(hi, int)):
            # the integers inside the interval: bounds rounded inwards, then checked as the run will see them
            lo_i, hi_i = math.ceil(lo), math.floor(hi)
            if lo_i > hi_i:
                raise ConfigError(key, f"interval({lo},{hi})", "an int interval holding at least one integer")
            for x in (lo_i, hi_i):
                _check_bound(key, x)
            return Param(key, od.IntDistribution(lo_i, hi_i, log=log), None)
        for x in (lo, hi):
            _check_bound(key, x)
        return Param(key, od.FloatDistribution(float(lo), float(hi), log=log), None)
    raise ConfigError(key, override.input_line.split("=", 1)[-1],
                      "choice(...), a,b,c, range(...) or [tag(log,)] interval(...) for the optuna sweeper")


def _plain(key: str, x: Any) -> Any:
    if x is None or isinstance(x, (bool, int, float, str)):
        return x if not isinstance(x, float) or math.isfinite(x) else str(x)
    raise ConfigError(key, x, "a plain value (string, number, bool or null) in an optuna choice")


def build_space(params: dict[str, str], cli_overrides: list[str]) -> tuple[list[str], dict[str, Param]]:
    """Split overrides into fixed ones and the search space (``params``, then the command line, which wins).

    Returns:
        (fixed overrides passed to every trial, search space by key)

    Raises:
        ConfigError: a search-space expression that does not parse or holds a value the run refuses.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    lines = [f"{k}={v}" for k, v in params.items()] + list(cli_overrides)
    parsed = []
    for line in lines:
        try:
            parsed += parser.parse_overrides([line])
        except Exception as e:  # Hydra's grammar error is one clear line
            raise ConfigError(line.split("=", 1)[0], line.split("=", 1)[-1],
                              f"a search space Hydra can parse ({str(e).splitlines()[0]})") from None
    fixed: dict[str, str] = {}
    space: dict[str, Param] = {}
    for ov in parsed:
        key = ov.get_key_element()
        p = parse_param(key, ov)
        if p is None:
            fixed[key] = ov.input_line
            space.pop(key, None)
        else:
            space[key] = p
            fixed.pop(key, None)
    return list(fixed.values()), space


def trial_overrides(fixed: list[str], params: dict[str, Any]) -> list[str]:
    """The Hydra overrides of one trial: the fixed ones plus ``key=value`` for each sampled value."""
    out = list(fixed)
    for k, v in params.items():
        if v is None:
            out.append(f"{k}=null")
        elif isinstance(v, float):
            out.append(f"{k}={v!r}")
        elif isinstance(v, str) and any(c in v for c in " ,()[]{}'\"=\\"):
            # quote so Hydra's grammar keeps it one string; a quote inside is escaped with a backslash
            out.append("{}='{}'".format(k, v.replace("'", "\\'")))
        else:
            out.append(f"{k}={str(v).lower() if isinstance(v, bool) else v}")
    return out


def build_sampler(name: str, seed: Optional[int], space: dict[str, Param], n_objectives: int,
                  n_startup_trials: Optional[int] = None) -> Any:
    """An Optuna sampler by name; grid needs explicit values for every searched key."""
    import optuna

    # a short search (a smoke study's 10 rounds) needs fewer random start-up trials than Optuna's 10, or
    # TPE and GP never get to model anything and repeat what random search does with the same seed
    startup = {} if n_startup_trials is None else {"n_startup_trials": n_startup_trials}

    if name == "grid":
        continuous = [k for k, p in space.items() if p.grid_values is None]
        if continuous:
            raise ConfigError(continuous[0], "interval(...)",
                              "explicit values (choice(...), a,b,c or range(...)) with sampler=grid")
        return optuna.samplers.GridSampler({k: p.grid_values for k, p in space.items()}, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **startup)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, **startup)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    raise ConfigError("hydra.sweeper.sampler", name, "one of " + ", ".join(SAMPLERS))


def grid_size(space: dict[str, Param]) -> int:
    return math.prod(len(p.grid_values or []) for p in space.values())


def storage_url(storage: Optional[str]) -> Optional[str]:
    """A SQLAlchemy URL for ``storage``: a plain path becomes an absolute sqlite file."""
    if not storage:
        return None
    if "://" in storage:
        return storage
    path = Path(storage).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


# ------------------------------------------------------------------------------ before Hydra starts


def check_argv(argv: list[str]) -> None:
    """One-line ConfigError for bad optuna sweeper input on the command line, before anything launches.

    Only acts when ``hydra/sweeper=optuna`` is on the command line; a sweeper chosen in a config file is
    checked by the sweeper itself before its first trial.
    """
    args = [a for a in argv if "=" in a and not a.startswith("-")]
    if "hydra/sweeper=optuna" not in args:
        return
    predict = [a.partition("=")[2] for a in args if a.lstrip("+").startswith("predict=")]
    if predict and predict[-1].lower() not in ("false", "0", "no", "off"):
        raise ConfigError("predict", predict[-1], "false with hydra/sweeper=optuna (it picks each trial from "
                          "the results before it; predict a grid of the same values with the basic sweeper)")
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    conf: dict[str, Any] = {}
    params: dict[str, str] = {}
    searched: list[str] = []
    for a in args:
        key, _, raw = a.partition("=")
        key = key.lstrip("+~")
        if key.startswith("hydra.sweeper.params."):
            params[key[len("hydra.sweeper.params."):]] = raw
        elif key.startswith("hydra.sweeper."):
            name = key[len("hydra.sweeper."):]
            try:
                conf[name] = parser.parse_overrides([a])[0].value()
            except Exception as e:
                raise ConfigError(key, raw, f"a value Hydra can parse ({str(e).splitlines()[0]})") from None
        elif not key.startswith("hydra") and "/" not in key and not key.startswith("-"):
            searched.append(a)
    check_conf(conf)
    _, space = build_space(params, searched)  # as the sweeper splits them: fixed values pass through
    if conf.get("sampler") == "grid":
        build_sampler("grid", None, space, 1)
