"""The loop's stop conditions, seen through ``run.run`` the way a user sees them: status, epochs, energy."""

from __future__ import annotations

import json
import math

import pytest

from powertrain.run import run


def test_max_epochs_completes_every_epoch(tiny_cfg, tmp_path):
    r = run(tiny_cfg(max_epochs=3), tmp_path)
    assert r["status"] == "completed" and r["error"] is None
    m = r["metrics"]
    assert m["epochs"] == 3 and m["steps"] == 3 * 4  # 256 samples / batch 64
    assert [row["epoch"] for row in r["history"]] == [1, 2, 3]
    assert m["reached_target"] is False and m["energy_to_target_j"] is None
    # the cumulative energy curve rises every epoch and ends at the total
    curve = [row["energy_j"] for row in r["history"]]
    assert all(b > a for a, b in zip(curve, curve[1:]))
    assert curve[-1] == pytest.approx(r["energy"]["total_j"])


def test_target_accuracy_stops_early_and_records_energy_to_target(tiny_cfg, tmp_path):
    r = run(tiny_cfg(max_epochs=30, target_accuracy=0.6), tmp_path)
    m, e = r["metrics"], r["energy"]
    assert r["status"] == "target_reached"
    assert m["epochs"] < 30 and m["reached_target"] is True
    assert m["final_accuracy"] >= 0.6
    # the epoch before the last was still under target, or it would have stopped there
    assert len(r["history"]) == 1 or r["history"][-2]["accuracy"] < 0.6
    assert 0 < m["energy_to_target_j"] <= e["total_j"]
    assert 0 < m["time_to_target_s"] <= r["time"]["wall_s"]


def test_unreachable_target_runs_to_max_epochs(tiny_cfg, tmp_path):
    r = run(tiny_cfg(max_epochs=2, target_accuracy=1.0, **{"dataset.noise": 8.0}), tmp_path)
    assert r["status"] == "completed" and r["metrics"]["epochs"] == 2
    assert r["metrics"]["reached_target"] is False and r["metrics"]["energy_to_target_j"] is None


def test_energy_budget_stops_after_the_epoch_that_spends_it(tiny_cfg, tmp_path):
    r = run(tiny_cfg(max_epochs=10, **{"budget.energy_j": 1e-3}), tmp_path)
    assert r["status"] == "budget_exhausted"
    assert r["metrics"]["epochs"] == 1
    assert "energy budget" in r["stop_reason"]
    assert r["energy"]["total_j"] >= 1e-3


def test_time_budget_stops_the_run(tiny_cfg, tmp_path):
    r = run(tiny_cfg(max_epochs=10, **{"budget.time_s": 1e-3}), tmp_path)
    assert r["status"] == "budget_exhausted"
    assert r["metrics"]["epochs"] == 1 and "time budget" in r["stop_reason"]


def test_divergence_is_reported_and_keeps_the_energy_spent(tiny_cfg, tmp_path):
    r = run(tiny_cfg(max_epochs=5, **{"optimizer.lr": 1e6}), tmp_path)
    assert r["status"] == "diverged"
    assert "non-finite training loss in epoch 1" in r["stop_reason"]
    assert r["metrics"]["epochs"] == 0 and r["metrics"]["steps"] == 4
    assert r["energy"]["total_j"] > 0 and r["energy"]["train_j"] > 0
    # JSON has no NaN: the file holds null, and stays strict JSON
    on_disk = json.loads((tmp_path / "result.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert on_disk["status"] == "diverged"
    assert r["metrics"]["final_loss"] is None or not math.isfinite(r["metrics"]["final_loss"])
    assert on_disk["metrics"]["final_loss"] is None


def test_same_seed_same_curve_and_other_seed_another(tiny_cfg, tmp_path):
    def curve(seed: int, name: str) -> list[tuple[float, float]]:
        r = run(tiny_cfg(max_epochs=3, seed=seed), tmp_path / name)
        return [(row["train_loss"], row["accuracy"]) for row in r["history"]]

    first = curve(0, "a")
    assert curve(0, "b") == first  # exactly, on the CPU
    assert curve(1, "c") != first


def test_cosine_schedule_decays_the_learning_rate_to_zero(tiny_cfg, tmp_path):
    r = run(tiny_cfg(max_epochs=4, **{"optimizer.scheduler.name": "cosine"}), tmp_path)
    lrs = [row["lr"] for row in r["history"]]
    assert lrs[0] < 0.05 and all(b < a for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "rmsprop"])
def test_each_optimizer_learns(tiny_cfg, tmp_path, optimizer):
    r = run(tiny_cfg(max_epochs=3, **{"optimizer.name": optimizer, "optimizer.lr": 1e-3,
                                      "optimizer.momentum": 0.0}), tmp_path)
    losses = [row["train_loss"] for row in r["history"]]
    assert r["status"] == "completed" and losses[-1] < losses[0]
    assert r["metrics"]["final_accuracy"] > 0.3  # 10 classes: chance is 0.1


@pytest.fixture
def restore_threads():
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_slurm_cpu_grant_sizes_the_thread_pool(tiny_cfg, tmp_path, monkeypatch, restore_threads):
    # two array tasks on one node must not each start a full OpenMP pool
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    r = run(tiny_cfg(max_epochs=1), tmp_path / "slurm")
    assert r["hardware"]["cpu_threads"] == 1
    # an explicit setting wins over Slurm's grant
    r = run(tiny_cfg(max_epochs=1, **{"hardware.cpu_threads": 2}), tmp_path / "explicit")
    assert r["hardware"]["cpu_threads"] == 2


def test_a_slow_progress_save_never_lands_over_the_final_checkpoint(tiny_cfg, tmp_path, monkeypatch):
    # a progress save still being written when training ends (a slow disk) must not overwrite the final
    # checkpoint: a resume would read its "running" attempt as lost and could go back an epoch
    import time

    import torch

    from powertrain.run.checkpoint import Checkpoint

    write = Checkpoint.write

    def slow_running_write(self, snapshot):
        if snapshot["status"] == "running":
            time.sleep(1.5)  # far longer than the two tiny epochs left
        write(self, snapshot)

    monkeypatch.setattr(Checkpoint, "write", slow_running_write)
    r = run(tiny_cfg(max_epochs=3, save_checkpoint=True, **{"checkpoint.min_interval_s": 0.0}), tmp_path)
    assert r["status"] == "completed" and r["progress"]["saves"] >= 1
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ck["status"] == "completed" and ck["fit_state"]["epoch"] == 3
    assert [a["status"] for a in ck["attempts"]] == ["completed"]
