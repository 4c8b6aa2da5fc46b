"""One run, start to result: build everything, train, account energy and carbon, write result.json.

``run`` takes a validated ``RunConfig`` and a run directory; it knows nothing about Hydra. Whatever
happens (an exception, a non-finite loss, a budget, SIGTERM), the ``finally`` block writes result.json.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

from powertrain.config import ConfigError, RunConfig, check_precision
from powertrain.results import exit_code, now_iso, skeleton, write_result

log = logging.getLogger("powertrain")
CHECKPOINT = "checkpoint.pt"


class StopRequest:
    """Set by SIGTERM/SIGUSR2 (Slurm preemption or time limit): the loop checkpoints and stops.

    A handler installed before ours (e.g. submitit's, which requeues the job and exits at once) is not
    called from the signal: the run would die without a checkpoint. It is deferred: ``chain()`` calls it
    once the checkpoint and result.json are written, so under submitit a SIGUSR2 still requeues the job,
    and the requeued job resumes in the same Hydra job directory. Without such a handler (a plain CLI
    run, SIG_DFL) the run just ends with status ``preempted`` and exit code 1.
    """

    def __init__(self) -> None:
        self.flag = False
        self.signum: Optional[int] = None
        self._previous: dict[int, Any] = {}
        self._deferred: Any = None

    def __call__(self) -> bool:
        return self.flag

    def _handle(self, signum: int, frame: Any) -> None:
        self.flag, self.signum = True, signum

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGUSR2):
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self.signum is not None and callable(self._previous.get(self.signum)):
            self._deferred = self._previous[self.signum]
        self._previous.clear()

    def chain(self) -> None:
        """Call the deferred earlier handler of the received signal (may requeue and exit)."""
        handler, self._deferred = self._deferred, None
        if handler is not None and self.signum is not None:
            try:
                handler(self.signum, None)
            except Exception as e:
                # submitit raises "Job not requeued because: timed-out too many times" (max_num_timeout
                # spent) to end the task; the run is checkpointed and its result.json says preempted,
                # so the task returns that result instead of failing its Hydra job (which aborts the
                # sweep before its summary). A requeue exits with SystemExit, which still propagates.
                log.warning("not requeued: %s", str(e).strip().splitlines()[0] if str(e).strip() else e)


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


def _rng_state() -> dict[str, Any]:
    import torch

    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any, fit_state: Any, ledger: Any,
                    attempts: list[dict[str, Any]], status: str, config: dict[str, Any]) -> None:
    """Atomically save everything a later attempt needs to continue exactly here."""
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save({
        "status": status,
        "config_json": _config_json(config),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": _rng_state(),
        "fit_state": asdict(fit_state),
        "ledger": ledger.to_dict(),
        "attempts": attempts,
    }, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def _config_json(config: dict[str, Any]) -> str:
    """The config as attempts of one run must share it (tracking, verbosity and resume may differ)."""
    comparable = {k: v for k, v in config.items() if k not in ("tracking", "verbose", "resume")}
    return json.dumps(comparable, sort_keys=True, default=str)


def _resumable_checkpoint(path: Path, config: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The checkpoint of a preempted attempt of *this* run, or None.

    Only a preempted attempt is continued (a finished run's checkpoint in a reused directory is not), and
    only with the same config, so a requeue never mixes two different setups in one ledger.
    """
    if not path.exists():
        return None
    ck = load_checkpoint(path)
    if ck.get("status") != "preempted":
        return None
    now = _config_json(config)
    if ck.get("config_json") != now:
        diff = _config_diff(json.loads(ck["config_json"]), json.loads(now))
        raise ConfigError("resume", str(path.parent),
                          f"the config of the preempted run there (differs in {diff}); pass the same "
                          "overrides to resume it, or choose another run directory")
    return ck


def _config_diff(old: Any, new: Any, prefix: str = "") -> str:
    """The first few dotted keys that differ between two config dicts, as ``key: old -> new``."""
    out: list[str] = []

    def walk(a: Any, b: Any, key: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k), b.get(k), f"{key}.{k}" if key else k)
        elif a != b:
            out.append(f"{key}: {a!r} -> {b!r}")

    walk(old, new, prefix)
    return ", ".join(out[:3]) + (" ..." if len(out) > 3 else "")


