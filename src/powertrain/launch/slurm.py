"""Catch a Slurm sweep that cannot run before anything is submitted: one line on stderr, exit code 2.

Two checks, because they can happen at two different times:

* ``check_launcher_argv`` (called by ``powertrain.__main__.main`` before Hydra starts): an unknown
  ``hydra.launcher.<key>`` override. Hydra would refuse it too, but with a multi-line "Key 'nope' not in
  'SlurmQueueConf'" message and exit code 1.
* ``SlurmCheck`` (a Hydra callback, ``hydra.callbacks.slurm_check`` in conf/config.yaml): in
  ``on_multirun_start``, when the launcher is submitit's Slurm launcher (or powertrain's subclass), ask
  ``sinfo`` whether the partition exists and whether any of its nodes has the CPUs, the memory and the
  time limit asked for. Otherwise ``sbatch`` fails inside the launcher with a submitit traceback (on a
  cluster with ``EnforcePartLimits``) or, elsewhere, the array pends forever with reason
  ``PartitionConfig``/``Resources``. ``sys.exit(2)`` passes through Hydra's ``run_and_report``, which
  only catches ``Exception``.

Without ``sinfo`` (submitting from a machine without Slurm client tools) or when it does not answer in
``SINFO_TIMEOUT_S``, the callback warns and lets ``sbatch`` decide. A controller that cannot be reached
("Unable to contact slurm controller") is refused in one line with exit 2: ``sbatch`` would fail the same
way, in a 40-line submitit traceback. A submission that fails anyway (``PowertrainSlurmLauncher``) is one
line and exit 2 as well: nothing was submitted.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback

from powertrain.config import ConfigError
from powertrain.config.errors import did_you_mean

log = logging.getLogger("powertrain")
SINFO_TIMEOUT_S = 10.0
# The launcher configs' structured bases in hydra-submitit-launcher / Hydra, by config name.
_BASES = {"submitit_slurm": "SlurmQueueConf", "submitit_local": "LocalQueueConf", "basic": "BasicLauncherConf"}


# ------------------------------------------------------------------------------- launcher keys (argv)


def _base_of(name: str, conf_dir: Path, depth: int = 0) -> Optional[str]:
    """The structured base (a key of ``_BASES``) that launcher config ``name`` extends, or None."""
    if name in _BASES:
        return name
    path = conf_dir / "hydra" / "launcher" / f"{name}.yaml"
    if depth > 8 or not path.is_file():
        return None
    import yaml

    try:
        defaults = (yaml.safe_load(path.read_text()) or {}).get("defaults") or []
    except yaml.YAMLError:
        return None
    for d in defaults:
        if isinstance(d, str) and d != "_self_":
            base = _base_of(d, conf_dir, depth + 1)
            if base:
                return base
    return None


def launcher_keys(name: str, conf_dir: Optional[Path] = None) -> Optional[tuple[str, ...]]:
    """The keys launcher config ``name`` accepts, or None if it is not one whose schema we know."""
    if conf_dir is None:
        from powertrain.config.paths import conf_dir as _conf_dir

        conf_dir = _conf_dir()
    base = _base_of(name, conf_dir)
    if base is None:
        return None
    if base == "basic":
        from hydra._internal.core_plugins.basic_launcher import BasicLauncherConf as conf_cls
    else:
        from hydra_plugins.hydra_submitit_launcher import config as submitit_config

        conf_cls = getattr(submitit_config, _BASES[base])
    return tuple(f.name for f in dataclasses.fields(conf_cls) if f.name != "_target_")


def check_launcher_argv(argv: list[str]) -> None:
    """Raise ConfigError for a ``hydra.launcher.<key>=...`` override the chosen launcher does not have."""
    name = "basic"
    for arg in argv:
        if arg.startswith("hydra/launcher="):
            name = arg.split("=", 1)[1]
    keys = None
    for arg in argv:
        m = re.match(r"^hydra\.launcher\.([^=.\[]+)", arg)  # plain overrides only: +/++ add keys on purpose
        if not m:
            continue
        if keys is None:
            keys = launcher_keys(name)
            if keys is None:
                return  # a launcher whose schema we do not know: Hydra checks it
        key = m.group(1)
        if key not in keys:
            hint = did_you_mean(key, keys)
            # the whole key list only when there is no close match: it is long for Slurm
            allowed = ("this launcher takes no settings" if not keys
                       else f"not a setting of hydra/launcher={name}{hint}" if hint
                       else f"not a setting of hydra/launcher={name}; one of {', '.join(keys)}")
            raise ConfigError(f"hydra.launcher.{key}", arg.split("=", 1)[1] if "=" in arg else None, allowed)


# ------------------------------------------------------------------------------- cluster (sinfo)


@dataclass
class Partition:
    name: str
    default: bool
    max_cpus: Optional[int]  # None: unknown ("32+" in sinfo is a lower bound)
    max_mem_mb: Optional[int]
    max_time_min: Optional[float]  # None: unlimited or unknown


def _int(v: str) -> Optional[int]:
    return int(v) if v.isdigit() else None


def parse_time_min(v: str) -> Optional[float]:
    """A Slurm time limit (``1-02:03:04``, ``4:00:00``, ``30:00``, ``infinite``) in minutes; None = no cap."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", v.strip())
    if not m:
        return None
    days, a, b, c = (int(x) if x else None for x in m.groups())
    if c is not None:  # [d-]h:m:s
        h, mi, s = a, b, c
    elif b is not None:  # d-h:m or m:s
        h, mi, s = (a, b, 0) if days is not None else (0, a, b)
    else:  # d-h or minutes
        h, mi, s = (a, 0, 0) if days is not None else (0, a, 0)
    return (days or 0) * 1440 + h * 60 + mi + s / 60


