"""One run, start to result: build everything, train, account energy and carbon, write result.json.

``run`` takes a validated ``RunConfig`` and a run directory; it knows nothing about Hydra. Whatever
happens (an exception, a non-finite loss, a budget, SIGTERM), the ``finally`` block writes result.json.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
import traceback
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Optional

from powertrain.config import ConfigError, RunConfig
from powertrain.config.checks import check_precision
from powertrain.console import say
from powertrain.results import CHECKPOINT_FILE, USABLE, exit_code, skeleton, write_result
from powertrain.run.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from powertrain.run.fill import fill_result, print_summary
from powertrain.run.signals import StopRequest

log = logging.getLogger("powertrain")
CHECKPOINT = CHECKPOINT_FILE  # the name tests and tools have used


def _autocast_factory(precision: str, device: Any) -> Any:
    import torch

    if precision == "fp32" or device.type != "cuda":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast("cuda", dtype=dtype)


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run(cfg: RunConfig, run_dir: Path, overrides: Optional[list[str]] = None,
        sweep_id: Optional[str] = None, config_dict: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Train one setup and return its result (also written to ``run_dir/result.json``)."""
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    from powertrain.run import distributed

    world = distributed.detect_world()  # None: one process
    if world is not None and not world.is_main:  # rank 0 speaks, tracks and writes for the run
        cfg = replace(cfg, verbose=False, save_checkpoint=False, tracking=replace(cfg.tracking, name="none"))
    dist: Optional[distributed.DistributedRun] = None
    result = skeleton(run_dir, overrides or [], config_dict if config_dict is not None else asdict(cfg),
                      sweep_id, cfg.target_accuracy)
    stop = StopRequest()
    meter = ledger = tracker = profile = None
    knobs = None  # GPU power limit / clocks, restored however the run ends
    fit_result = None
    prior_wall_s = 0.0
    intensity = None
    keep_previous_result = False
    try:
        from powertrain import carbon

        intensity = carbon.resolve(cfg.carbon)  # before any work: an unknown region fails here
        if intensity is None and cfg.verbose:
            say(carbon.hint())

        import torch

        from powertrain.energy import Ledger, build_meter
        from powertrain.hardware import device as hw
        from powertrain.hardware.profiles import select_profile
        from powertrain.paradigms import build_setup
        from powertrain.tracking import build_tracker
        from powertrain.train import FitState, fit
        from powertrain.train.optim import build_optimizer, build_scheduler

        device = hw.resolve_device(cfg.hardware.device)
        if world is not None:  # join the other ranks (and take this local rank's GPU) before any work
            dist = distributed.DistributedRun(world, cfg, device, run_dir)
            device, run_dir = dist.device, dist.run_dir
        check_precision(cfg.precision, device.type)  # e.g. hardware=auto that landed on the CPU
        hw.set_cpu_threads(cfg.hardware.cpu_threads)
        profile = select_profile(cfg.hardware, device)
        result["hardware"] = hw.describe(device, profile)

        from powertrain.hardware.knobs import apply_gpu_knobs

        knobs = apply_gpu_knobs(cfg.hardware, device)  # checked and set before training; restored in finally
        if knobs.record:
            result["hardware"]["gpu_knobs"] = knobs.record
        on_gpu = device.type == "cuda"
        # the device itself: the meter bills and synchronises the run's own GPU, not every visible one
        tdp = {"cpu_tdp_w": None if on_gpu else profile.tdp_w, "gpu_tdp_w": profile.tdp_w if on_gpu else None}
        meter = build_meter(cfg.energy, device, **tdp) if dist is None else dist.build_meter(cfg.energy, device, **tdp)
        if cfg.verbose:
            say(f"energy: {meter.describe()}")
            for line in meter.billing_lines():  # what share of each component is billed, and why
                say(line)
        # loading data and building the model cost energy too: billed to "setup", reported apart from
        # training (energy.setup_j) so runs compare on training energy yet nothing goes unmetered
        ledger = Ledger()  # replaced by the checkpoint's on resume
        meter.begin_window("setup")
        _seed_everything(cfg.seed)
        autocast = _autocast_factory(cfg.precision, device)

        setup = build_setup(cfg, device, autocast)
        model = setup.model
        result["data"] = setup.data
        if setup.notes:
            result["notes"] = list(setup.notes)
        optimizer = build_optimizer(cfg.optimizer, setup.param_groups)
        scheduler = build_scheduler(cfg.optimizer, optimizer, cfg.max_epochs)
        scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
        train_model = torch.compile(model) if cfg.compile else model
        if dist is not None:  # each rank its slice of every global batch; gradients averaged by DDP
            dist.shard(setup.task)
            train_model = dist.wrap(train_model)
        m_setup = meter.end_window("setup")

        state, attempts = FitState(), []
        checkpoint = Checkpoint(run_dir)
        ck = checkpoint.resumable(result["config"])
        if ck is not None:  # a requeued or resumed attempt: continue, and keep every joule so far
            Checkpoint.restore(ck, model, optimizer, scheduler)
            state = FitState(**ck["fit_state"])
            ledger = Ledger.from_dict(ck["ledger"])
            attempts = list(ck["attempts"])
            prior_wall_s = sum(a.get("wall_s", 0.0) for a in attempts)
            result["run"]["attempts"] = len(attempts) + 1
            if cfg.verbose:
                say(f"resuming {run_dir} at epoch {state.epoch} (attempt {len(attempts) + 1}, "
                    f"{ledger.total_j():.1f} J so far)")
        ledger.add("setup", m_setup)

        if cfg.energy.idle_baseline_s > 0:
            from powertrain.energy.idle import mean_power_w, measure_idle

            # billed to its own phase: idle energy is not training energy, but it is not hidden either
            idle = measure_idle(meter, cfg.energy.idle_baseline_s)
            ledger.add("idle", idle)
            result["energy"]["idle_baseline_w"] = mean_power_w(idle)

        from powertrain.run.prune import TrialReporter

        # set by the optuna sweeper when it prunes; None otherwise. One rank talks to the study; fit makes
        # its decision every rank's (a rank leaving alone would hang the others' next all-reduce)
        pruning = TrialReporter.from_env() if dist is None or dist.world.rank == 0 else None
        tracker = build_tracker(cfg.tracking)
        tracker.start({"id": result["run"]["id"], "dir": str(run_dir), "sweep_id": sweep_id,
                       "name": result["run"]["id"]}, result["config"], list(overrides or []))

        def on_epoch(row: dict[str, Any]) -> Optional[str]:
            if intensity is not None:
                row["carbon_g"] = carbon.operational_g(cfg.carbon, intensity, row["energy_j"])
            tracker.log_epoch(row)
            if cfg.verbose:
                say(f"epoch {row['epoch']:>3}/{cfg.max_epochs}  loss {row['train_loss']:.4f}  "
                    f"acc {row['accuracy'] * 100:6.2f}%  energy {row['energy_j']:9.1f} J  "
                    f"time {row['wall_s']:7.2f} s")
            return None if pruning is None else pruning.report(row["epoch"], row["accuracy"])

        from powertrain.console import is_terminal
        from powertrain.train.progress import Progress

        # in place on a terminal only: a log or a pipe gets the epoch lines and nothing else
        progress = Progress(cfg.max_epochs, cfg.batch_size) if cfg.verbose and is_terminal() else None
        stop.install()
        fit_result = fit(
            train_model, setup.task, optimizer, meter, ledger, max_epochs=cfg.max_epochs, scheduler=scheduler,
            target_accuracy=cfg.target_accuracy, energy_budget_j=cfg.budget.energy_j,
            time_budget_s=cfg.budget.time_s, state=state, scaler=scaler, stop_requested=stop,
            on_epoch=on_epoch, clock_offset_s=prior_wall_s, sync=None if dist is None else dist.sync,
            progress=progress,
        )
        result["status"] = fit_result.status
        if fit_result.reason and fit_result.status != "completed":
            result["stop_reason"] = fit_result.reason
        this_attempt = {"started_at": result["run"]["started_at"], "wall_s": time.perf_counter() - t0,
                        "status": fit_result.status}
        if (fit_result.status == "preempted" or cfg.save_checkpoint) and (dist is None or dist.is_main):
            checkpoint.save(model, optimizer, scheduler, fit_result.state, ledger,
                            attempts + [this_attempt], fit_result.status, result["config"])
        if cfg.energy.layer_profile_steps and fit_result.status in USABLE and hasattr(setup.task, "batches"):
            from powertrain.energy.layers import profile_layers

            # after the checkpoint: the profiled steps change the model, and nothing reported depends on it
            result["energy"]["layer_attribution"] = profile_layers(
                model, setup.task, optimizer, cfg.energy.layer_profile_steps, on_gpu, autocast)
        if fit_result.status == "preempted" and stop.signum is not None:
            result["stop_reason"] = f"signal {signal.Signals(stop.signum).name}: checkpointed for resume"
        result["run"]["attempt_history"] = attempts + [this_attempt]
        result["upstream"] = setup.upstream
    except ConfigError as e:
        result["error"] = str(e)
        # a refused resume leaves the preempted run's result.json (and checkpoint) as they were
        keep_previous_result = e.key == "resume"
        raise
    except KeyboardInterrupt:
        result["error"] = "interrupted (KeyboardInterrupt)"
        raise
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip()
        result["traceback"] = traceback.format_exc()
        log.error("run failed: %s", result["error"])
    finally:
        stop.uninstall()
        if knobs is not None:
            knobs.restore()  # before result.json, so it records whether the GPU's settings came back
        if meter is not None:
            for m in meter.end_open_windows():  # failed mid-window: keep the energy spent so far
                if ledger is not None:
                    ledger.add(m.name, m)
            meter.close()
        wall_s = time.perf_counter() - t0 + prior_wall_s
        fill_result(result, cfg, fit_result, ledger, wall_s, intensity, profile)
        if dist is not None:
            dist.annotate(result)
        else:  # one process, or a rank that never joined its world
            result["world_size"], result["nodes"] = (1, 1) if world is None else (world.world_size, None)
        if not keep_previous_result and (world is None or world.is_main):
            write_result(run_dir, result)
        if dist is not None:
            dist.finish(result, run_dir)
        if tracker is not None:
            tracker.finish(result)
        if cfg.verbose and not keep_previous_result:
            print_summary(result, run_dir)
        stop.chain()  # after checkpoint + result.json: e.g. submitit's requeue-and-exit on SIGUSR2
    return result


__all__ = ["run", "exit_code", "StopRequest", "Checkpoint", "save_checkpoint", "load_checkpoint", "CHECKPOINT"]
