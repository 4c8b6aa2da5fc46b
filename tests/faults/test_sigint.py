"""Ctrl-C (SIGINT from ``os.kill``, as the terminal sends it): one line, status interrupted, exit 130."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from faults.proc import SMALL, Run, result_json, wait_for
from powertrain.report import report
from powertrain.run.signals import StopRequest


@pytest.mark.slow
def test_ctrl_c_checkpoints_says_one_line_exits_130_and_resumes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run = Run([*SMALL, "max_epochs=6", f"hydra.run.dir={run_dir}"], tmp_path)
    run.wait_line("epoch   1/6")
    os.kill(run.proc.pid, signal.SIGINT)
    assert run.finish() == 130
    err = run.stderr()
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert [ln for ln in err.splitlines() if ln.startswith("powertrain:")] == [
        "powertrain: Ctrl-C: stopping after this step with a checkpoint (Ctrl-C again to leave at once)"]
    result = result_json(run_dir)
    assert result["status"] == "interrupted" and f"resume={run_dir}" in result["stop_reason"]
    assert 1 <= result["metrics"]["epochs"] < 6 and len(result["history"]) == result["metrics"]["epochs"]
    assert (run_dir / "checkpoint.pt").exists()

    again = Run([f"resume={run_dir}"], tmp_path)
    assert again.finish() == 0, again.stderr()
    final = result_json(run_dir)
    assert final["status"] == "completed" and [h["epoch"] for h in final["history"]] == [1, 2, 3, 4, 5, 6]
    assert [a["status"] for a in final["run"]["attempt_history"]] == ["interrupted", "completed"]


@pytest.mark.slow
def test_ctrl_c_in_a_sweep_stops_it_and_writes_its_summary(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    run = Run(["-m", "seed=0,1,2", *SMALL, "max_epochs=4", f"hydra.sweep.dir={sweep}"], tmp_path)
    run.wait_line("epoch   1/4")  # job 0 is training
    os.kill(run.proc.pid, signal.SIGINT)
    assert run.finish() == 130
    err = run.stderr()
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith(f"powertrain: interrupted (Ctrl-C); sweep summary: {sweep}")
    rows = report(sweep, write=False)["rows"]
    assert [(r["job"], r["status"]) for r in rows] == [("0", "interrupted"), ("1", "missing"), ("2", "missing")]
    assert rows[1]["error"].startswith("never started") and "seed=1" in rows[1]["overrides"]


def test_a_second_ctrl_c_leaves_at_once() -> None:
    # the real signal, to this process: the first asks for a stop, the second raises at once
    stop = StopRequest()
    stop.install()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        wait_for(lambda: stop.flag, "the first Ctrl-C to be seen", timeout_s=10)
        assert stop.interrupted
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            wait_for(lambda: False, "the second Ctrl-C to raise", timeout_s=10)
    finally:
        stop.uninstall()
        stop.release()


def test_a_ctrl_c_while_the_result_is_written_waits_for_it() -> None:
    stop = StopRequest()
    stop.install()
    stop.uninstall()  # the run's finish: writing result.json now
    os.kill(os.getpid(), signal.SIGINT)
    wait_for(lambda: stop._held, "the Ctrl-C to be held", timeout_s=10)  # nothing raised meanwhile
    with pytest.raises(KeyboardInterrupt):
        stop.release()  # written: now it counts
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