def parse_sinfo(text: str) -> dict[str, Partition]:
    """``sinfo -h -o '%P %c %m %l'`` -> partitions (the largest node of each, over its lines)."""
    parts: dict[str, Partition] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        raw, cpus, mem, limit = fields[:4]
        name = raw.rstrip("*")
        p = parts.setdefault(name, Partition(name, raw.endswith("*"), 0, 0, parse_time_min(limit)))
        for attr, value in (("max_cpus", _int(cpus)), ("max_mem_mb", _int(mem))):
            current = getattr(p, attr)
            setattr(p, attr, None if value is None or current is None else max(current, value))
    return parts


def check_request(parts: dict[str, Partition], partition: Optional[str], cpus_per_task: Optional[int],
                  mem_gb: Optional[float], timeout_min: Optional[float]) -> None:
    """Raise ConfigError if no node of the partition can run one task of this request."""
    if partition is None:
        p = next((p for p in parts.values() if p.default), None)
        if p is None:
            return  # no default partition: sbatch will say so
    else:
        # a comma list submits to whichever partition fits first: check the first one that exists
        names = [n for n in str(partition).split(",") if n]
        known = [n for n in names if n in parts]
        if not known:
            raise ConfigError("hydra.launcher.partition", partition,
                              f"a partition of this cluster (sinfo: {', '.join(sorted(parts)) or 'none'})")
        p = parts[known[0]]
    where = f"partition {p.name}"
    if cpus_per_task is not None and p.max_cpus is not None and cpus_per_task > p.max_cpus:
        raise ConfigError("hydra.launcher.cpus_per_task", cpus_per_task,
                          f"at most {p.max_cpus}, the most CPUs of a node in {where}")
    if mem_gb is not None and p.max_mem_mb is not None and mem_gb * 1024 > p.max_mem_mb:
        raise ConfigError("hydra.launcher.mem_gb", mem_gb,
                          f"at most {p.max_mem_mb / 1024:.1f}, the most memory (GB) of a node in {where}")
    if timeout_min is not None and p.max_time_min is not None and timeout_min > p.max_time_min:
        raise ConfigError("hydra.launcher.timeout_min", timeout_min,
                          f"at most {p.max_time_min:g}, the time limit (min) of {where}")


