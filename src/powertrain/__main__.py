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

from powertrain.config.errors import ConfigError
from powertrain.results import EXIT_INTERRUPTED


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

    from powertrain.compose.validate import validate
    from powertrain.results import exit_code, write_failed
    from powertrain.run import run

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    overrides = list(hc.overrides.task)
    multirun = hc.mode == RunMode.MULTIRUN
    sweep_id = os.environ.get("POWERTRAIN_SWEEP_ID")  # a rank of a multirun job (distributed.launch_local)
    if multirun:
        sweep_id = os.path.relpath(hc.sweep.dir, "multirun") if not os.path.isabs(hc.sweep.dir) else hc.sweep.dir
    config_dict = OmegaConf.to_container(dcfg, resolve=True)
    experiment = hc.runtime.choices.get("experiment")
    try:
        cfg = validate(dcfg)
        if experiment is not None and cfg.study.driver is None:
            raise ConfigError("experiment", experiment, "a study preset that sets study.driver")
    except ConfigError as e:
        # no result.json claiming success: the run is recorded as failed with the one-line reason
        write_failed(run_dir, overrides, str(e), config_dict)
        return _bad_input(e, multirun)
    if cfg.predict:  # profile a few steps and predict; nothing trains to the end, no result.json
        from powertrain.launch.predict import predict_task

        try:
            return predict_task(cfg, run_dir, overrides, config_dict,
                                Path(hc.sweep.dir).resolve() if multirun else None, str(run_dir.name))
        except ConfigError as e:
            return _bad_input(e, multirun)
    try:
        if cfg.study.driver is not None and cfg.study.part is None:
            # a study preset: its driver runs the parts (each a run of its own) into run_dir/<part>
            from powertrain.run.build import check_plugins_reach
            from powertrain.studies import (
                StudyContext,
                launcher_overrides,
                run_study,
                searchpath_overrides,
                split_overrides,
            )

            plain, study = split_overrides(overrides)
            ctx = StudyContext(cfg, run_dir.resolve(), str(experiment), plain, study,
                               launcher_overrides(list(hc.overrides.hydra)), searchpath_overrides(list(hc.overrides.hydra)))
            record = run_study(ctx, check_parts=check_plugins_reach)  # once, before the first part
            if not multirun and record["status"] != "completed":
                sys.exit(1)
            return {"status": record["status"], "dir": str(run_dir)}
        from powertrain.launch.ddp import launch_local
        from powertrain.run.distributed import detect_world

        if cfg.distributed.nproc_per_node > 1 and detect_world() is None:  # this command starts the ranks
            from powertrain.studies import searchpath_overrides

            result = launch_local(cfg, run_dir, overrides, sweep_id, searchpath_overrides(list(hc.overrides.hydra)))
        else:
            result = run(cfg, run_dir, overrides, sweep_id=sweep_id, config_dict=config_dict)
    except ConfigError as e:  # found while building (e.g. a dataset root without the files)
        return _bad_input(e, multirun)
    if not multirun:
        _emissions_csv(run_dir, result)
        code = exit_code(result["status"])
        if code:
            sys.exit(code)
    elif result["status"] == "interrupted":  # Ctrl-C stops the sweep too, after this job's result.json
        raise KeyboardInterrupt
    return {"status": result["status"], "accuracy": result["metrics"]["final_accuracy"],
            "energy_j": result["energy"]["total_j"], "dir": str(run_dir)}


def _emissions_csv(run_dir: Path, result: dict[str, Any]) -> None:
    """A single run's emissions.csv (CodeCarbon's layout) beside its result.json; a sweep writes one at
    its root with a row per job. Never fails the run: result.json is the record."""
    from powertrain.run.distributed import detect_world

    world = detect_world()
    if world is not None and not world.is_main:  # rank 0 writes the run's files
        return
    try:
        from powertrain.report.codecarbon import write_run

        write_run(run_dir, result)
    except Exception as e:
        print(f"powertrain: emissions.csv not written ({type(e).__name__}: {e})", file=sys.stderr, flush=True)


def _compose_once(argv: list[str]) -> None:
    """Skip Hydra's first composition, which only reads ``hydra.mode``.

    ``hydra.main`` composes the whole config twice per start: ``Hydra.get_mode`` composes it just to read
    ``hydra.mode``, then ``Hydra.run``/``multirun`` compose it again (about 0.3-0.6 s of start-up on 2 cores).
    powertrain's conf/ never sets ``hydra.mode`` (tests/test_studies.py pins it), so unless the command line
    sets it or adds a config search path, the answer is "not set" and ``-m`` alone decides, as it does in
    Hydra when the config is silent.
    """
    if any(a.startswith(("hydra.mode", "hydra.searchpath", "--config")) or a in ("-cd", "-cp", "-cn")
           for a in argv):
        return
    from hydra._internal.hydra import Hydra

    Hydra.get_mode = lambda self, config_name, overrides: None  # type: ignore[method-assign]


def _version() -> str:
    import hydra

    from powertrain import __version__

    return f"powertrain {__version__} (Hydra {hydra.__version__})"


def _check(argv: list[str]) -> list[str]:
    """The pre-checks on the overrides (Hydra's own flags and their values untouched); the argv to run."""
    from powertrain.compose.overrides import hydra_args, other_configs
    from powertrain.compose.resume import resume_argv
    from powertrain.launch.checks import check_argv

    args = hydra_args(argv)
    if args is not None and args.shell_completion:  # install=bash / query=... are Hydra's, not overrides
        return argv
    resumed = resume_argv(argv)  # resume=<run_dir> -> that run's overrides + its dir
    if resumed != argv:
        argv, args = resumed, hydra_args(resumed)
    overrides = list(args.overrides) if args is not None else argv
    check_argv(overrides, multirun=bool(args.multirun) if args is not None else None,
               other_sources=other_configs(args))
    return argv


def main() -> None:
    """Console entry point (``powertrain report DIR`` goes to the report command, never to Hydra)."""
    if sys.argv[1:2] == ["report"]:
        from powertrain.report.__main__ import main as report_main
        from powertrain.studies import analyzer

        sys.exit(report_main(sys.argv[2:], analyzer=analyzer))
    if "--version" in sys.argv[1:]:  # Hydra's flag would name Hydra's version only
        print(_version())
        sys.exit(0)
    try:
        sys.argv[1:] = _check(sys.argv[1:])
    except ConfigError as e:
        _fail(e)

    import hydra

    from powertrain.compose.validate import register_configs
    from powertrain.config.paths import conf_dir

    register_configs()  # also the resolvers: hydra.help.template's generated --help, the run dir's suffix
    if any(a.lstrip("+") in ("predict=true", "predict=True") for a in sys.argv[1:]):
        sys.argv.append("hydra.output_subdir=null")  # a prediction leaves no job dirs behind to report on
    _compose_once(sys.argv[1:])
    from powertrain.launch import callback

    try:
        hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(task)()
    except KeyboardInterrupt:
        # Ctrl-C outside a run's training (which ends the run itself, status interrupted) or in a sweep
        print(f"powertrain: interrupted (Ctrl-C){callback.interrupted_sweep()}", file=sys.stderr, flush=True)
        sys.exit(EXIT_INTERRUPTED)
    if callback.BROKEN_JOBS:  # a sweep whose jobs did not all give a result: the summary says which
        sys.exit(1)


if __name__ == "__main__":
    main()
