"""One run's life, in the order it happens: open (device, meter, setup, resume), train, finish.

``RunSession`` holds what the steps share, so each step is short and the ``finish`` step, which always
runs, finds whatever was built before a failure: the meter's open windows, the GPU knobs to restore, the
tracker to close. ``powertrain.run.run`` drives it.
"""

from __future__ import annotations

import signal
import time
import traceback
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Optional

from powertrain.config import RunConfig
from powertrain.console import is_terminal, say
from powertrain.results import USABLE, skeleton, write_result
from powertrain.run.build import (
    Device,
    Training,
    build_training,
    check_model_on_data,
    make_meter,
    open_device,
    uses_own_code,
)
from powertrain.run.checkpoint import Checkpoint
from powertrain.run.fill import fill_result, print_summary
from powertrain.run.signals import StopRequest


class RunSession:
    """The state of one run between its steps (see the module doc)."""

    def __init__(self, cfg: RunConfig, run_dir: Path, overrides: list[str], sweep_id: Optional[str],
                 config_dict: Optional[dict[str, Any]], world: Any):
        if world is not None and not world.is_main:  # rank 0 speaks, tracks and writes for the run
            cfg = replace(cfg, verbose=False, save_checkpoint=False, tracking=replace(cfg.tracking, name="none"))
        self.cfg, self.run_dir, self.overrides, self.sweep_id, self.world = cfg, run_dir, overrides, sweep_id, world
        self.t0 = time.perf_counter()
        self.result = skeleton(run_dir, overrides, config_dict if config_dict is not None else asdict(cfg),
                               sweep_id, cfg.target_accuracy)
        self.stop = StopRequest()
        self.intensity: Any = None
        self.dev: Optional[Device] = None
        self.training: Optional[Training] = None
        self.meter: Any = None
        self.ledger: Any = None
        self.tracker: Any = None
        self.knobs: Any = None  # GPU power limit / clocks, restored however the run ends
        self.fit_result: Any = None
        self.state: Any = None  # FitState to continue from (a resumed attempt) or None
        self.attempts: list[dict[str, Any]] = []
        self.prior_wall_s = 0.0
        self.keep_previous_result = False  # a refused resume leaves the earlier result.json as it was

    @property
    def dist(self) -> Any:
        return None if self.dev is None else self.dev.dist

    def say(self, line: str) -> None:
        if self.cfg.verbose:
            say(line)  # printed, and kept in the job's log

    # ----------------------------------------------------------------------------------------- open

    def open(self) -> None:
        """Everything before the first training step; the setup's joules are billed to "setup"."""
        from powertrain import carbon
        from powertrain.energy import Ledger
        from powertrain.hardware import device as hw
        from powertrain.hardware.knobs import apply_gpu_knobs

        cfg = self.cfg
        self.intensity = carbon.resolve(cfg.carbon)  # before any work: an unknown region fails here
        if self.intensity is None:
            self.say(carbon.hint())
        self.dev = open_device(cfg, self.run_dir, self.world)
        if self.dev.run_dir is not None:
            self.run_dir = self.dev.run_dir
        self.result["hardware"] = hw.describe(self.dev.device, self.dev.profile)
        self.knobs = apply_gpu_knobs(cfg.hardware, self.dev.device)  # set before training; restored in finish
        if self.knobs.record:
            self.result["hardware"]["gpu_knobs"] = self.knobs.record
        if uses_own_code(cfg):  # the user's model, data and step on one batch, before the meter starts
            check_model_on_data(cfg, keep_data=True)
        self.meter = make_meter(cfg, self.dev)
        self.say(f"energy: {self.meter.describe()}")
        for line in self.meter.billing_lines():  # what share of each component is billed, and why
            self.say(line)
        # loading data and building the model cost energy too: billed to "setup", reported apart from
        # training (energy.setup_j) so runs compare on training energy yet nothing goes unmetered
        self.ledger = Ledger()  # replaced by the checkpoint's on resume
        self.meter.begin_window("setup")
        self.training = build_training(cfg, self.dev)
        self.result["data"] = self.training.setup.data
        if self.training.setup.notes:
            self.result["notes"] = list(self.training.setup.notes)
        m_setup = self.meter.end_window("setup")
        self._resume()
        self.ledger.add("setup", m_setup)
        self._idle_baseline()
        self._start_tracker()

    def _resume(self) -> None:
        """A requeued or resumed attempt continues its checkpoint, and keeps every joule so far."""
        from powertrain.energy import Ledger
        from powertrain.train import FitState

        t = self.training
        ck = Checkpoint(self.run_dir).resumable(self.result["config"])
        if ck is None:
            return
        Checkpoint.restore(ck, t.setup.model, t.optimizer, t.scheduler)
        self.state = FitState(**ck["fit_state"])
        self.ledger = Ledger.from_dict(ck["ledger"])
        self.attempts = list(ck["attempts"])
        self.prior_wall_s = sum(a.get("wall_s", 0.0) for a in self.attempts)
        self.result["run"]["attempts"] = len(self.attempts) + 1
        self.say(f"resuming {self.run_dir} at epoch {self.state.epoch} (attempt {len(self.attempts) + 1}, "
                 f"{self.ledger.total_j():.1f} J so far)")

    def _idle_baseline(self) -> None:
        if self.cfg.energy.idle_baseline_s <= 0:
            return
        from powertrain.energy.idle import mean_power_w, measure_idle

        # billed to its own phase: idle energy is not training energy, but it is not hidden either
        idle = measure_idle(self.meter, self.cfg.energy.idle_baseline_s)
        self.ledger.add("idle", idle)
        self.result["energy"]["idle_baseline_w"] = mean_power_w(idle)

    def _start_tracker(self) -> None:
        from powertrain.tracking import build_tracker

        r = self.result["run"]
        self.tracker = build_tracker(self.cfg.tracking)
        self.tracker.start({"id": r["id"], "dir": str(self.run_dir), "sweep_id": self.sweep_id, "name": r["id"]},
                           self.result["config"], list(self.overrides))

    # ---------------------------------------------------------------------------------------- train

    def _on_epoch(self, pruning: Any) -> Any:
        from powertrain import carbon

        cfg = self.cfg

        def on_epoch(row: dict[str, Any]) -> Optional[str]:
            if self.intensity is not None:
                row["carbon_g"] = carbon.operational_g(cfg.carbon, self.intensity, row["energy_j"])
            self.tracker.log_epoch(row)
            metric = (f"acc {row['accuracy'] * 100:6.2f}%" if cfg.task.metric == "accuracy"
                      else f"{cfg.task.metric} {row['accuracy']:.4f}")
            self.say(f"epoch {row['epoch']:>3}/{cfg.max_epochs}  loss {row['train_loss']:.4f}  "
                     f"{metric}  energy {row['energy_j']:9.1f} J  time {row['wall_s']:7.2f} s")
            return None if pruning is None else pruning.report(row["epoch"], row["accuracy"])

        return on_epoch

    def train(self) -> None:
        """``fit`` until a stop condition, then the checkpoint and the optional layer attribution."""
        from powertrain.run.prune import TrialReporter
        from powertrain.train import fit

        cfg, t, dist = self.cfg, self.training, self.dist
        # set by the optuna sweeper when it prunes; None otherwise. One rank talks to the study; fit makes
        # its decision every rank's (a rank leaving alone would hang the others' next all-reduce)
        pruning = TrialReporter.from_env() if dist is None or dist.world.rank == 0 else None
        from powertrain.train.progress import Progress

        # in place on a terminal only: a log or a pipe gets the epoch lines and nothing else
        progress = Progress(cfg.max_epochs, cfg.batch_size) if cfg.verbose and is_terminal() else None
        self.stop.install()
        fr = self.fit_result = fit(
            t.model, t.setup.task, t.optimizer, self.meter, self.ledger, max_epochs=cfg.max_epochs,
            scheduler=t.scheduler, target_accuracy=cfg.target_accuracy, energy_budget_j=cfg.budget.energy_j,
            time_budget_s=cfg.budget.time_s, state=self.state, scaler=t.scaler, stop_requested=self.stop,
            on_epoch=self._on_epoch(pruning), clock_offset_s=self.prior_wall_s,
            sync=None if dist is None else dist.sync, progress=progress,
        )  # fmt: skip
        self.result["status"] = fr.status
        if fr.reason and fr.status != "completed":
            self.result["stop_reason"] = fr.reason
        this_attempt = {"started_at": self.result["run"]["started_at"], "wall_s": time.perf_counter() - self.t0,
                        "status": fr.status}
        if (fr.status == "preempted" or cfg.save_checkpoint) and (dist is None or dist.is_main):
            Checkpoint(self.run_dir).save(t.setup.model, t.optimizer, t.scheduler, fr.state, self.ledger,
                                          self.attempts + [this_attempt], fr.status, self.result["config"])
        if cfg.energy.layer_profile_steps and fr.status in USABLE and hasattr(t.setup.task, "batches"):
            from powertrain.energy.layers import profile_layers

            # after the checkpoint: the profiled steps change the model, and nothing reported depends on it
            self.result["energy"]["layer_attribution"] = profile_layers(
                t.setup.model, t.setup.task, t.optimizer, cfg.energy.layer_profile_steps, self.dev.on_gpu,
                t.autocast)
        if fr.status == "preempted" and self.stop.signum is not None:
            self.result["stop_reason"] = f"signal {signal.Signals(self.stop.signum).name}: checkpointed for resume"
        self.result["run"]["attempt_history"] = self.attempts + [this_attempt]
        self.result["upstream"] = t.setup.upstream

    # --------------------------------------------------------------------------------------- finish

    def failed(self, err: BaseException) -> None:
        """Record an exception that ends the run (it becomes status ``failed``; result.json still follows)."""
        self.result["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".strip()
        self.result["traceback"] = traceback.format_exc()

    def finish(self) -> None:
        """Always runs: restore the GPU, keep the joules of open windows, fill and write result.json."""
        self.stop.uninstall()
        if self.knobs is not None:
            self.knobs.restore()  # before result.json, so it records whether the GPU's settings came back
        if self.meter is not None:
            for m in self.meter.end_open_windows():  # failed mid-window: keep the energy spent so far
                if self.ledger is not None:
                    self.ledger.add(m.name, m)
            self.meter.close()
        wall_s = time.perf_counter() - self.t0 + self.prior_wall_s
        profile = None if self.dev is None else self.dev.profile
        fill_result(self.result, self.cfg, self.fit_result, self.ledger, wall_s, self.intensity, profile)
        world, dist = self.world, self.dist
        if dist is not None:
            dist.annotate(self.result)
        else:  # one process, or a rank that never joined its world
            self.result["world_size"], self.result["nodes"] = (1, 1) if world is None else (world.world_size, None)
        if not self.keep_previous_result and (world is None or world.is_main):
            write_result(self.run_dir, self.result)
        if dist is not None:
            dist.finish(self.result, self.run_dir)
        if self.tracker is not None:
            self.tracker.finish(self.result)
        if self.cfg.verbose and not self.keep_previous_result:
            print_summary(self.result, self.run_dir)
        self.stop.chain()  # after checkpoint + result.json: e.g. submitit's requeue-and-exit on SIGUSR2
