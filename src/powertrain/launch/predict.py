"""``predict=true``: what a run or a sweep will cost, from a few metered steps, before anything trains.

Method. Jobs that share a *cost configuration* (model, dataset, batch sizes, precision, compile, hardware,
paradigm, distributed world size, optimizer; ``COST_KEYS``) cost the same per step, so each one is
profiled once: build it as a run does (the setup is metered, as in a run), take ``WARM_STEPS`` training
steps in a window of their own (their extra cost over steady steps is the one-off warm-up every run pays),
then ``CHUNKS`` metered chunks of steady steps (about one epoch in all, or one step per chunk when a step
is slow) and one metered evaluation after an unmetered one. A job's prediction is

    energy_j = warm-up extra + epochs x (steps_per_epoch x J/step + J/eval)

with ``epochs`` = max_epochs, or fewer where an energy or time budget would stop it; a target accuracy
may stop a run earlier, which the prediction states and does not guess (it is then an upper bound).
Setup energy is predicted apart, as result.json reports it apart. Uncertainty: the spread of J/step
between chunks (standard error) combined with a stated model error ``MODEL_ERROR``; jobs' errors are
taken as fully correlated, so the total's ± is the sum of the jobs'.

In a multirun each job writes ``<sweep>/.predict/job-<n>.json`` (profiles are shared through
``.predict/profile-<key>.json``), and at the end of the multirun ``finish_sweep`` (called by the sweep
summary callback) writes ``predict.json`` at the sweep root and prints the table. Nothing trains to
completion and no result.json is written.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import math
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from powertrain.config import ConfigError, RunConfig, get_dotted
from powertrain.energy.base import J_PER_KWH

SCHEMA = "powertrain.predict/1"
PREDICT_JSON = "predict.json"
PREDICT_DIR = ".predict"  # a dot dir: the sweep report does not take it for a job
COST_KEYS = ("model", "dataset", "batch_size", "eval_batch_size", "precision", "compile", "hardware",
             "paradigm", "distributed", "optimizer.name")
WARM_STEPS = 2
CHUNKS = 5
CHUNK_MIN_S = 0.05  # a chunk grows to at least this long (or its step cap), so window overheads stay small
MODEL_ERROR = 0.15  # stated: per-epoch costs beyond the steps (shuffling, syncs, scheduler) and drift
METHOD = (f"profile per cost configuration: {WARM_STEPS} warm-up steps, {CHUNKS} metered chunks of steady "
          "steps (about one epoch in all), one metered evaluation; energy = warm-up extra + epochs x "
          "(steps/epoch x J/step + J/eval); setup predicted apart (outside total_j, as in result.json)")


def cost_key(config: Mapping[str, Any]) -> str:
    """A short hash of what changes a job's cost per step (``COST_KEYS`` of its resolved config)."""
    picked = {k: get_dotted(config, k, None) for k in COST_KEYS}
    return hashlib.sha1(json.dumps(picked, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _steps_per_epoch(task: Any) -> int:
    """The task's own count where it has one (``SupervisedTask.steps_per_epoch``), else an epoch counted:
    a ``train`` attribute with a length is not always the batches (multitask's is a dict of tasks)."""
    spe = getattr(task, "steps_per_epoch", None)
    return spe if spe is not None else sum(1 for _ in task.batches(0))


def _measure_steps(meter: Any, training: Any) -> tuple[int, Any, list[tuple[int, float, float]], Any]:
    """Steps per epoch, the warm-up window, ``CHUNKS`` metered chunks (steps, J, s) and one metered eval."""
    from powertrain.train import train_step

    task, model, optimizer, scaler = training.setup.task, training.model, training.optimizer, training.scaler
    spe = _steps_per_epoch(task)
    batches = itertools.chain.from_iterable(task.batches(e) for e in itertools.count())
    model.train()

    def step() -> None:
        train_step(task, model, optimizer, next(batches), scaler)

    meter.begin_window("warm")
    for _ in range(WARM_STEPS):
        step()
    m_warm = meter.end_window("warm")  # syncs the device
    cap = max(1, math.ceil(spe / CHUNKS))  # about one epoch of steps in all
    chunks: list[tuple[int, float, float]] = []
    for _ in range(CHUNKS):
        meter.begin_window("train")
        n, t0 = 0, time.perf_counter()
        while n < 1 or (n < cap and time.perf_counter() - t0 < CHUNK_MIN_S):
            step()
            n += 1
        m = meter.end_window("train")
        chunks.append((n, m.total_j, m.time_s))
    task.evaluate(model)  # unmetered: its first pass pays one-off costs a run pays once
    meter.begin_window("eval")
    task.evaluate(model)
    return spe, m_warm, chunks, meter.end_window("eval")


def profile(cfg: RunConfig) -> dict[str, Any]:
    """Meter a few training steps and one evaluation of ``cfg``'s setup; train nothing to the end."""
    from powertrain.hardware.knobs import apply_gpu_knobs
    from powertrain.run.build import build_training, make_meter, open_device

    t_start = time.perf_counter()
    dev = open_device(cfg)  # built as run() builds it, so the profile is of what the run would train
    knobs = apply_gpu_knobs(cfg.hardware, dev.device)  # the run would train under them: so does its profile
    meter = make_meter(cfg, dev)
    try:
        meter.begin_window("setup")
        training = build_training(cfg, dev)
        m_setup = meter.end_window("setup")
        spe, m_warm, chunks, m_eval = _measure_steps(meter, training)
        components = sorted({c.name: c.method for c in m_eval.components}.items())
    finally:
        meter.close()
        knobs.restore()
    device = dev.device
    steps = sum(n for n, _, _ in chunks)
    step_j = sum(j for _, j, _ in chunks) / steps
    step_s = sum(s for _, _, s in chunks) / steps
    per_step = [j / n for n, j, _ in chunks]
    spread = statistics.stdev(per_step) / step_j if len(per_step) > 1 and step_j > 0 else 0.0
    return {
        "steps_per_epoch": spe, "profiled_steps": WARM_STEPS + steps, "step_j": step_j, "step_s": step_s,
        "step_j_spread": spread,  # std/mean of J/step between chunks
        "warm_extra_j": max(m_warm.total_j - WARM_STEPS * step_j, 0.0),
        "warm_extra_s": max(m_warm.time_s - WARM_STEPS * step_s, 0.0),
        "eval_j": m_eval.total_j, "eval_s": m_eval.time_s, "setup_j": m_setup.total_j, "setup_s": m_setup.time_s,
        "profile_wall_s": time.perf_counter() - t_start, "device": str(device), "meter": meter.describe(),
        "components": [f"{name} ({method})" for name, method in components],
    }


def predict_job(cfg: RunConfig, prof: Mapping[str, Any]) -> dict[str, Any]:
    """A job's predicted energy, wall time and carbon from its cost configuration's profile."""
    per_epoch_j = prof["steps_per_epoch"] * prof["step_j"] + prof["eval_j"]
    per_epoch_s = prof["steps_per_epoch"] * prof["step_s"] + prof["eval_s"]
    epochs, assumptions = cfg.max_epochs, []
    for budget, per_epoch, unit, key in ((cfg.budget.energy_j, per_epoch_j, "J", "budget.energy_j"),
                                         (cfg.budget.time_s, per_epoch_s, "s", "budget.time_s")):
        if budget is not None and per_epoch > 0:
            # a run stops at the end of the first epoch that reaches its budget
            stop = max(1, math.ceil(budget / per_epoch))
            if stop < epochs:
                epochs = stop
                assumptions.append(f"{key}={budget:g} {unit} stops it after about {stop} epoch(s)")
    if cfg.target_accuracy is not None:
        assumptions.append(f"runs all {epochs} epochs; target_accuracy={cfg.target_accuracy:g} may stop it "
                           "earlier (this is then an upper bound)")
    energy_j = prof["warm_extra_j"] + epochs * per_epoch_j
    wall_s = prof["setup_s"] + prof["warm_extra_s"] + epochs * per_epoch_s
    rel = math.hypot(prof["step_j_spread"] / math.sqrt(CHUNKS), MODEL_ERROR)
    carbon_g = None
    from powertrain import carbon

    intensity = carbon.resolve(cfg.carbon)
    if intensity is not None:
        carbon_g = carbon.operational_g(cfg.carbon, intensity, energy_j)
    return {"epochs": epochs, "steps": epochs * prof["steps_per_epoch"], "energy_j": energy_j,
            "energy_kwh": energy_j / J_PER_KWH, "uncertainty_j": rel * energy_j, "uncertainty_share": rel,
            "setup_j": prof["setup_j"], "wall_s": wall_s, "carbon_g": carbon_g, "assumptions": assumptions}


def _profile_cached(cfg: RunConfig, key: str, cache: Optional[Path]) -> dict[str, Any]:
    path = None if cache is None else cache / f"profile-{key}.json"
    if path is not None and path.is_file():  # an earlier job of this sweep had the same cost per step
        return {**json.loads(path.read_text()), "shared": True}
    prof = profile(cfg)
    if path is not None:
        from powertrain.results import write_json_atomic

        write_json_atomic(path, prof)
    return {**prof, "shared": False}


def predict_task(cfg: RunConfig, run_dir: Path, overrides: list[str], config: Mapping[str, Any],
                 sweep_dir: Optional[Path], job: str) -> dict[str, Any]:
    """The ``predict=true`` job: profile (or reuse a profile), predict, record; a plain run also prints."""
    from powertrain.results import write_json_atomic

    if cfg.study.driver is not None and cfg.study.part is None:
        raise ConfigError("predict", True, "false with a study preset (predict a grid of its runs with -m)")
    key = cost_key(config)
    cache = None if sweep_dir is None else Path(sweep_dir) / PREDICT_DIR
    prof = _profile_cached(cfg, key, cache)
    entry = {"job": job, "overrides": [o for o in overrides if not o.startswith("predict=")],
             "cost_key": key, "profile_shared": prof.pop("shared"), **predict_job(cfg, prof)}
    if cache is not None:
        write_json_atomic(cache / f"job-{job}.json", {**entry, "profile": prof})
        return {"status": "predicted", **{k: entry[k] for k in ("energy_j", "wall_s")}}
    record = assemble([{**entry, "job": "", "profile": prof}], parallelism=(1, "a single run"))
    write_json_atomic(Path(run_dir) / PREDICT_JSON, record)
    if cfg.verbose:
        print(format_prediction(record, Path(run_dir)), flush=True)
    return {"status": "predicted", "energy_j": entry["energy_j"], "wall_s": entry["wall_s"]}


def launcher_parallelism(launcher: Mapping[str, Any], n_jobs: int) -> tuple[int, str]:
    """How many jobs the launcher runs at once, and in words."""
    if launcher.get("n_jobs") is not None:  # joblib
        import os

        n = int(launcher["n_jobs"])
        n = (os.cpu_count() or 1) if n <= 0 else n
        return max(1, min(n, n_jobs)), f"joblib n_jobs={launcher['n_jobs']}"
    if launcher.get("array_parallelism") is not None:  # submitit: local or a Slurm array
        n = int(launcher["array_parallelism"])
        return max(1, min(n, n_jobs)), (f"array_parallelism={n} (queue waits not included)")
    return 1, "basic launcher: one job after another"


def makespan_s(walls: list[float], slots: int) -> float:
    """Wall time of jobs started in order on ``slots`` parallel workers (each takes the next free one)."""
    free = [0.0] * max(slots, 1)
    for w in walls:
        heapq.heappush(free, heapq.heappop(free) + w)
    return max(free)


def assemble(entries: list[dict[str, Any]], parallelism: tuple[int, str]) -> dict[str, Any]:
    """predict.json: jobs, their profiles, totals (energy, setup, carbon, wall serial and parallel)."""
    profiles = {e["cost_key"]: e.pop("profile") for e in entries if "profile" in e}
    walls = [e["wall_s"] for e in entries]
    carbons = [e["carbon_g"] for e in entries]
    total_j = sum(e["energy_j"] for e in entries)
    return {
        "schema": SCHEMA, "method": METHOD, "model_error_share": MODEL_ERROR,
        "uncertainty": "± per job: chunk spread of J/step (standard error) and the model error, combined; "
                       "total: the sum of the jobs' (errors taken as correlated)",
        "parallelism": {"jobs_at_once": parallelism[0], "launcher": parallelism[1]},
        "total": {"jobs": len(entries), "cost_configs": len(profiles), "energy_j": total_j,
                  "energy_kwh": total_j / J_PER_KWH, "uncertainty_j": sum(e["uncertainty_j"] for e in entries),
                  "setup_j": sum(e["setup_j"] for e in entries),
                  "carbon_g": sum(carbons) if carbons and all(c is not None for c in carbons) else None,
                  "wall_s_serial": sum(walls), "wall_s_parallel": makespan_s(walls, parallelism[0]),
                  "profile_wall_s": sum(p["profile_wall_s"] for p in profiles.values())},
        "jobs": entries, "profiles": profiles,
    }


def finish_sweep(sweep_dir: Path, launcher: Mapping[str, Any], print_table: bool = True) -> Optional[Path]:
    """Gather the jobs' predictions of a ``predict=true`` multirun into ``predict.json`` and print them."""
    from powertrain.results import write_json_atomic

    sweep_dir = Path(sweep_dir)
    files = sorted((sweep_dir / PREDICT_DIR).glob("job-*.json"),
                   key=lambda p: (0, int(p.stem[4:])) if p.stem[4:].isdigit() else (1, p.stem))
    if not files:
        print(f"predict: no job predicted under {sweep_dir}", flush=True)
        return None
    entries = [json.loads(p.read_text()) for p in files]
    record = assemble(entries, launcher_parallelism(launcher, len(entries)))
    path = sweep_dir / PREDICT_JSON
    write_json_atomic(path, record)
    if print_table:
        print(format_prediction(record, sweep_dir), flush=True)
    return path


def _wall(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.2f} h"


def format_prediction(record: Mapping[str, Any], where: Path) -> str:
    """The terminal table: one line per job, the total, the method and its assumptions."""
    lines = [("job", "predicted_J", "±J", "kWh", "carbon_g", "wall", "epochs", "overrides")]
    for e in record["jobs"]:
        lines.append((str(e["job"]), f"{e['energy_j']:.1f}", f"{e['uncertainty_j']:.1f}", f"{e['energy_kwh']:.2e}",
                      "-" if e["carbon_g"] is None else f"{e['carbon_g']:.4f}", _wall(e["wall_s"]),
                      str(e["epochs"]), " ".join(e["overrides"])))
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in lines]
    t, par = record["total"], record["parallelism"]
    carbon = "" if t["carbon_g"] is None else f", {t['carbon_g']:.4f} gCO2e"
    out.append(f"predicted total: {t['energy_j']:.1f} ± {t['uncertainty_j']:.1f} J = {t['energy_kwh']:.2e} kWh"
               f"{carbon} (setup {t['setup_j']:.1f} J apart) over {t['jobs']} job(s), {t['cost_configs']} "
               f"cost configuration(s) profiled in {_wall(t['profile_wall_s'])}")
    out.append(f"predicted wall time: {_wall(t['wall_s_serial'])} serial, {_wall(t['wall_s_parallel'])} with "
               f"{par['jobs_at_once']} at once ({par['launcher']})")
    out.append(f"method: {record['method']}; {record['uncertainty']}, model error "
               f"{record['model_error_share'] * 100:.0f} %")
    for note in sorted({a for e in record["jobs"] for a in e["assumptions"]}):
        out.append(f"assumption: {note}")
    if t["carbon_g"] is None:
        out.append("carbon: no region set (carbon.region=...) for a carbon prediction")
    dir_key = "hydra.sweep.dir" if t["jobs"] > 1 or record["jobs"][0]["job"] != "" else "hydra.run.dir"
    out.append(f"prediction: {where / PREDICT_JSON}; nothing was trained. Run the same command without "
               f"predict=true and with {dir_key}={where} to see predicted vs actual in its report.")
    return "\n".join(out)


__all__ = ["COST_KEYS", "PREDICT_JSON", "assemble", "cost_key", "finish_sweep", "format_prediction",
           "launcher_parallelism", "makespan_s", "predict_job", "predict_task", "profile"]
