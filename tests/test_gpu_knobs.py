"""GPU power limit and locked clocks (issue 15) through the faithful fake NVML: set, rejected, restored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from fakes.nvml import FakeGpu, FakeNvml
from powertrain.config import HardwareConfig
from powertrain.config.errors import ConfigError
from powertrain.hardware.knobs import apply_gpu_knobs

UUID = "GPU-aaaaaaaa-1111-2222-3333-444444444444"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def node(monkeypatch):
    """One fake GPU (limit 300 W, settable 100-300 W, clocks 210-1980 MHz); root unless told otherwise."""

    def install(privileged=True, **gpu_kwargs):
        gpu = FakeGpu(UUID, **gpu_kwargs)
        fake = FakeNvml([gpu], privileged=privileged)
        monkeypatch.setitem(sys.modules, "pynvml", fake.module)
        return fake, gpu

    return install


def _apply(tmp_path, privileged=True, **knobs):
    return apply_gpu_knobs(HardwareConfig(device="cuda", **knobs), "cuda:0", marker_dir=tmp_path,
                           environ={}, cuda_uuid=lambda i: None, is_privileged=lambda: privileged)  # fmt: skip


def test_knobs_are_set_recorded_and_restored(node, tmp_path):
    fake, gpu = node()
    knobs = _apply(tmp_path, gpu_power_limit_w=200, gpu_locked_clocks_mhz=[1200, 1410])
    assert gpu.power_limit_w == 200.0 and gpu.locked_clocks_mhz == (1200, 1410)
    assert knobs.record["power_limit_w"] == {"requested": 200.0, "applied": 200.0, "previous": 300.0}
    assert knobs.record["locked_clocks_mhz"]["applied"] == [1200, 1410]
    assert knobs.record["gpu"] == "gpu:0" and knobs.record["uuid"] == UUID
    assert (tmp_path / f"{UUID}.json").exists()  # the way back, in case the run is killed outright
    knobs.restore()
    knobs.restore()  # idempotent: the finally and a signal may both call it
    assert gpu.power_limit_w == 300.0 and gpu.locked_clocks_mhz is None
    assert knobs.record["power_limit_w"]["restored"] is True
    assert not list(tmp_path.iterdir()) and fake.init_count == 0


def test_one_clock_value_locks_both_ends(node, tmp_path):
    _, gpu = node()
    knobs = _apply(tmp_path, gpu_locked_clocks_mhz=1200)
    assert gpu.locked_clocks_mhz == (1200, 1200) and gpu.power_limit_w == 300.0
    knobs.restore()


@pytest.mark.parametrize(
    ("knobs", "says"),
    [
        (
            {"gpu_power_limit_w": 350},
            "hardware.gpu_power_limit_w=350 is not allowed: a limit in this GPU's range, 100-300 W",
        ),
        ({"gpu_power_limit_w": 50.5}, "100-300 W"),
        (
            {"gpu_locked_clocks_mhz": [100, 1410]},
            "hardware.gpu_locked_clocks_mhz=[100, 1410] is not allowed: clocks within this GPU's supported 210-1980 MHz",
        ),
    ],
)
def test_values_outside_nvml_constraints_fail_in_one_line_before_anything_is_set(node, tmp_path, knobs, says):
    fake, gpu = node()
    with pytest.raises(ConfigError) as err:
        _apply(tmp_path, **knobs)
    assert says in str(err.value) and "\n" not in str(err.value)
    assert gpu.power_limit_w == 300.0 and gpu.locked_clocks_mhz is None and fake.init_count == 0
    assert "nvmlDeviceSetPowerManagementLimit" not in fake.calls and not list(tmp_path.iterdir())


def test_without_permission_says_so_and_how(node, tmp_path):
    fake, gpu = node(privileged=False)
    with pytest.raises(ConfigError, match="root or CAP_SYS_ADMIN.*--cap-add SYS_ADMIN") as err:
        _apply(tmp_path, privileged=False, gpu_power_limit_w=200)
    assert str(err.value).startswith("hardware.gpu_power_limit_w=200 is not allowed")
    # the process check passed, but NVML refuses: the same message, and nothing left behind
    with pytest.raises(ConfigError, match="CAP_SYS_ADMIN"):
        _apply(tmp_path, privileged=True, gpu_power_limit_w=200)
    assert gpu.power_limit_w == 300.0 and not list(tmp_path.iterdir()) and fake.init_count == 0


def test_gpu_that_cannot_lock_clocks_is_refused(node, tmp_path):
    node(graphics_clocks_mhz=[])
    with pytest.raises(ConfigError, match="this GPU cannot lock clocks"):
        _apply(tmp_path, gpu_locked_clocks_mhz=1200)


def test_knobs_need_a_gpu_run(monkeypatch, compose, tmp_path):
    from powertrain.compose.validate import validate

    with pytest.raises(ConfigError, match=r"hardware.gpu_power_limit_w=200.0 .*unless the run uses a GPU"):
        validate(compose("hardware.device=cpu", "hardware.gpu_power_limit_w=200"))
    with pytest.raises(ConfigError, match="gpu_locked_clocks_mhz"):
        validate(compose("hardware.gpu_locked_clocks_mhz=[1410,1200]"))  # min > max
    # hardware=auto that landed on the CPU: refused once the device is known
    with pytest.raises(ConfigError, match="unless the run uses a GPU"):
        apply_gpu_knobs(HardwareConfig(gpu_power_limit_w=200), "cpu", marker_dir=tmp_path)
    # a CPU run without knobs is unchanged: NVML is never imported
    monkeypatch.setitem(sys.modules, "pynvml", SimpleNamespace())
    assert apply_gpu_knobs(HardwareConfig(), "cpu", marker_dir=tmp_path).record == {}


def test_an_exception_while_setting_restores_what_was_set(node, tmp_path, monkeypatch):
    fake, gpu = node()

    def fails(*args):
        raise RuntimeError("driver hiccup")

    monkeypatch.setattr(fake.module, "nvmlDeviceSetGpuLockedClocks", fails)
    with pytest.raises(RuntimeError):
        _apply(tmp_path, gpu_power_limit_w=200, gpu_locked_clocks_mhz=1200)
    assert gpu.power_limit_w == 300.0 and not list(tmp_path.iterdir()) and fake.init_count == 0


def test_sigterm_restores_then_runs_the_handler_before_ours(node, tmp_path):
    _, gpu = node()
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(gpu.power_limit_w))
    try:
        _apply(tmp_path, gpu_power_limit_w=150)
        signal.raise_signal(signal.SIGTERM)  # e.g. during setup, before the run's own handler
        assert seen == [300.0]  # restored first, then the earlier handler (say submitit's requeue)
        assert not list(tmp_path.iterdir())
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_sigterm_during_training_restores_at_the_end_without_killing_the_run(node, tmp_path):
    from powertrain.run.signals import StopRequest

    _, gpu = node()
    knobs = _apply(tmp_path, gpu_power_limit_w=150)
    stop = StopRequest()
    stop.install()  # the run's handler goes on top during training
    signal.raise_signal(signal.SIGTERM)
    assert stop() and gpu.power_limit_w == 150.0  # training checkpoints under the same settings
    stop.uninstall()  # the run's finally, in order
    knobs.restore()
    stop.chain()  # calls the deferred earlier handler, ours: it must not kill the process
    assert gpu.power_limit_w == 300.0 and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


CHILD = """
import os, signal, sys
from fakes.nvml import FakeGpu, FakeNvml
fake = FakeNvml([FakeGpu({uuid!r})], privileged=True)
sys.modules["pynvml"] = fake.module
from powertrain.config import HardwareConfig
from powertrain.hardware.knobs import apply_gpu_knobs
apply_gpu_knobs(HardwareConfig(device="cuda", gpu_power_limit_w=150), "cuda:0", marker_dir={dir!r},
                environ={{}}, cuda_uuid=lambda i: None, is_privileged=lambda: True)
