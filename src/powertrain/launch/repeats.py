"""Repeated runs in a ``-m`` sweep: the job order, the sweeper's settings and the command-line checks.

``hydra/sweeper=powertrain`` (conf/config.yaml's default; the plugin is ``hydra_plugins.
powertrain_repeat_sweeper``) is Hydra's basic sweeper plus three things:

- ``repeats=N`` runs every job of the grid N times, in rounds: round r is the whole job list rotated by r
  places (A B C, B C A, C A B, ...), not N copies of A then N of B, so that slow drift in machine load
  hits every job alike. Each run records which repeat it is (``repeat=r``, a config key the report treats
  as a label, like the seed). The seed stays as given: the repeats are identical runs, and their spread
  is the run-to-run noise of the machine.
- A swept ``seed=0,1,2`` is a round axis too (the report already treats the seed as a repeat, not a
  factor): the grid runs once per seed, rotated the same way, instead of every seed of one job in a row.
- ``hydra.sweeper.variants=[[k=v,...],...]`` lists jobs explicitly (each an override list, crossed with
  the command-line grid; a variant's keys win): a study's one-factor-at-a-time variants, which are no
  Cartesian product, run as one in-process sweep instead of one process each.

With ``repeats=1``, no swept seed and no variants, the jobs and their order are the basic sweeper's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from powertrain.config.errors import ConfigError
from powertrain.studies._common import interleave

SWEEPER = "powertrain"  # hydra/sweeper=<this>


@dataclass
class RepeatSweeperConf:
    """``hydra/sweeper=powertrain``: the basic sweeper's keys plus ``variants``."""

    _target_: str = "hydra_plugins.powertrain_repeat_sweeper.repeat_sweeper.RepeatSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[dict[str, str]] = None
    variants: Optional[list[list[str]]] = None  # explicit jobs (override lists), crossed with the grid


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def plan(grid: list[list[str]], seeds: list[str], repeats: int,
         variants: Optional[list[list[str]]] = None) -> list[list[str]]:
    """Every job's overrides, in run order.

    Args:
        grid: the basic sweeper's Cartesian product (without a swept seed), one override list per job.
        seeds: ``seed=<v>`` for each value of a swept seed ([] when the seed is not swept).
        repeats: runs of every (job, seed).
        variants: explicit jobs, each crossed with every grid job (its keys replace the grid job's).

    Returns:
        One override list per run: rounds over (repeat, seed), each the job list rotated by its index,
        with ``seed=<v>`` and (repeats > 1) ``repeat=<r>`` appended.
    """
    jobs = grid
    if variants:
        jobs = [[*(o for o in job if _key(o) not in {_key(v) for v in variant}), *variant]
                for variant in variants for job in grid]
    rounds = [(r, s) for r in range(repeats) for s in (seeds or [None])]
    out = []
    for k, job in interleave(jobs, len(rounds)):
        r, seed = rounds[k]
        out.append([*job, *([seed] if seed else []), *([f"repeat={r}"] if repeats > 1 else [])])
    return out


def check_argv(argv: list[str], multirun: Optional[bool] = None) -> None:
    """One-line ConfigError for ``repeats=`` where it cannot work, before Hydra starts anything.

    ``multirun``: whether the command line asks for one (read from ``-m``/``--multirun`` in ``argv`` when
    None; the entry point passes it, having parsed Hydra's flags off the overrides)."""
    args = [a for a in argv if "=" in a and not a.startswith("-")]
    given = [a.partition("=")[2] for a in args if _key(a) == "repeats"]
    if not given:
        return
    value = given[-1]
    try:
        n = int(value)
    except ValueError:
        raise ConfigError("repeats", value, "one integer >= 1 (every job of the sweep runs that many "
                          "times); it cannot be swept") from None
    if n == 1:
        return
    if multirun is None:
        multirun = any(a in ("-m", "--multirun") for a in argv)
    sweeper = next((a.partition("=")[2] for a in reversed(args) if _key(a) == "hydra/sweeper"), SWEEPER)
    experiment = any(_key(a) == "experiment" for a in args)
    part = any(_key(a) == "study.part" for a in args)
    if experiment and not part:
        raise ConfigError("repeats", n, f"1 with a study preset (set study.repeats={n}: the study repeats "
                          "its variants itself)")
    if not multirun:
        raise ConfigError("repeats", n, "1 for a single run (repeats repeat the jobs of a sweep: add -m)")
    if sweeper != SWEEPER:
        raise ConfigError("repeats", n, f"1 with hydra/sweeper={sweeper} (only hydra/sweeper={SWEEPER}, the "
                          "default, repeats jobs; an Optuna search repeats as whole searches with another "
                          "hydra.sweeper.seed)")


def sweep_repeats(config: Any) -> int:
    """``repeats`` of a composed sweep config (1 when absent)."""
    try:
        return max(1, int(config.get("repeats", 1) or 1))
    except (TypeError, ValueError):
        return 1
