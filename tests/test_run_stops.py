"""How a run that stops early says so (``stop_reason``), in-process through ``run.run``: a preemption whose
final checkpoint could not be written, and a Ctrl-C before training started."""

from __future__ import annotations

import errno
import os
import signal
from typing import Any

import pytest

from powertrain.run import run


def _signal_at_step(monkeypatch: pytest.MonkeyPatch, signum: int, step: int, times: int = 1) -> None:
    """Send ``signum`` to this process (the real handler sees it) ``times`` times after step ``step``."""
    from powertrain.train import loop

    real, count = loop.train_step, [0]

    def train_step(*a: Any, **k: Any) -> Any:
        out = real(*a, **k)
        count[0] += 1
        if count[0] == step:
            for _ in range(times):
                os.kill(os.getpid(), signum)
        return out

    monkeypatch.setattr(loop, "train_step", train_step)


def _full_disk_for_the_final_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    from powertrain.run.checkpoint import Checkpoint

    write = Checkpoint.write

    def refuse_final(self: Any, snapshot: dict[str, Any]) -> None:
        if snapshot["status"] != "running":  # progress saves go through; the end's save hits a full disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write(self, snapshot)

    monkeypatch.setattr(Checkpoint, "write", refuse_final)


def test_a_preemption_whose_checkpoint_failed_does_not_say_checkpointed(tiny_cfg, tmp_path, monkeypatch):
    _full_disk_for_the_final_checkpoint(monkeypatch)
    _signal_at_step(monkeypatch, signal.SIGTERM, step=6)  # in epoch 2 (4 steps an epoch)
    r = run(tiny_cfg(max_epochs=4, **{"checkpoint.progress": False}), tmp_path)
    assert r["status"] == "preempted" and r["checkpoint_error"].startswith("checkpoint not saved: ")
    assert r["stop_reason"] == (f"signal SIGTERM: not checkpointed ({r['checkpoint_error']}); "
                                "no checkpoint was saved")
    assert not (tmp_path / "checkpoint.pt").exists()


def test_a_failed_final_checkpoint_names_the_progress_save_that_resumes(tiny_cfg, tmp_path, monkeypatch):
    _full_disk_for_the_final_checkpoint(monkeypatch)
    _signal_at_step(monkeypatch, signal.SIGTERM, step=6)
    r = run(tiny_cfg(max_epochs=4, **{"checkpoint.min_interval_s": 0.0}), tmp_path)
    assert r["status"] == "preempted" and "checkpoint_error" in r
    assert r["stop_reason"].startswith(f"signal SIGTERM: not checkpointed ({r['checkpoint_error']}); "
                                       "the checkpoint after epoch 1 is kept: ")
    assert r["stop_reason"].endswith(f"resume={tmp_path} continues from it")
    assert (tmp_path / "checkpoint.pt").exists()


def test_a_preemption_that_checkpointed_says_so(tiny_cfg, tmp_path, monkeypatch):
    _signal_at_step(monkeypatch, signal.SIGTERM, step=6)
    r = run(tiny_cfg(max_epochs=4), tmp_path)
    assert r["status"] == "preempted" and "checkpoint_error" not in r
    assert r["stop_reason"] == f"signal SIGTERM: checkpointed; resume={tmp_path} continues it"
    monkeypatch.undo()  # the same run again, unsignalled: it continues the checkpoint
    again = run(tiny_cfg(max_epochs=4), tmp_path)
    assert again["status"] == "completed" and [h["epoch"] for h in again["history"]] == [1, 2, 3, 4]
    assert [a["status"] for a in again["run"]["attempt_history"]] == ["preempted", "completed"]


def test_one_ctrl_c_before_training_is_not_called_twice(tiny_cfg, tmp_path, monkeypatch):
    # Python's own handler raises it during the idle baseline, before the stop handler is installed
    from powertrain.energy import idle

    def interrupted_baseline(*a: Any, **k: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(idle, "measure_idle", interrupted_baseline)
    r = run(tiny_cfg(max_epochs=2, **{"energy.idle_baseline_s": 0.5}), tmp_path)
    assert r["status"] == "interrupted"
    assert r["stop_reason"] == "Ctrl-C (SIGINT) before training: left at once; no checkpoint was saved"


def test_a_second_ctrl_c_while_training_is_called_twice(tiny_cfg, tmp_path, monkeypatch):
    _signal_at_step(monkeypatch, signal.SIGINT, step=6, times=2)  # the handler raises on the second
    r = run(tiny_cfg(max_epochs=4, **{"checkpoint.progress": False}), tmp_path)
    assert r["status"] == "interrupted"
    assert r["stop_reason"] == "Ctrl-C (SIGINT) twice: left at once; no checkpoint was saved"


def test_a_second_ctrl_c_names_the_progress_save_still_being_written(tiny_cfg, tmp_path, monkeypatch):
    # the save after epoch 1 is still in the writer's hands when the second Ctrl-C comes: it lands before
    # result.json, so the reason names it (it said "no checkpoint was saved")
    import time

    from powertrain.run.checkpoint import Checkpoint

    write = Checkpoint.write

    def slow_write(self: Any, snapshot: dict[str, Any]) -> None:
        time.sleep(0.5)
        write(self, snapshot)

    monkeypatch.setattr(Checkpoint, "write", slow_write)
    _signal_at_step(monkeypatch, signal.SIGINT, step=5, times=2)  # the first step after epoch 1's save
    r = run(tiny_cfg(max_epochs=4, **{"checkpoint.min_interval_s": 0.0}), tmp_path)
    assert r["status"] == "interrupted"
    assert r["stop_reason"] == "Ctrl-C (SIGINT) twice: left at once; the checkpoint after epoch 1 is kept"