os.kill(os.getpid(), signal.{sig})
"""


def _child(tmp_path, sig):
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO / 'tests'}"}
    code = CHILD.format(uuid=UUID, dir=str(tmp_path), sig=sig)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)


def test_plain_sigterm_restores_and_still_ends_the_process(tmp_path):
    proc = _child(tmp_path, "SIGTERM")
    assert proc.returncode == -signal.SIGTERM, proc.stderr.decode()
    assert not list(tmp_path.iterdir())  # restored before the default action ended it


def test_a_killed_run_leaves_a_marker_the_next_run_on_that_gpu_restores(node, tmp_path):
    proc = _child(tmp_path, "SIGKILL")
    assert proc.returncode == -signal.SIGKILL
    marker = tmp_path / f"{UUID}.json"
    assert json.loads(marker.read_text())["power_limit_mw"] == 300_000
    fake, gpu = node(power_limit_w=150.0)  # the GPU as the killed run left it
    knobs = _apply(tmp_path)  # the next run, without knobs of its own
    assert gpu.power_limit_w == 300.0 and not marker.exists()
    assert knobs.record["restored_after_crash"]["power_limit_w"] == 300.0
    assert knobs.record["restored_after_crash"]["left_by"]["pid"] > 0
    assert fake.init_count == 0


def test_cli_overrides_take_a_clock_pair_or_one_clock_and_sweep_limits():
    from powertrain.compose.overrides import check_overrides

    check_overrides(["hardware.gpu_power_limit_w=150,200,250", "hardware.gpu_locked_clocks_mhz=[1200,1410]"])
    check_overrides(["hardware.gpu_locked_clocks_mhz=1410"])
    with pytest.raises(
        ConfigError, match=r"gpu_locked_clocks_mhz=\[3, 2, 1\] is not allowed: null, one clock"
    ):
        check_overrides(["hardware.gpu_locked_clocks_mhz=[3,2,1]"])
    with pytest.raises(ConfigError, match="gpu_power_limit_w=-5.0 is not allowed"):
        check_overrides(["hardware.gpu_power_limit_w=-5"])
