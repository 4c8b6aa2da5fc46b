"""The command line end to end (subprocesses, a few seconds each): bad input exits 2 with one line,
a good run prints its progress and result path, from any working directory."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest


def _results(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in root.rglob("result.json")]


BAD_INPUTS = [
    # (arguments, regex the one stderr line must start with: key, value, what is allowed)
    (["model=nope"], r"model='nope' is not allowed: one of .*simple_cnn"),
    (["batch_size=abc"], r"batch_size='abc' is not allowed: a value of type integer"),
    (["optimizer.lr=0"], r"optimizer\.lr=0\.0 is not allowed: a finite number > 0"),
    (["optimizer.lr=-1"], r"optimizer\.lr=-1\.0 is not allowed: a finite number > 0"),
    (["batch_size=0"], r"batch_size=0 is not allowed: an integer >= 1"),
    (["max_epochs=0"], r"max_epochs=0 is not allowed: an integer >= 1"),
    (["target_accuracy=1.5"], r"target_accuracy=1\.5 is not allowed: null or a number in \(0, 1\]"),
    (["target_accuracy=0"], r"target_accuracy=0(\.0)? is not allowed: null or a number in \(0, 1\]"),
    (["dataset=mnist", "dataset.root=/nonexistent"],
     r"dataset\.root='/nonexistent' is not allowed: an existing directory .*dataset\.download=true"),
    (["optimizer.lrr=1"], r"optimizer\.lrr='1' is not allowed: an existing config key \(did you mean optimizer\.lr\?\)"),
    (["-m", "batch_size=32,0"], r"batch_size=0 is not allowed: an integer >= 1"),
    # numbers beyond their type, environment interpolations, unknown Hydra group options, non-ASCII,
    # long values: each one line before any work (issue 22)
    ([f"optimizer.lr={10**400 + 1}"], r"optimizer\.lr=1000000000\d*… \(401 characters\) is not allowed: a value "
                                     r"of type number within its range$"),
    (["batch_size=99999999999999999999"], r"batch_size=99999999999999999999 is not allowed: an integer that fits "
                                          r"in 64 bits"),
    (["optimizer.lr=1e999"], r"optimizer\.lr=inf is not allowed: a finite number > 0"),
    (["optimizer.lr=${oc.env:POWERTRAIN_TEST_NOPE}"], r"optimizer\.lr='\$\{oc\.env:POWERTRAIN_TEST_NOPE\}' is "
     r"not allowed: an interpolation that resolves to a value of type number \(Environment variable "
     r"'POWERTRAIN_TEST_NOPE' not found\)"),
    (["optimizer.lr=${oc.env:HOME}"], r"optimizer\.lr='\$\{oc\.env:HOME\}' is not allowed: an interpolation that "
     r"resolves to a value of type number \(.*could not be converted to Float\)"),
    (["-m", "optimizer.lr=0.1,${oc.env:POWERTRAIN_TEST_NOPE}"], r"optimizer\.lr='\$\{oc\.env:POWERTRAIN_TEST_NOPE"),
    (["-m", "hydra/launcher=nope"], r"hydra/launcher='nope' is not allowed: one of basic, .*submitit_slurm"),
    (["-m", "hydra/sweeper=optun"], r"hydra/sweeper='optun' is not allowed: one of .*\(did you mean 'optuna'\?\)"),
    (["model.name=héllo"], r"model\.name='héllo' is not allowed: a value in quotes when it holds characters beyond "
                           r"ASCII: model\.name='héllo'"),
    (["optimizer.name=" + "x" * 20000], r"optimizer\.name='x{100,}… \(20000 characters\) is not allowed: one of sgd"),
    (["model=mlp", "model.hidden_sizes=[64,0]"], r"model\.hidden_sizes=\[64, 0\] is not allowed: a list of values, "
                                                 r"each an integer >= 1"),
    (["max_epochs=1000000"], r"max_epochs=1000000 is not allowed: an integer in \[1, 100000\]"),
]


@pytest.mark.parametrize(("args", "expected"), BAD_INPUTS, ids=[" ".join(a)[:60] for a, _ in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line(cli, tmp_path, args, expected):
    p = cli(*args, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert re.match(r"powertrain: error: " + expected, lines[0]), lines[0]
    assert len(lines[0]) < 400  # a long value is echoed cut
    assert "Traceback" not in p.stderr + p.stdout
    # nothing trained: no result claims success (a failure found after composing is recorded as failed)
    assert all(r["status"] == "failed" and r["error"] for r in _results(tmp_path))
    assert not (tmp_path / "multirun").exists()  # a bad sweep element stops before any job


@pytest.mark.slow  # the name check imports timm (~8-12 s)
def test_unknown_timm_model_exits_2_and_records_a_failed_result(cli, tmp_path):
    p = cli("model=timm", "model.name=resnet181", cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    [line] = p.stderr.strip().splitlines()
    assert line.startswith("powertrain: error: model.name='resnet181' is not allowed")
    assert "did you mean resnet18," in line
    results = _results(tmp_path)
    assert len(results) == 1 and results[0]["status"] == "failed"
    assert results[0]["error"].startswith("model.name='resnet181' is not allowed")


def test_hydra_full_error_shows_the_traceback(cli, tmp_path):
    p = cli("batch_size=0", cwd=tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert p.returncode != 0
    assert "Traceback" in p.stderr and "ConfigError" in p.stderr and "batch_size=0" in p.stderr


@pytest.mark.slow
def test_console_script_trains_from_another_directory(cli, tmp_path):
    script = Path(sys.executable).with_name("powertrain")
    p = cli("max_epochs=2", "dataset.limit_train=512", cwd=tmp_path, command=[str(script)])
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert re.search(r"^epoch +1/2 +loss \d+\.\d+ +acc +\d+\.\d\d% +energy +\d+\.\d J", out, re.M), out
    assert re.search(r"^epoch +2/2 ", out, re.M)
    assert "status: completed" in out and re.search(r"^energy: \d+\.\d+ J", out, re.M)  # small: 3 digits
    path = Path(re.search(r"^result: (.+)$", out, re.M).group(1))
    # Hydra's output dir is relative to where the user stands, not to the package
    assert path.is_file() and tmp_path in path.parents
    r = json.loads(path.read_text())
    assert r["status"] == "completed" and r["metrics"]["epochs"] == 2
    assert r["run"]["overrides"] == ["max_epochs=2", "dataset.limit_train=512"]
    assert r["data"]["train_size"] == 512


@pytest.mark.slow
def test_unsuccessful_run_exits_1_with_its_result(cli, tmp_path):
    p = cli("optimizer.lr=1e6", "max_epochs=3", "dataset.limit_train=256", cwd=tmp_path)
    assert p.returncode == 1, p.stderr
    assert "status: diverged" in p.stdout
    [r] = _results(tmp_path)
    assert r["status"] == "diverged" and r["energy"]["total_j"] > 0
