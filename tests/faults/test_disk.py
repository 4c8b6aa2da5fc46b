"""A full disk and a read-only directory, for real: the kernel refuses the writes.

A full disk is the process's file-size limit (RLIMIT_FSIZE, set with ``prlimit`` on the running process
or before it starts): every write past it fails with EFBIG, as a full disk fails with ENOSPC, on every
machine and without root. A read-only directory is a read-only tmpfs where we may mount one (root),
else a directory without write permission.
"""

from __future__ import annotations

import os
import resource
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from faults.proc import SMALL, Run, result_json, temp_files, wait_for
from powertrain.results import load_result

pytestmark = pytest.mark.slow


def _errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("powertrain: error:")]


def test_disk_full_mid_run_keeps_the_last_good_result_and_says_so_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run = Run([*SMALL, "max_epochs=40", f"hydra.run.dir={run_dir}"], tmp_path)
    run.wait_line("epoch   2/40")
    wait_for(lambda: (result_json(run_dir) or {}).get("metrics", {}).get("epochs", 0) >= 1, "an epoch saved",
             proc=run.proc)
    resource.prlimit(run.proc.pid, resource.RLIMIT_FSIZE, (1, 1))  # from now on no file can grow
    assert run.finish() == 1
    err = run.stderr()
    assert "Traceback" not in err and len(_errors(err)) == 1, err
    line = _errors(err)[0]
    assert "could not save progress after epoch" in line and "File too large" in line
    assert "result.json not written" in line and f"resume={run_dir}" in line
    result, status, _ = load_result(run_dir)  # the last good one: it says running, and its writer is gone
    assert status == "lost" and result["metrics"]["epochs"] >= 1
    assert len(result["history"]) == result["metrics"]["epochs"] and result["energy"]["total_j"] > 0
    assert temp_files(run_dir) == []  # the refused writes left nothing behind

    again = Run([f"resume={run_dir}", "max_epochs=40"], tmp_path)  # space again: it continues
    assert again.finish() == 0, again.stderr()
    assert result_json(run_dir)["status"] == "completed"
    assert [a["status"] for a in result_json(run_dir)["run"]["attempt_history"]] == ["lost", "completed"]


def _limit(n_bytes: int):
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, n_bytes))

    return preexec


def test_a_checkpoint_that_cannot_be_saved_does_not_fail_a_finished_run(tmp_path: Path) -> None:
    # a 330 kB checkpoint (an MLP on 16x16 inputs, with SGD momentum) and a result.json of a few kB: a
    # 100 kB limit refuses only the checkpoint, at the end (progress saves off)
    run_dir = tmp_path / "run"
    args = ["dataset=synthetic", "dataset.image_size=16", "dataset.train_size=256", "dataset.test_size=64",
            "model=dense_poly", "hardware.device=cpu", "max_epochs=2", "checkpoint.progress=false",
            f"hydra.run.dir={run_dir}"]
    run = Run(args, tmp_path, preexec=_limit(100_000))
    assert run.finish() == 0, run.stderr()
    result = result_json(run_dir)
    assert result["status"] == "completed" and result["metrics"]["epochs"] == 2
    assert result["checkpoint_error"] == "checkpoint not saved: File too large"
    assert not (run_dir / "checkpoint.pt").exists() and temp_files(run_dir) == []
    assert "checkpoint not saved" in run.stderr() and "Traceback" not in run.stderr()


def test_a_full_disk_at_the_start_is_refused_before_any_work(tmp_path: Path) -> None:
    run_dir = tmp_path / "out" / "run"
    run = Run([*SMALL, "max_epochs=1", f"hydra.run.dir={run_dir}"], tmp_path, preexec=_limit(1024))
    assert run.finish() == 2
    assert _errors(run.stderr()) == [run.stderr().strip()], run.stderr()
    assert run.stderr().startswith(f"powertrain: error: hydra.run.dir='{run_dir}' is not allowed: a directory "
                                   "this process can write to")
    assert "File too large" in run.stderr()
    assert not (tmp_path / "out").exists()  # nothing was created


def _read_only(path: Path):
    """A read-only directory: a tmpfs mounted read-only where we may mount (root), else mode 0555."""
    path.mkdir()
    if os.geteuid() == 0:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            return lambda: subprocess.run(["umount", str(path)], check=True)
        pytest.skip(f"root, but cannot mount a read-only tmpfs here: {proc.stderr.strip()}")
    path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    return lambda: path.chmod(stat.S_IRWXU)


@pytest.mark.parametrize("mode", ["run", "sweep"])
def test_a_read_only_output_directory_is_one_line_and_exit_2(tmp_path: Path, mode: str) -> None:
    ro = tmp_path / "ro"
    undo = _read_only(ro)
    try:
        key = "hydra.run.dir" if mode == "run" else "hydra.sweep.dir"
        args = (["-m", "seed=0,1"] if mode == "sweep" else []) + [*SMALL, "max_epochs=1", f"{key}={ro / 'job'}"]
        run = Run(args, tmp_path)
        assert run.finish() == 2
        err = run.stderr().strip()
        assert err.count("\n") == 0 and "Traceback" not in err, err
        assert err.startswith(f"powertrain: error: {key}='{ro / 'job'}' is not allowed: a directory this process "
                              f"can write to ({ro}, where it would be created): ")
        assert "Read-only file system" in err or "Permission denied" in err
        assert not (ro / "job").exists()
    finally:
        undo()


def test_sigxfsz_is_not_what_ends_the_run() -> None:
    # the limit above is only a full disk if a write past it fails instead of killing the process:
    # Python ignores SIGXFSZ, so the write returns EFBIG (this pins that assumption)
    assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN
