"""The conventions a user brings from Hydra and CodeCarbon: Hydra's own flags reach Hydra untouched, --help
shows what can be chosen, the job is called powertrain and its log holds the run's lines, and emissions.csv
is a file CodeCarbon itself reads and appends to."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import powertrain

# (flags, text its output must contain): each is Hydra's, none is an override to check
HYDRA_FLAGS = [
    (["-sc", "install=bash"], "hydra_bash_completion"),
    (["--shell-completion", "install=bash"], "hydra_bash_completion"),
    (["--info"], "Installed Hydra Plugins"),
    (["--hydra-help"], "== Flags =="),
    (["-c", "job"], "batch_size: 64"),
    (["-c", "job", "-p", "optimizer"], "# @package optimizer"),
    (["--cfg", "hydra", "--resolve", "-p", "hydra.job.name"], "powertrain"),
    (["-c", "job", "hydra.verbose=true", "batch_size=8"], "batch_size: 8"),
    (["--config-name", "config", "-c", "job"], "max_epochs: 40"),
    (["-cn", "config", "-c", "job"], "max_epochs: 40"),
    (["-h"], "== Groups"),
    (["--version"], f"powertrain {powertrain.__version__}"),
]


@pytest.mark.parametrize(("args", "expected"), HYDRA_FLAGS, ids=[" ".join(a) for a, _ in HYDRA_FLAGS])
def test_hydra_flags_reach_hydra_untouched(cli, tmp_path, args, expected):
    p = cli(*args, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert expected in p.stdout, p.stdout[-2000:]
    assert "powertrain: error" not in p.stderr
    assert not (tmp_path / "outputs").exists()  # nothing ran


def test_config_dir_adds_group_options_of_its_own(cli, tmp_path):
    """-cd / --config-dir: an option that lives only in the user's directory is Hydra's to find."""
    mine = tmp_path / "myconf" / "model"
    mine.mkdir(parents=True)
    (mine / "mynet.yaml").write_text("defaults:\n  - base_model\n  - _self_\nfamily: mlp\nname: mynet\n")
    for flag in (["-cd", str(tmp_path / "myconf")], [f"--config-dir={tmp_path / 'myconf'}"]):
        p = cli(*flag, "model=mynet", "-c", "job", "-p", "model", cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        assert "name: mynet" in p.stdout and "family: mlp" in p.stdout
    # without it the option is still refused in one line, as before
    p = cli("model=mynet", cwd=tmp_path)
    assert p.returncode == 2 and "model='mynet' is not allowed" in p.stderr


def test_help_lists_choosable_options_and_top_level_keys(cli, tmp_path):
    p = cli("--help", "batch_size=8", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert out.startswith(f"powertrain {powertrain.__version__}")
    assert "__main__" not in out and "base_" not in out  # no schema node offered as an option
    assert re.search(r"^optimizer: adam, adamw, rmsprop, sgd\*$", out, re.M), out
    assert re.search(r"^experiment: .*geissler_lr_batch", out, re.M)
    # the top-level keys with their types and the defaults as composed (the override included)
    assert re.search(r"^  batch_size +integer +8$", out, re.M), out
    assert re.search(r"^  target_accuracy +number or null +null$", out, re.M), out
    assert re.search(r"^  carbon\.\*: region, intensity_g_per_kwh", out, re.M)


def test_version_names_powertrain_and_hydra(cli, tmp_path):
    import hydra

    p = cli("--version", cwd=tmp_path)
    assert p.stdout.strip() == f"powertrain {powertrain.__version__} (Hydra {hydra.__version__})"


def test_slurm_job_name_is_powertrain(cli, tmp_path):
    """submitit names the Slurm job after hydra.job.name (squeue, sacct, the .submitit logs)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    p = cli("hydra/launcher=slurm", "--cfg", "hydra", "--resolve", "-p", "hydra.launcher.name", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "powertrain"


@pytest.fixture(scope="module")
def single_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One real two-epoch run, its output piped (not a terminal)."""
    run_dir = tmp_path_factory.mktemp("single") / "run"
    p = subprocess.run([sys.executable, "-m", "powertrain", "max_epochs=2", "dataset.limit_train=256",
                        "carbon.region=DEU", f"hydra.run.dir={run_dir}"],
                       capture_output=True, text=True, timeout=300, cwd=run_dir.parent)
    assert p.returncode == 0, p.stderr
    return run_dir, p


def test_the_job_log_holds_the_runs_lines_and_the_console_is_unchanged(single_run):
    run_dir, p = single_run
    assert not (run_dir / "__main__.log").exists()
    log = (run_dir / "powertrain.log").read_text()
    console = p.stdout.splitlines()
    for line in console:  # every printed line is in the log, timestamped; none printed twice
        assert f"] - {line}" in log, line
        assert console.count(line) == 1 or not line.strip(), line
    assert re.search(r"^epoch +2/2 +loss", p.stdout, re.M) and "status: completed" in p.stdout
    assert "\r" not in p.stdout  # no progress line when the output is not a terminal
    assert not any(line.startswith("[") for line in console)  # the console stays bare, no log prefixes


def test_small_carbon_keeps_its_significant_digits(single_run):
    _, p = single_run
    line = next(x for x in p.stdout.splitlines() if x.startswith("carbon:"))
    values = [float(v) for v in re.findall(r"(\d+\.\d+) g", line)]
    assert values and all(v > 0 for v in values), line  # a fraction of a gram is not 0.0000 g


def _emissions(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def test_a_single_run_writes_its_emissions_csv(single_run):
    run_dir, _ = single_run
    result = json.loads((run_dir / "result.json").read_text())
    _, rows = _emissions(run_dir / "emissions.csv")
    [row] = rows
    assert row["run_id"] == result["run"]["id"] and row["country_iso_code"] == "DEU"
    assert row["country_name"] == "Germany" and row["on_cloud"] == "N"
    assert row["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    assert float(row["ram_total_size"]) > 0 and row["tracking_mode"] == "process"  # a share of a VM's CPU
    span_s = result["time"]["train_s"] + result["time"]["eval_s"]
    assert float(row["duration"]) == pytest.approx(span_s)
    assert float(row["energy_consumed"]) == pytest.approx(result["energy"]["total_j"] / 3.6e6)
    assert float(row["emissions"]) == pytest.approx(result["carbon"]["operational_g"] / 1000)


def _typed(value: str, kind: object) -> object:
    if kind in (float, "float"):
        return float(value) if value != "" else 0.0
    return value


def test_codecarbon_reads_our_rows_and_appends_to_our_file(single_run, tmp_path):
    """CodeCarbon's own EmissionsData takes every row, and its file writer appends a row of its own to
    our file instead of backing it up as an old format and starting a new one."""
    pytest.importorskip("codecarbon")
    from codecarbon.output_methods.emissions_data import EmissionsData
    from codecarbon.output_methods.file import FileOutput

    run_dir, _ = single_run
    out_dir = tmp_path / "cc"
    out_dir.mkdir()
    ours = out_dir / "emissions.csv"
    ours.write_bytes((run_dir / "emissions.csv").read_bytes())
    header, rows = _emissions(ours)
    fields = dataclasses.fields(EmissionsData)
    assert header == [f.name for f in fields]  # the library's columns, in its order
    for row in rows:
        EmissionsData(**row)  # every field named, none extra
    theirs = EmissionsData(**{f.name: _typed(rows[0][f.name], f.type) for f in fields})
    theirs.run_id = "written-by-codecarbon"
    FileOutput("emissions.csv", str(out_dir), on_csv_write="append").out(theirs, None)
    assert sorted(p.name for p in out_dir.iterdir()) == ["emissions.csv"]  # no .bak: the same format
    header_after, rows_after = _emissions(ours)
    assert header_after == header and [r["run_id"] for r in rows_after] == [rows[0]["run_id"],
                                                                             "written-by-codecarbon"]
    assert float(rows_after[1]["energy_consumed"]) == pytest.approx(float(rows[0]["energy_consumed"]))


def test_packaged_layout_matches_the_installed_codecarbon_and_names_its_version(monkeypatch):
    from powertrain.report import codecarbon as cc

    data = json.loads((Path(powertrain.__file__).parent / "resources" / cc.LAYOUT_FILE).read_text())
    assert re.fullmatch(r"\d+\.\d+\.\d+", data["codecarbon_version"])
    try:
        import codecarbon
        from codecarbon.output_methods.emissions_data import EmissionsData
    except ImportError:
        codecarbon = None
    if codecarbon is not None and codecarbon.__version__ == data["codecarbon_version"]:
        assert data["columns"] == [f.name for f in dataclasses.fields(EmissionsData)]
    cc.layout.cache_clear()
    monkeypatch.setattr(cc, "installed_version", lambda: None)  # as if not installed: the packaged copy
    monkeypatch.setitem(sys.modules, "codecarbon", None)
    try:
        columns, version = cc.layout()
        assert list(columns) == data["columns"] and version == data["codecarbon_version"]
    finally:
        cc.layout.cache_clear()
    if codecarbon is not None:  # another installed version: its own dataclass is read
        monkeypatch.delitem(sys.modules, "codecarbon")
        monkeypatch.setattr(cc, "installed_version", lambda: "0.0.0-other")
        try:
            columns, version = cc.layout()
            assert list(columns) == [f.name for f in dataclasses.fields(EmissionsData)]
            assert version == codecarbon.__version__
        finally:
            cc.layout.cache_clear()


def test_progress_line_redraws_at_most_four_times_a_second():
    from powertrain.train.display import ProgressLine

    now = [0.0]
    shown: list[str] = []
    bar = ProgressLine(40, 64, clock=lambda: now[0], show=shown.append, width=200)
    bar.begin_epoch(2, 1000, energy_j=30.0)
    for _ in range(1000):  # 1000 steps over 10 s
        now[0] += 0.01
        bar.step()
    assert 35 <= len(shown) <= 41  # every 0.25 s, not per step
    assert shown[-1].startswith("epoch   3/40  [") and re.search(r"step (9[5-9]\d|1000)/1000", shown[-1])
    assert "6,400 samples/s" in shown[-1] and "30.0 J so far" in shown[-1]


def test_a_terminal_gets_a_progress_line_and_the_log_does_not(tmp_path):
    """Under a pseudo-terminal the epoch is drawn in place (carriage returns); the job log holds only the
    run's lines."""
    import os
    import pty

    leader, follower = pty.openpty()
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "powertrain", "max_epochs=2", "dataset=mnist_5k",
                             "dataset.limit_train=3200", "batch_size=4", f"hydra.run.dir={run_dir}"],
                            stdout=follower, stderr=subprocess.DEVNULL, cwd=tmp_path)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 1 << 16)
        except OSError:  # the terminal closed: the run has ended
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(timeout=300) == 0
    os.close(leader)
    text = out.decode(errors="replace")
    # 800 steps an epoch: over a second even on a quiet machine, so the line (redrawn every 0.25 s) shows
    assert re.search(r"\repoch +[12]/2 +\[#* *\] step \d+/800 +[\d,]+ samples/s", text), text[-2000:]
    # the epoch line follows the erased progress line: a carriage return, then the line as ever
    assert re.search(r"\r *\repoch +2/2 +loss", text), text[-2000:]
    log = (run_dir / "powertrain.log").read_text()
    assert "samples/s" not in log and "\r" not in log and "epoch   2/2" in log
