"""One run's life, in the order it happens: open (device, meter, setup, resume), train, finish.

``RunSession`` holds what the steps share, so each step is short and the ``finish`` step, which always
runs, finds whatever was built before a failure: the meter's open windows, the GPU knobs to restore, the
tracker to close, and the ``FitState`` that ``fit`` updates in place, so a run that fails or is
interrupted keeps every epoch it finished. While it trains, ``run.progress`` saves result.json (status
``running``) and the checkpoint after every epoch. ``powertrain.run.run`` drives it.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Optional

from powertrain.config import RunConfig
from powertrain.config.errors import first_line
from powertrain.console import is_terminal, metric_text, say
from powertrain.results import (
    CHECKPOINT_FILE,
    ENV_RESUME,
    HEARTBEAT_S,
    LOST_AFTER_S,
    RESULT_FILE,
    RESUMABLE,
    USABLE,
    load_result,
    now_iso,
    skeleton,
    temp_files,
    write_result,
)
from powertrain.run.build import (
    Device,
    Training,
    build_training,
    check_model_on_data,
    make_meter,
    open_device,
    uses_own_code,
)
from powertrain.run.checkpoint import Checkpoint, config_json
from powertrain.run.fill import fill_result, print_summary
from powertrain.run.progress import Progress, ProgressError
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
        self.state: Any = None  # the FitState fit updates in place (a resumed attempt's, or a fresh one)
        self.attempts: list[dict[str, Any]] = []
        self.prior_wall_s = 0.0
        self.keep_previous_result = False  # a refused resume leaves the earlier result.json as it was
        self.progress: Optional[Progress] = None  # the running result.json + checkpoint while training
        self.saver: Optional[Progress] = None  # progress, where it saves checkpoints (checkpoint.progress)
        self.save_failed = False  # a progress save failed (a full disk): the run stopped
        self.snapshot_s = 0.0  # time the training thread spent taking snapshots for progress saves
        self.config_key = config_json(self.result["config"])  # what attempts of one run must share

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
        if self.state is None:
            from powertrain.train import FitState

            self.state = FitState()
        self.ledger.add("setup", m_setup)
        self._start_progress()
        self._idle_baseline()
        self._start_tracker()

    def _resume(self) -> None:
        """A requeued or resumed attempt continues its checkpoint, and keeps every joule so far."""
        from powertrain.energy import Ledger
        from powertrain.train import FitState

        t = self.training
        ck = self._resumable()
        if ck is None:
            return
        Checkpoint.restore(ck, t.setup.model, t.optimizer, t.scheduler)
        self.state = FitState(**ck["fit_state"])
        self.ledger = Ledger.from_dict(ck["ledger"])
        # an attempt saved while it ran and continued now is one that died: lost (or Ctrl-C'ed twice)
        self.attempts = [dict(a, status="lost") if a.get("status") == "running" else a for a in ck["attempts"]]
        self.prior_wall_s = sum(a.get("wall_s", 0.0) for a in self.attempts)
        self.result["run"]["attempts"] = len(self.attempts) + 1
        self.say(f"resuming {self.run_dir} at epoch {self.state.epoch} (attempt {len(self.attempts) + 1}, "
                 f"{self.ledger.total_j():.1f} J so far)")

    def _resumable(self) -> Optional[dict[str, Any]]:
        """The checkpoint to continue, decided by rank 0 (its first progress save would change the answer
        for a rank that looked later) and passed on to the others."""
        from powertrain.config import ConfigError

        decision: Any = None
        ck = None
        if self.world is None or self.world.is_main:
            try:
                _, status, _ = load_result(self.run_dir)  # "lost" when a dead run's file still says running
                explicit = os.environ.get(ENV_RESUME) == str(self.run_dir)
                ck = Checkpoint(self.run_dir).resumable(self.config_key, status, explicit)
                decision = ck is not None
            except ConfigError as e:
                decision = e
        if self.dist is not None:
            decision = self.dist.broadcast(decision)
        if isinstance(decision, ConfigError):
            raise decision
        if ck is None and decision:  # another rank: read the checkpoint rank 0 chose
            ck = Checkpoint(self.run_dir).load()
        return ck

    def _start_progress(self) -> None:
        """The first running result.json (who writes it, for readers that ask whether it lives), then the
        background writer and heartbeat; only rank 0 writes for the run."""
        from powertrain.results import liveness

        if self.world is not None and not self.world.is_main:
            return
        for stale in [*temp_files(self.run_dir / RESULT_FILE), *temp_files(self.run_dir / CHECKPOINT_FILE)]:
            stale.unlink(missing_ok=True)  # half-written by an attempt killed while saving: ours to clear now
        # the heartbeat (result.json's mtime) is refreshed by the writer's thread whatever the run is doing;
        # silence for LOST_AFTER_S reads as dead where the writer cannot be asked (another host, no Slurm)
        self.result["run"].update(liveness.identity(HEARTBEAT_S, LOST_AFTER_S))
        self.progress = Progress(self.run_dir, self.cfg.checkpoint.every_s, Checkpoint(self.run_dir).write,
                                 heartbeat_s=HEARTBEAT_S, min_interval_s=self.cfg.checkpoint.min_interval_s)
        # checkpoint.progress=false: the running result.json and its heartbeat only, no saves while training
        self.saver = self.progress if self.cfg.checkpoint.progress else None
        self.progress.on_mid_epoch = self._save_progress
        self.progress.write_now(self._running_result(None))
        self.progress.start()

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
            value = metric_text(cfg.task.metric, row["accuracy"])
            # accuracy right-aligned, so the epoch lines' columns line up
            metric = f"acc {value:>7}" if cfg.task.metric == "accuracy" else f"{cfg.task.metric} {value}"
            self.say(f"epoch {row['epoch']:>3}/{cfg.max_epochs}  loss {row['train_loss']:.4f}  "
                     f"{metric}  energy {row['energy_j']:9.1f} J  time {row['wall_s']:7.2f} s")
            # after the last epoch the final save follows at once; short epochs are saved a second apart
            if row["epoch"] < cfg.max_epochs and self.saver is not None and self.saver.should_save():
                self._save_progress(None)
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
        from powertrain.train.display import ProgressLine

        # in place on a terminal only: a log or a pipe gets the epoch lines and nothing else
        display = ProgressLine(cfg.max_epochs, cfg.batch_size) if cfg.verbose and is_terminal() else None
        self.stop.install()
        fr = self.fit_result = fit(
            t.model, t.setup.task, t.optimizer, self.meter, self.ledger, max_epochs=cfg.max_epochs,
            scheduler=t.scheduler, target_accuracy=cfg.target_accuracy, energy_budget_j=cfg.budget.energy_j,
            time_budget_s=cfg.budget.time_s, state=self.state, scaler=t.scaler, stop_requested=self.stop,
            on_epoch=self._on_epoch(pruning), clock_offset_s=self.prior_wall_s,
            sync=None if dist is None else dist.sync,
            progress=self.saver, display=display,
        )  # fmt: skip
        if fr.status == "preempted" and self.stop.interrupted:  # Ctrl-C, not a scheduler's signal
            fr.status = "interrupted"  # its stop_reason is the signal's, below (signum is SIGINT)
        self.result["status"] = fr.status
        if fr.reason and fr.status != "completed":
            self.result["stop_reason"] = fr.reason
        this_attempt = self._this_attempt(fr.status)
        if dist is None or dist.is_main:
            self._final_checkpoint(fr, this_attempt)
        if cfg.energy.layer_profile_steps and fr.status in USABLE and hasattr(t.setup.task, "batches"):
            from powertrain.energy.layers import profile_layers

            # after the checkpoint: the profiled steps change the model, and nothing reported depends on it
            self.result["energy"]["layer_attribution"] = profile_layers(
                t.setup.model, t.setup.task, t.optimizer, cfg.energy.layer_profile_steps, self.dev.on_gpu,
                t.autocast)
        if fr.status in ("preempted", "interrupted") and self.stop.signum is not None:
            self.result["stop_reason"] = f"signal {signal.Signals(self.stop.signum).name}: {self._stop_saved()}"
        self.result["run"]["attempt_history"] = self.attempts + [this_attempt]
        self.result["upstream"] = t.setup.upstream

    def _stop_saved(self) -> str:
        """What a stopped run kept: its final checkpoint, or (that save failed) the last progress save."""
        error = self.result.get("checkpoint_error")
        if error is None:
            return f"checkpointed; resume={self.run_dir} continues it"
        # the failed save left checkpoint.pt as it was: the last progress save, if any, is what resumes
        return f"not checkpointed ({error}); {self._progress_kept(f': resume={self.run_dir} continues from it')}"

    def _last_save(self) -> Optional[dict[str, Any]]:
        """What the last good progress save holds (epoch, at), or None."""
        return self.progress.saved if self.progress is not None else None

    def _progress_kept(self, then: str = "") -> str:
        """The stop reasons' words for what the last progress save kept (``then`` follows its epoch)."""
        saved = self._last_save()
        return f"the checkpoint after epoch {saved['epoch']} is kept{then}" if saved else "no checkpoint was saved"

    def _this_attempt(self, status: str) -> dict[str, Any]:
        return {"started_at": self.result["run"]["started_at"], "wall_s": time.perf_counter() - self.t0,
                "status": status}

    def _final_checkpoint(self, fr: Any, this_attempt: dict[str, Any]) -> None:
        """The end's checkpoint: always for a resumable end, else when asked (``save_checkpoint``). A save
        that fails (a full disk) is recorded, and never turns a finished run into a failed one."""
        t, ck = self.training, Checkpoint(self.run_dir)
        if self.progress is not None:  # a progress save still being written must not land over this one
            self.progress.close()
        if fr.status in RESUMABLE or self.cfg.save_checkpoint:
            try:
                ck.save(t.setup.model, t.optimizer, t.scheduler, fr.state, self.ledger,
                        self.attempts + [this_attempt], fr.status, self.config_key)
            except OSError as e:
                self.result["checkpoint_error"] = f"checkpoint not saved: {e.strerror or e}"
                print(f"powertrain: warning: {self.result['checkpoint_error']} (the run's result is kept)",
                      file=sys.stderr, flush=True)
        elif self.progress is not None:
            ck.remove()  # the last progress save: not asked for, and a finished run is not continued

    # ------------------------------------------------------------------------------------- progress

    def _fit_view(self) -> Any:
        """What ``fill_result`` reads of the fit: its result, or (a failure, a second Ctrl-C) the state so far."""
        if self.fit_result is not None or self.state is None:
            return self.fit_result
        from powertrain.train import FitResult

        last = self.state.history[-1] if self.state.history else {}
        return FitResult(self.result["status"], self.state, last, last.get("train_loss"))

    def _annotate_world(self, result: dict[str, Any]) -> None:
        if self.dist is not None:
            self.dist.annotate(result)
        else:  # one process, or a rank that never joined its world
            result["world_size"], result["nodes"] = (1, 1) if self.world is None else (self.world.world_size, None)

    def _running_result(self, steps_in_epoch: Optional[int]) -> dict[str, Any]:
        """The result as it stands, status ``running``: a copy, so the live one is never half-filled."""
        r = dict(self.result, status="running")
        for key in ("run", "metrics", "energy", "time"):
            r[key] = dict(self.result[key])
        profile = None if self.dev is None else self.dev.profile
        fill_result(r, self.cfg, self._fit_view(), self.ledger, time.perf_counter() - self.t0 + self.prior_wall_s,
                    self.intensity, profile)
        r["run"]["finished_at"] = None
        epoch = 0 if self.state is None else self.state.epoch
        r["progress"] = {"saved_at": now_iso(), "epochs_done": epoch,
                         "steps_in_epoch": steps_in_epoch}  # None: saved at an epoch's end
        self._annotate_world(r)
        return r

    def _save_progress(self, steps_in_epoch: Optional[int]) -> None:
        """Snapshot the run now (tensors copied to host memory) and hand it to the background writer."""
        saver = self.saver  # set: only the saver calls here (at an epoch's end, or fit's mid-epoch)
        if saver is None:
            return
        saver.check()  # a save that failed since: stop, the last good files are the record
        t0 = time.perf_counter()
        t, st = self.training, self.state
        ck = Checkpoint.snapshot(t.setup.model, t.optimizer, t.scheduler, st, self.ledger,
                                 self.attempts + [self._this_attempt("running")], "running", self.config_key)
        saver.submit(self._running_result(steps_in_epoch), ck, {"epoch": st.epoch, "steps": steps_in_epoch})
        self.snapshot_s += time.perf_counter() - t0  # the training thread's share of saving

    # --------------------------------------------------------------------------------------- finish

    def failed(self, err: BaseException) -> None:
        """Record an exception that ends the run (it becomes status ``failed``; result.json still follows)."""
        if isinstance(err, ProgressError):
            import logging

            self.result["error"] = str(err)
            self.save_failed = True
            # the log file is on the same full disk: its handler must not print a traceback per line
            logging.raiseExceptions = False
        else:
            self.result["error"] = first_line(err)
            self.result["traceback"] = traceback.format_exc()
        if self.fit_result is None:  # after fit, its status stands (e.g. a failed layer profile)
            self.result["status"] = "failed"

    def interrupted(self) -> None:
        """A second Ctrl-C (or one before training): status ``interrupted``, the last progress save kept."""
        self.result["status"] = "interrupted"
        if self.progress is not None:  # a save still being written lands now (finish waits for it anyway):
            self.progress.close()  # the reason must name it, not say none was saved
        kept = self._progress_kept()
        # twice only when the stop handler saw the first; else Python's own handler raised it, before
        # stop.install() (loading data, the idle baseline)
        how = "twice" if self.stop.signum == signal.SIGINT else "before training"
        self.result["stop_reason"] = f"Ctrl-C (SIGINT) {how}: left at once; {kept}"

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
        if self.progress is not None:
            self.progress.close()  # a pending save first: the final result.json must be the last write
            if self.progress.error and self.result["status"] != "failed":
                self.result["progress_error"] = self.progress.error
            # what the saves while training cost: the snapshots on this thread, the writer's time beside it
            self.result["progress"] = {**self.progress.stats(), "snapshot_s": self.snapshot_s}
        wall_s = time.perf_counter() - self.t0 + self.prior_wall_s
        profile = None if self.dev is None else self.dev.profile
        fill_result(self.result, self.cfg, self._fit_view(), self.ledger, wall_s, self.intensity, profile)
        self._annotate_world(self.result)
        world, dist = self.world, self.dist
        if not self.keep_previous_result and (world is None or world.is_main):
            self._write_final()
        if dist is not None:
            dist.finish(self.result, self.run_dir)
        if self.tracker is not None:
            self.tracker.finish(self.result)
        if self.cfg.verbose and not self.keep_previous_result:
            print_summary(self.result, self.run_dir)
        self.stop.chain()  # after checkpoint + result.json: e.g. submitit's requeue-and-exit on SIGUSR2
        self.stop.release()  # a Ctrl-C that came while the result was written: KeyboardInterrupt now

    def _write_final(self) -> None:
        """The last write of result.json; on a full or read-only disk, one line says what is kept."""
        try:
            write_result(self.run_dir, self.result)
        except OSError as e:  # the last good save is the record, and says so
            saved = self._last_save()
            kept = (f"the last good one (after epoch {saved['epoch']}) is kept: it reads lost, and "
                    f"resume={self.run_dir} continues it" if saved else "no earlier one was saved")
            first = f"{self.result['error']}; " if self.save_failed else ""
            self.result["error"] = f"{first}result.json not written ({e.strerror or e}); {kept}"
            self.result["status"] = "failed"
            print(f"powertrain: error: {self.result['error']}", file=sys.stderr, flush=True)
            return
        if self.save_failed:
            print(f"powertrain: error: {self.result['error']}; the run stopped there (result.json: failed; "
                  f"resume={self.run_dir} continues it)", file=sys.stderr, flush=True)
