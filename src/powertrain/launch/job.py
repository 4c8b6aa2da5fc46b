"""``powertrain.run_job``: one run from Python (a notebook), composed exactly as the command line does.

Not called ``run``: ``powertrain.run`` is the subpackage that trains a validated config, and a function of
that name in ``powertrain/__init__.py`` would be replaced by the subpackage the moment anything imports
``powertrain.run`` (Python sets a package's submodules as its attributes).
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, Optional, Union

from powertrain.config.errors import ConfigError


def _one_job(overrides: list[str]) -> None:
    """Refuse what needs the command line: sweeps, launchers, study presets, predictions."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for ov in OverridesParser.create().parse_overrides(overrides):
        key = ov.key_or_group
        if ov.is_sweep_override():
            raise ConfigError(key, ov.input_line.split("=", 1)[1], "one value: run_job runs one job (a sweep is "
                              "`powertrain -m ...`)")
        if key.startswith("hydra") and not key.startswith("hydra.searchpath"):
            raise ConfigError(key, ov.input_line.split("=", 1)[1], "hydra.searchpath only (run_job takes run_dir "
                              "instead of hydra.run.dir; launchers run sweeps from the command line)")


def compose_config(*overrides: str) -> Any:
    """The config ``powertrain <overrides>`` composes (a DictConfig, before validation).

    Raises:
        ConfigError: an override the command line would refuse, in its one line.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from powertrain.compose.validate import register_configs
    from powertrain.config.paths import conf_dir
    from powertrain.launch.checks import check_argv

    args = list(overrides)
    check_argv(args, multirun=False)  # the command line's checks, as `powertrain <overrides>` without -m
    _one_job(args)
    register_configs()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return compose(config_name="config", overrides=args)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError("overrides", " ".join(args), str(e).strip().splitlines()[0]) from e


def run_job(*overrides: str, run_dir: Optional[Union[str, Path]] = None) -> dict[str, Any]:
    """Compose one run from command-line overrides, train it, and return its result (the dict written to
    ``run_dir/result.json``).

    ``powertrain.run_job("model=dense_poly", "max_epochs=2")`` is ``powertrain model=dense_poly
    max_epochs=2``: the same checks, the same config, the same result.json. Models and datasets
    registered in this process (``register_model`` in a notebook cell) are found; DDP ranks are separate
    processes and need ``plugins=[...]``.

    Args:
        overrides: as on the command line (``hydra.searchpath=[file://...]`` for a config dir of your own).
        run_dir: where the run writes; default ``outputs/<date>/<H-M-S>_<suffix>`` as the CLI, the suffix
            new for each call.

    Raises:
        ConfigError: bad input (the one line the CLI prints), before any work.
    """
    from omegaconf import OmegaConf

    from powertrain.compose.validate import validate
    from powertrain.config.paths import fresh_suffix
    from powertrain.run import run

    args = list(overrides)
    dcfg = compose_config(*args)
    cfg = validate(dcfg)
    if cfg.study.driver is not None:
        raise ConfigError("experiment", cfg.study.driver, "no study preset: a study runs its parts from the "
                          "command line (powertrain experiment=...)")
    if cfg.predict:
        raise ConfigError("predict", True, "false: predictions run from the command line (powertrain predict=true)")
    if run_dir is None:
        now = datetime.datetime.now()
        run_dir = Path("outputs") / f"{now:%Y-%m-%d}" / f"{now:%H-%M-%S}_{fresh_suffix()}"
    run_dir = Path(run_dir).resolve()
    if cfg.distributed.nproc_per_node > 1:
        from powertrain.launch.ddp import launch_local

        return launch_local(cfg, run_dir, args)
    return run(cfg, run_dir, args, config_dict=OmegaConf.to_container(dcfg, resolve=True))
