"""powertrain.launch.slurm without a cluster: sinfo parsing, the request check, launcher keys, no sinfo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from powertrain.config import ConfigError
from powertrain.launch import slurm as sc

SINFO = "debug* 2 22899 4:00:00\nlong 2 22899 infinite\ngpu 64 512000 1-00:00:00\ngpu 128+ 256000 1-00:00:00\n"


@pytest.mark.parametrize("text, minutes", [("4:00:00", 240), ("30:00", 30.0), ("1-00:00:00", 1440),
                                           ("2-12", 3600), ("90", 90), ("infinite", None), ("n/a", None)])
def test_parse_time_min(text: str, minutes: float | None) -> None:
    assert sc.parse_time_min(text) == minutes


def test_parse_sinfo_keeps_the_largest_node_and_the_default() -> None:
    parts = sc.parse_sinfo(SINFO)
    assert parts["debug"].default and not parts["long"].default
    assert (parts["debug"].max_cpus, parts["debug"].max_mem_mb, parts["debug"].max_time_min) == (2, 22899, 240)
    assert parts["long"].max_time_min is None
    assert parts["gpu"].max_cpus is None  # "128+" is a lower bound: no CPU cap is enforced
    assert parts["gpu"].max_mem_mb == 512000


@pytest.mark.parametrize("kwargs, key", [
    ({"partition": "nope"}, "hydra.launcher.partition"),
    ({"partition": None, "cpus_per_task": 3}, "hydra.launcher.cpus_per_task"),  # default partition: debug
    ({"partition": "debug", "mem_gb": 64}, "hydra.launcher.mem_gb"),
    ({"partition": "debug", "timeout_min": 241}, "hydra.launcher.timeout_min"),
])
def test_check_request_refuses(kwargs: dict, key: str) -> None:
    args = {"partition": None, "cpus_per_task": 1, "mem_gb": 1, "timeout_min": 10, **kwargs}
    with pytest.raises(ConfigError) as e:
        sc.check_request(sc.parse_sinfo(SINFO), **args)
    assert e.value.key == key


@pytest.mark.parametrize("kwargs", [
    {"partition": "long", "timeout_min": 100000},
    {"partition": "gpu", "cpus_per_task": 100},
    {"partition": "nope,debug", "cpus_per_task": 2, "timeout_min": 240},
    {"partition": None, "cpus_per_task": None, "mem_gb": None, "timeout_min": None},
])
def test_check_request_accepts(kwargs: dict) -> None:
    args = {"partition": None, "cpus_per_task": 1, "mem_gb": 1, "timeout_min": 10, **kwargs}
    sc.check_request(sc.parse_sinfo(SINFO), **args)


def test_launcher_keys_follow_the_defaults_chain() -> None:
    keys = sc.launcher_keys("slurm_local")
    assert keys is not None and "cpus_per_task" in keys and "partition" in keys
    assert sc.launcher_keys("basic") == ()
    assert sc.launcher_keys("no_such_launcher") is None


@pytest.mark.parametrize("argv, ok", [
    (["-m", "hydra/launcher=slurm_local", "hydra.launcher.cpus_per_task=2"], True),
    (["-m", "hydra/launcher=slurm", "hydra.launcher.additional_parameters.mail-type=FAIL"], True),
    (["-m", "hydra/launcher=slurm", "+hydra.launcher.extra=1"], True),  # + adds a key on purpose
    (["-m", "hydra/launcher=some_plugin", "hydra.launcher.whatever=1"], True),  # unknown schema: Hydra's job
    (["-m", "hydra/launcher=slurm_local", "hydra.launcher.cpus_pertask=2"], False),
    (["-m", "hydra.launcher.partition=debug"], False),  # the basic launcher has no settings
])
def test_check_launcher_argv(argv: list[str], ok: bool) -> None:
    if ok:
        sc.check_launcher_argv(argv)
    else:
        with pytest.raises(ConfigError):
            sc.check_launcher_argv(argv)


def test_no_sinfo_skips_with_a_warning(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with caplog.at_level("WARNING", logger="powertrain"):
        assert sc.query_sinfo() is None
    assert "no sinfo" in caplog.text


def _fake_sinfo(bin_dir: Path, script: str) -> str:
    """PATH with a ``sinfo`` running ``script`` first (before any real one), the rest for cat/echo."""
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "sinfo"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


def test_query_sinfo_asks_for_the_partition_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # answers only the exact format parse_sinfo reads; anything else is an error, as a real sinfo's would be
    out = tmp_path / "sinfo.out"
    out.write_text(SINFO)
    script = f'[ "$1 $2 $3" = "-h -o %P %c %m %l" ] && cat {out} && exit 0\necho "bad args: $*" >&2; exit 1\n'
    monkeypatch.setenv("PATH", _fake_sinfo(tmp_path / "bin", script))
    assert sc.query_sinfo() == SINFO


def test_failing_sinfo_skips_with_its_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    script = 'echo "sinfo: error: Invalid user for SlurmUser" >&2; exit 1\n'
    monkeypatch.setenv("PATH", _fake_sinfo(tmp_path / "bin", script))
    with caplog.at_level("WARNING", logger="powertrain"):
        assert sc.query_sinfo() is None
    assert "sinfo failed (sinfo: error: Invalid user for SlurmUser)" in caplog.text


def test_an_unreachable_controller_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # sbatch would fail the same way, deep inside submitit: say it before anything is submitted
    script = 'echo "slurm_load_partitions: Unable to contact slurm controller (connect failure)" >&2; exit 1\n'
    monkeypatch.setenv("PATH", _fake_sinfo(tmp_path / "bin", script))
    with pytest.raises(sc.ConfigError) as e:
        sc.query_sinfo()
    assert str(e.value).startswith("hydra/launcher='slurm' is not allowed: a Slurm cluster whose controller "
                                   "answers (sinfo: slurm_load_partitions: Unable to contact slurm controller")


def _launcher_cfg(target: str, **values: object) -> object:
    from omegaconf import OmegaConf

    return OmegaConf.create({"hydra": {"launcher": {"_target_": target, **values}}})


@pytest.fixture
def sinfo_calls(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Replace the sinfo query with the captured SINFO above; record each call (whether or not the machine
    has sinfo, so the callback's choice to ask it is what is tested)."""
    calls: list[float] = []

    def fake_query(timeout_s: float = sc.SINFO_TIMEOUT_S, **kwargs: object) -> str:
        calls.append(timeout_s)
        return SINFO

    monkeypatch.setattr(sc, "query_sinfo", fake_query)
    return calls


