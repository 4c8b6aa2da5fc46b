"""Entry point: ``python -m powertrain [overrides]`` (or the ``powertrain`` console script).

Thin on purpose: check the command-line overrides, let Hydra compose the config, validate it once, and
hand a typed ``RunConfig`` to ``powertrain.run.run``. Bad input exits with code 2 and one line on stderr,
before any data is loaded (set HYDRA_FULL_ERROR=1 for a traceback).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from powertrain.config import ConfigError


def _fail(err: ConfigError | str) -> None:
    if os.environ.get("HYDRA_FULL_ERROR") == "1" and isinstance(err, BaseException):
        raise err
    print(f"powertrain: error: {err}", file=sys.stderr, flush=True)
    sys.exit(2)


def _bad_input(err: ConfigError, multirun: bool) -> dict[str, Any]:
    """One line on stderr; a single run exits 2, a multirun job becomes a failed row and the sweep goes on."""
    if not multirun:
        _fail(err)
    print(f"powertrain: error: {err}", file=sys.stderr, flush=True)
    return {"status": "failed", "error": str(err)}


def task(dcfg: Any) -> Any:
    """The Hydra task function: one job of a run or a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from powertrain.config import validate
    from powertrain.results import exit_code, write_failed
    from powertrain.run import run

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    overrides = list(hc.overrides.task)
    multirun = hc.mode == RunMode.MULTIRUN
    sweep_id = None
    if multirun:
        sweep_id = os.path.relpath(hc.sweep.dir, "multirun") if not os.path.isabs(hc.sweep.dir) else hc.sweep.dir
    config_dict = OmegaConf.to_container(dcfg, resolve=True)
    try:
        cfg = validate(dcfg)
    except ConfigError as e:
        # no result.json claiming success: the run is recorded as failed with the one-line reason
        write_failed(run_dir, overrides, str(e), config_dict)
        return _bad_input(e, multirun)
    from powertrain.experiments import DRIVERS

    experiment = hc.runtime.choices.get("experiment")
    try:
        if experiment in DRIVERS:  # a preset that is several runs: its driver runs them into run_dir/<part>
            summary = DRIVERS[experiment](cfg, run_dir, overrides, sweep_id)
            if not multirun and summary["status"] != "completed":
                sys.exit(1)
            return {"status": summary["status"], "dir": str(run_dir)}
        result = run(cfg, run_dir, overrides, sweep_id=sweep_id, config_dict=config_dict)
    except ConfigError as e:  # found while building (e.g. a dataset root without the files)
        return _bad_input(e, multirun)
    if not multirun:
        code = exit_code(result["status"])
        if code:
            sys.exit(code)
    return {"status": result["status"], "accuracy": result["metrics"]["final_accuracy"],
            "energy_j": result["energy"]["total_j"], "dir": str(run_dir)}


def main() -> None:
    """Console entry point (``powertrain report DIR`` goes to the report command, never to Hydra)."""
    if sys.argv[1:2] == ["report"]:
        from powertrain.report.__main__ import main as report_main

        sys.exit(report_main(sys.argv[2:]))
    from powertrain.overrides import check_overrides
    from powertrain.resume import resume_argv
    from powertrain.slurm_check import check_launcher_argv
    from powertrain.sweep import check_argv as check_sweep_argv

    try:
        sys.argv[1:] = resume_argv(sys.argv[1:])  # resume=<run_dir> -> that run's overrides + its dir
        check_overrides(sys.argv[1:])
        check_sweep_argv(sys.argv[1:])  # hydra/sweeper=optuna: sampler, keys, search space
        check_launcher_argv(sys.argv[1:])  # hydra.launcher.<key>: a key the chosen launcher has
    except ConfigError as e:
        _fail(e)

    import hydra

    from powertrain.config import register_configs
    from powertrain.paths import conf_dir

    register_configs()
    hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(task)()


if __name__ == "__main__":
    main()
