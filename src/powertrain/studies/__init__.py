"""Study presets: several runs (single runs or whole sweeps) and one summary, started with
``python -m powertrain experiment=<name> [overrides]``.

A study is one YAML, conf/experiment/<name>.yaml (``# @package _global_``, sets ``study.driver``), plus one
driver module in this package that defines:

- ``NAME``: the ``study.driver`` it answers to;
- ``Config`` (optional): its knobs, a dataclass subclassing ``config.StudyConfig``, registered with Hydra as
  ``base_study_<NAME>``; the YAML starts from it with ``defaults: [/study: base_study_<NAME>]``;
- ``CHECKS`` (optional): value checks by dotted key (``study.<knob>``), also applied to CLI overrides;
- ``check(cfg)`` (optional): checks that need the whole RunConfig, raising ConfigError;
- ``run(ctx: StudyContext) -> dict``: runs the parts through ``ctx.single`` / ``ctx.sweep``, returns a
  JSON-able summary (``summary["status"] == "completed"`` when the study answered its question);
- ``analyze(df, study: dict) -> list``: report sections (``powertrain.report.Section``) from a DataFrame of
  the study's runs; may return [].

Every part is a ``python -m powertrain`` subprocess, so it is composed and validated exactly like the
CLI, and a sweep part may use any launcher (``hydra/launcher=submitit_slurm``) or sweeper. The driver
module is imported at start-up (Hydra needs ``Config``), so it imports nothing heavy at module level.

Layer: imports ``report`` (to analyse), ``data``, ``energy.layers``, ``results`` and ``config``; it never
imports ``run``: its parts are separate processes. ``compose`` reads the drivers' schemas and checks.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from powertrain.config import RunConfig
from powertrain.config.errors import ConfigError
from powertrain.config.registry import LazyModules
from powertrain.results import STUDY_FILE

SCHEMA = "powertrain.study/1"
# ``study.driver`` → its module, for every module of this package (imported on first use)
STUDIES = LazyModules(__name__, __path__)


@dataclass
class StudyContext:
    """What a driver gets: the validated preset, where to write, and how to start its parts."""

    cfg: RunConfig
    out_dir: Path  # absolute: the Hydra output dir of the experiment= invocation
    experiment: str  # the preset name: every part composes experiment=<name> study.part=<part>
    overrides: list[str] = field(default_factory=list)  # the user's, minus experiment= and study.*
    study_overrides: list[str] = field(default_factory=list)  # the user's study.* (same knobs in every part)
    launcher: list[str] = field(default_factory=list)  # hydra/launcher=..., hydra.launcher.*: sweeps only
    searchpath: list[str] = field(default_factory=list)  # hydra.searchpath=...: every part (the user's conf)

    def _argv(self, part: str, overrides: list[str]) -> list[str]:
        # the driver's overrides win over the user's for the keys the driver sets (e.g. dataset= of a part)
        mine = {_key(o) for o in overrides}
        users = [o for o in self.overrides if _key(o) not in mine]
        return [f"experiment={self.experiment}", *self.study_overrides, f"study.part={part}", *users, *overrides,
                *self.searchpath]

    def _call(self, part: str, argv: list[str]) -> int:
        cmd = [sys.executable, "-m", "powertrain", *argv]
        if self.cfg.verbose:
            shown = [a for a in argv[2:] if not a.startswith("hydra.sweeper.variants=")]  # the runs' lines say it
            print(f"\n=== {self.out_dir.name}: {part} ({' '.join(shown) or 'as configured'}) ===", flush=True)
        # a blocking wait: the study process sleeps while its parts run (no polling on a login node)
        proc = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
        if proc.stderr:
            sys.stderr.write(proc.stderr)
        if proc.returncode == 2:
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            why = lines[-1].removeprefix("powertrain: error: ") if lines else "bad input"
            raise ConfigError.relayed(f"{why} (in study part {part})", part)
        return proc.returncode

    def sweep(self, part: str, overrides: list[str], variants: Optional[list[tuple[str, list[str]]]] = None,
              repeats: int = 1) -> Path:
        """Run ``overrides`` (grid axes or a sweeper) as a multirun into ``out_dir/part``; its sweep dir.

        ``variants`` ((name, overrides) pairs) are jobs that are no grid, e.g. one factor at a time; each
        run records its name as ``study.variant``. ``repeats`` runs every job that many times, interleaved
        (``powertrain.launch.repeats``). All of it runs in one process under the basic launcher, so a run
        pays no interpreter and torch start-up of its own.

        A sweep that fails (exit 1) does not raise: its rows say what happened. Bad input (exit 2) raises.
        """
        from powertrain.studies._common import variants_override

        sweep_dir = self.out_dir / part
        extra = [f"repeats={repeats}"] if repeats > 1 else []
        no_report = "hydra.callbacks.sweep_summary.write_report=false"
        if no_report not in overrides:  # one report for the whole study at its end, not one per part
            extra.append(no_report)
        if variants:
            extra.append(variants_override([[*ov, f"study.variant={name}"] for name, ov in variants]))
        self._call(part, ["-m", *self._argv(part, overrides), *extra, *self.launcher, f"hydra.sweep.dir={sweep_dir}"])
        return sweep_dir

    def single(self, part: str, overrides: list[str]) -> dict[str, Any]:
        """Run one part into ``out_dir/part`` and return its result.json (a failed run's too)."""
        from powertrain.results import read_result, skeleton

        run_dir = self.out_dir / part
        code = self._call(part, [*self._argv(part, overrides), f"hydra.run.dir={run_dir}"])
        try:
            return read_result(run_dir)
        except (OSError, ValueError):
            result = skeleton(run_dir, overrides, None)
            result["error"] = f"the run exited {code} without a result.json"
            return result


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def split_overrides(task_overrides: list[str]) -> tuple[list[str], list[str]]:
    """The user's overrides without ``experiment=``/``study.*``, and the ``study.*`` ones."""
    plain = [o for o in task_overrides if _key(o) != "experiment" and not _key(o).startswith("study.")]
    study = [o for o in task_overrides if _key(o).startswith("study.") and _key(o) != "study.part"]
    return plain, study


def launcher_overrides(hydra_overrides: list[str]) -> list[str]:
    """The user's launcher choice and settings, for the study's sweeps."""
    return [o for o in hydra_overrides if o.startswith(("hydra/launcher=", "hydra.launcher."))]


def searchpath_overrides(hydra_overrides: list[str]) -> list[str]:
    """The user's ``hydra.searchpath`` (a config dir of their own): processes composing the same config
    (study parts, DDP ranks) need it too."""
    return [o for o in hydra_overrides if o.lstrip("+").startswith("hydra.searchpath")]


def run_study(ctx: StudyContext, check_parts: Optional[Callable[[RunConfig, str], None]] = None) -> dict[str, Any]:
    """Run the driver, then write ``study.json`` (always) and the report (if powertrain.report can).

    ``check_parts(cfg, who)`` runs once before the driver: the entry point passes
    ``run.build.check_plugins_reach`` (every part is a fresh process that must find the user's model and
    dataset), which this package, never importing ``run``, cannot call itself. Its ConfigError is recorded
    in study.json like any other, and no part has started.

    Raises:
        ConfigError: bad input found by the driver or one of its parts (study.json records it first).
    """
    from powertrain.results import now_iso, write_json_atomic

    driver = ctx.cfg.study.driver
    assert driver is not None
    record: dict[str, Any] = {"schema": SCHEMA, "driver": driver, "experiment": ctx.experiment,
                              "scale": ctx.cfg.study.scale, "seeds": list(ctx.cfg.study.seeds),
                              "status": "failed", "error": None, "dir": str(ctx.out_dir),
                              "overrides": ctx.study_overrides + ctx.overrides, "launcher": ctx.launcher,
                              "started_at": now_iso(), "finished_at": None, "summary": None}
    try:
        if check_parts is not None:
            check_parts(ctx.cfg, "the study's parts")
        summary = STUDIES[driver].run(ctx)
        record["summary"] = summary
        record["status"] = "completed" if summary.get("status", "completed") == "completed" else "failed"
    except BaseException as e:  # record why, then let the entry point turn it into the exit code
        record["error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise
    finally:
        record["finished_at"] = now_iso()
        write_json_atomic(ctx.out_dir / STUDY_FILE, record)
        _report(ctx.out_dir, driver, ctx.cfg.verbose)
    return record


def analyzer(driver: str) -> Any:
    """A study driver's ``analyze`` (report sections), for the report writer."""
    return STUDIES[driver].analyze


def _report(out_dir: Path, driver: str, verbose: bool) -> None:
    """The study's report, if powertrain.report provides one; a failure here never loses study.json."""
    try:
        from powertrain.report.writers import report_dir  # the driver's own sections first (analyze)

        path = report_dir(out_dir, title=f"study {driver}", analyzer=analyzer)
        if verbose:
            print(f"report: {path}", flush=True)
    except Exception as e:  # noqa: BLE001 (a report problem must not fail a finished study)
        print(f"powertrain: warning: study report not written: {type(e).__name__}: {e}".splitlines()[0],
              file=sys.stderr, flush=True)