def query_sinfo(timeout_s: float = SINFO_TIMEOUT_S, launcher_name: str = "slurm") -> Optional[str]:
    """sinfo's partition lines, or None (with a warning) when there is no answer to check against.

    Raises:
        ConfigError: the controller cannot be reached (sbatch would fail too).
    """
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%P %c %m %l"], capture_output=True, text=True,
                              timeout=timeout_s)
    except FileNotFoundError:
        log.warning("slurm_check: no sinfo on this machine; partition/CPU/memory/time not checked before "
                    "submitting")
        return None
    except subprocess.TimeoutExpired:
        log.warning("slurm_check: sinfo did not answer in %.0f s; not checked before submitting", timeout_s)
        return None
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        if controller_down(err):
            raise ConfigError("hydra/launcher", launcher_name, f"a Slurm cluster whose controller answers (sinfo: "
                              f"{err.strip()}; is slurmctld up, and SLURM_CONF right?); nothing was submitted")
        log.warning("slurm_check: sinfo failed (%s); not checked before submitting", err)
        return None
    return proc.stdout


def controller_down(message: str) -> bool:
    """Whether a Slurm client's error says the controller could not be reached."""
    text = message.lower()
    return "unable to contact slurm controller" in text or "slurm_persist_conn_open" in text


def submission_error(err: BaseException) -> str:
    """The one line of a failed ``sbatch`` (submitit's ``FailedJobError`` holds its whole stderr)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[-1] if lines else type(err).__name__


def is_slurm_launcher(launcher: Any) -> bool:
    target = str(launcher.get("_target_", "")) if launcher is not None else ""
    return target.endswith("SlurmLauncher")


def swept_names(overrides: list[str]) -> dict[str, list[str]]:
    """Every ``model.family`` and ``dataset.name`` the sweep's task overrides give, parsed as Hydra parses
    them (``a,b``, ``choice(a,b)``, a list value)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from powertrain.compose.overrides import override_values

    names: dict[str, list[str]] = {"model.family": [], "dataset.name": []}
    for ov in OverridesParser.create().parse_overrides(overrides):
        if ov.key_or_group in names:
            for value in override_values(ov):
                names[ov.key_or_group] += [str(v) for v in (value if isinstance(value, list) else [value])]
    return names


def _check_plugins(config: Any) -> None:
    """A model or dataset registered only in the submitting process would be unknown to the Slurm tasks:
    one line and exit 2 before anything is submitted (``run.build.check_plugins_reach``)."""
    from omegaconf import OmegaConf

    from powertrain.run.build import check_plugins_reach

    if OmegaConf.select(config, "model") is None or OmegaConf.select(config, "dataset") is None:
        return  # not a powertrain run config (a launcher-only config in a test)
    names = swept_names([str(o) for o in OmegaConf.select(config, "hydra.overrides.task", default=None) or []])
    try:
        check_plugins_reach(config, "the Slurm tasks", tuple(names["model.family"]), tuple(names["dataset.name"]))
    except ConfigError as e:
        print(f"powertrain: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


class SlurmCheck(Callback):
    """Before a multirun under the Slurm launcher: refuse a request no node of the partition can run."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        launcher = config.hydra.get("launcher")
        if not is_slurm_launcher(launcher):
            return
        try:
            from omegaconf import OmegaConf

            _check_plugins(config)  # a name registered only in this process never reaches the tasks
            name = OmegaConf.select(config, "hydra.runtime.choices", default=None) or {}
            text = query_sinfo(launcher_name=str(name.get("hydra/launcher", "slurm")))
            if text is None:
                return
            check_request(parse_sinfo(text), launcher.get("partition"), launcher.get("cpus_per_task"),
                          launcher.get("mem_gb"), launcher.get("timeout_min"))
        except ConfigError as e:
            # one line and exit 2, as every other bad input; nothing has been submitted yet
            print(f"powertrain: error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)