def test_callback_ignores_other_launchers(sinfo_calls: list[float]) -> None:
    # a request no node of SINFO could run: only a Slurm launcher's request is checked against it
    cfg = _launcher_cfg("hydra._internal.core_plugins.basic_launcher.BasicLauncher", cpus_per_task=64)
    sc.SlurmCheck().on_multirun_start(cfg)  # no exit
    assert sinfo_calls == []


@pytest.mark.parametrize("target", [
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
    "hydra_plugins.powertrain_slurm_launcher.launcher.PowertrainSlurmLauncher",
])
def test_callback_refuses_an_impossible_slurm_request(sinfo_calls: list[float], target: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _launcher_cfg(target, partition=None, cpus_per_task=64, mem_gb=1, timeout_min=10)
    with pytest.raises(SystemExit) as e:
        sc.SlurmCheck().on_multirun_start(cfg)
    assert e.value.code == 2 and len(sinfo_calls) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["powertrain: error: hydra.launcher.cpus_per_task=64 is not allowed: at most 2, the most CPUs "
                   "of a node in partition debug"]


def test_callback_lets_a_possible_slurm_request_through(sinfo_calls: list[float]) -> None:
    cfg = _launcher_cfg("hydra_plugins.powertrain_slurm_launcher.launcher.PowertrainSlurmLauncher",
                        partition="long", cpus_per_task=2, mem_gb=4, timeout_min=100000)
    sc.SlurmCheck().on_multirun_start(cfg)  # no exit
    assert len(sinfo_calls) == 1


def test_stop_request_chain_survives_a_refused_requeue() -> None:
    """submitit raises UncompletedJobError when max_num_timeout is spent: the run keeps its result."""
    import signal

    from powertrain.run.signals import StopRequest

    def refuse(signum: int, frame: object) -> None:
        raise RuntimeError("Job not requeued because: timed-out too many times.")

    previous = signal.signal(signal.SIGUSR2, refuse)
    try:
        stop = StopRequest()
        stop.install()
        signal.raise_signal(signal.SIGUSR2)
        assert stop()
        stop.uninstall()
        stop.chain()  # logged, not raised
    finally:
        signal.signal(signal.SIGUSR2, previous)


@pytest.mark.parametrize("override, names", [
    ("model.family=choice(lab_net,simple_cnn)", ["lab_net", "simple_cnn"]),
    ("model.family=lab_net,simple_cnn", ["lab_net", "simple_cnn"]),
    ("+model.family=[lab_net,simple_cnn]", ["lab_net", "simple_cnn"]),
    ("dataset.name=range(1,3)", ["1", "2"]),
])
def test_swept_names_are_parsed_as_hydra_parses_them(override: str, names: list[str]) -> None:
    # by hand, choice(a,b) gave "choice(a" and "b)", names no registry has: the reach check passed them
    key = override.lstrip("+").split("=")[0]
    assert sc.swept_names([override, "seed=1"])[key] == names


def test_a_name_only_this_process_has_is_refused_inside_a_choice_sweep(monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture) -> None:
    from omegaconf import OmegaConf

    from powertrain.models import registered_models

    models = registered_models()
    monkeypatch.setitem(models, "here_only_net", lambda **kw: None)
    monkeypatch.setitem(models.meta, "here_only_net", {"own": True, "module": "my_script", "registered_in": "my_script"})
    config = OmegaConf.create({"model": {"family": "simple_cnn"}, "dataset": {"name": "digits"}, "plugins": [],
                               "hydra": {"overrides": {"task": ["model.family=choice(simple_cnn,here_only_net)"]}}})
    with pytest.raises(SystemExit) as e:
        sc._check_plugins(config)
    assert e.value.code == 2
    assert "model.family='here_only_net'" in capsys.readouterr().err