def run(cfg: RunConfig, run_dir: Path, overrides: Optional[list[str]] = None,
        sweep_id: Optional[str] = None, config_dict: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Train one setup and return its result (also written to ``run_dir/result.json``)."""
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
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
            print(carbon.hint(), flush=True)

        import torch

        from powertrain import hardware as hw
        from powertrain.energy import Ledger, build_meter
        from powertrain.optim import build_optimizer, build_scheduler
        from powertrain.paradigms import build_setup
        from powertrain.profiles import select_profile
        from powertrain.tracking import build_tracker
        from powertrain.train import FitState, fit

        device = hw.resolve_device(cfg.hardware.device)
        check_precision(cfg.precision, device.type)  # e.g. hardware=auto that landed on the CPU
        hw.set_cpu_threads(cfg.hardware.cpu_threads)
        profile = select_profile(cfg.hardware, device)
        result["hardware"] = hw.describe(device, profile)

        from powertrain.energy.gpu_knobs import apply_gpu_knobs

        knobs = apply_gpu_knobs(cfg.hardware, device)  # checked and set before training; restored in finally
        if knobs.record:
            result["hardware"]["gpu_knobs"] = knobs.record
        on_gpu = device.type == "cuda"
        # the device itself: the meter bills and synchronises the run's own GPU, not every visible one
        meter = build_meter(cfg.energy, device, cpu_tdp_w=None if on_gpu else profile.tdp_w,
                            gpu_tdp_w=profile.tdp_w if on_gpu else None)
        if cfg.verbose:
            print(f"energy: {meter.describe()}", flush=True)
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
        m_setup = meter.end_window("setup")

        state, attempts = FitState(), []
        ckpt_path = run_dir / CHECKPOINT
        ck = _resumable_checkpoint(ckpt_path, result["config"])
        if ck is not None:  # a requeued or resumed attempt: continue, and keep every joule so far
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            if scheduler is not None and ck["scheduler"] is not None:
                scheduler.load_state_dict(ck["scheduler"])
            _set_rng_state(ck["rng"])
            state = FitState(**ck["fit_state"])
            ledger = Ledger.from_dict(ck["ledger"])
            attempts = list(ck["attempts"])
            prior_wall_s = sum(a.get("wall_s", 0.0) for a in attempts)
            result["run"]["attempts"] = len(attempts) + 1
            if cfg.verbose:
                print(f"resuming {run_dir} at epoch {state.epoch} (attempt {len(attempts) + 1}, "
                      f"{ledger.total_j():.1f} J so far)", flush=True)
        ledger.add("setup", m_setup)

        if cfg.energy.idle_baseline_s > 0:
            from powertrain.energy.idle import mean_power_w, measure_idle

            # billed to its own phase: idle energy is not training energy, but it is not hidden either
            idle = measure_idle(meter, cfg.energy.idle_baseline_s)
            ledger.add("idle", idle)
            result["energy"]["idle_baseline_w"] = mean_power_w(idle)

        tracker = build_tracker(cfg.tracking)
        tracker.start({"id": result["run"]["id"], "dir": str(run_dir), "sweep_id": sweep_id,
                       "name": result["run"]["id"]}, result["config"], list(overrides or []))

        def on_epoch(row: dict[str, Any]) -> None:
            if intensity is not None:
                row["carbon_g"] = row["energy_j"] / carbon.J_PER_KWH * cfg.carbon.pue * intensity.g_per_kwh
            tracker.log_epoch(row)
            if cfg.verbose:
                print(f"epoch {row['epoch']:>3}/{cfg.max_epochs}  loss {row['train_loss']:.4f}  "
                      f"acc {row['accuracy'] * 100:6.2f}%  energy {row['energy_j']:9.1f} J  "
                      f"time {row['wall_s']:7.2f} s", flush=True)

        stop.install()
        fit_result = fit(
            train_model, setup.task, optimizer, meter, ledger, max_epochs=cfg.max_epochs, scheduler=scheduler,
            target_accuracy=cfg.target_accuracy, energy_budget_j=cfg.budget.energy_j,
            time_budget_s=cfg.budget.time_s, state=state, scaler=scaler, stop_requested=stop,
            on_epoch=on_epoch, clock_offset_s=prior_wall_s,
        )
        result["status"] = fit_result.status
        if fit_result.reason and fit_result.status != "completed":
            result["stop_reason"] = fit_result.reason
        this_attempt = {"started_at": result["run"]["started_at"], "wall_s": time.perf_counter() - t0,
                        "status": fit_result.status}
        if fit_result.status == "preempted" or cfg.save_checkpoint:
            save_checkpoint(ckpt_path, model, optimizer, scheduler, fit_result.state, ledger,
                            attempts + [this_attempt], fit_result.status, result["config"])
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
        _fill_result(result, cfg, fit_result, ledger, wall_s, intensity, profile)
        if not keep_previous_result:
            write_result(run_dir, result)
        if tracker is not None:
            tracker.finish(result)
        if cfg.verbose and not keep_previous_result:
            print_summary(result, run_dir)
        stop.chain()  # after checkpoint + result.json: e.g. submitit's requeue-and-exit on SIGUSR2
    return result


def _fill_result(result: dict[str, Any], cfg: RunConfig, fit_result: Any, ledger: Any, wall_s: float,
                 intensity: Any, profile: Any) -> None:
    result["run"]["finished_at"] = now_iso()
    result["time"]["wall_s"] = wall_s
    if fit_result is not None:
        st = fit_result.state
        m = result["metrics"]
        m.update({
            "final_accuracy": fit_result.final_metrics.get("accuracy"),
            "best_accuracy": st.best_accuracy if st.epoch else None,
            "final_loss": fit_result.final_loss,
            "final_eval_loss": fit_result.final_metrics.get("loss"),
            "epochs": st.epoch, "steps": st.steps,
            "reached_target": st.energy_to_target_j is not None,
            "energy_to_target_j": st.energy_to_target_j,
            "time_to_target_s": st.time_to_target_s,
        })
        if "tasks" in fit_result.final_metrics:
            m["tasks"] = fit_result.final_metrics["tasks"]
        result["time"].update({"train_s": st.train_s, "eval_s": st.eval_s})
        result["history"] = [{k: v for k, v in row.items() if k != "epoch_components_j"} for row in st.history]
    if ledger is not None and ledger.phases:
        e = result["energy"]
        e["train_j"], e["eval_j"] = ledger.phase_j("train"), ledger.phase_j("eval")
        e["total_j"] = e["train_j"] + e["eval_j"]
        e["setup_j"] = ledger.phase_j("setup")  # data loading + model building, outside total_j
        e["components"] = ledger.components()
        e["measured_fraction"] = ledger.measured_fraction()
        if e["idle_baseline_w"] is not None:
            idle_j = e["idle_baseline_w"] * ((result["time"]["train_s"] or 0) + (result["time"]["eval_s"] or 0))
            e["above_idle_j"] = max(e["total_j"] - idle_j, 0.0)
        upstream = result.get("upstream")
        if upstream:
            e["upstream_j"] = upstream.get("energy_j_amortized")
            # unknown upstream energy (e.g. published weights) must not read as zero
            e["total_with_upstream_j"] = None if e["upstream_j"] is None else e["total_j"] + e["upstream_j"]
    try:
        from powertrain import carbon

        result["carbon"] = carbon.account(cfg.carbon, intensity, profile or cfg.hardware,
                                          energy_j=result["energy"]["total_j"] or 0.0, wall_s=wall_s)
        upstream = result.get("upstream")
        if upstream and result["carbon"] is not None:
            c = result["carbon"]
            c["upstream_g"] = upstream.get("carbon_g_amortized")
            c["total_with_upstream_g"] = (None if c.get("total_g") is None or c["upstream_g"] is None
                                          else c["total_g"] + c["upstream_g"])
    except ConfigError:
        result["carbon"] = None
    except Exception as e:  # accounting must not lose the result file
        result["carbon"] = {"error": f"{type(e).__name__}: {e}"}


def print_summary(result: dict[str, Any], run_dir: Path) -> None:
    m, e, c, t = result["metrics"], result["energy"], result.get("carbon") or {}, result["time"]
    acc = f"{m['final_accuracy'] * 100:.2f}%" if m["final_accuracy"] is not None else "n/a"
    lines = [f"status: {result['status']}" + (f" ({result['error']})" if result["error"] else "")]
    lines.append(f"accuracy: {acc} (best {m['best_accuracy'] * 100:.2f}%)" if m["best_accuracy"] is not None
                 else f"accuracy: {acc}")
    if e["total_j"] is not None:
        share = e["measured_fraction"]
        share_txt = f"{share * 100:.0f}% measured" if share is not None else "nothing metered"
        setup = f"; setup {e['setup_j']:.1f} J not in total" if e.get("setup_j") else ""
        lines.append(f"energy: {e['total_j']:.1f} J = {e['total_j'] / 3600:.4f} Wh ({share_txt}; "
                     f"train {e['train_j']:.1f} J, eval {e['eval_j']:.1f} J{setup})")
    if m["energy_to_target_j"] is not None:
        target = m["target_accuracy"] if m["target_accuracy"] is not None else "(every task's)"
        lines.append(f"energy to target {target}: {m['energy_to_target_j']:.1f} J")
    if c.get("total_g") is not None:
        lines.append(f"carbon: {c['total_g']:.4f} gCO2e ({c['region']}, {c['intensity_g_per_kwh']:.0f} g/kWh, "
                     f"operational {c['operational_g']:.4f} g + embodied {c['embodied_g']:.4f} g)")
    lines.append(f"time: {t['wall_s']:.1f} s wall")
    lines.append(f"result: {run_dir / 'result.json'}")
    print("\n".join(lines), flush=True)


__all__ = ["run", "exit_code", "StopRequest", "save_checkpoint", "load_checkpoint"]
