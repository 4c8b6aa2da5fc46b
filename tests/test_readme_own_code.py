"""README "Your own model, data and loop", run as written: its files are written into an empty directory,
its commands and scripts run there, each must exit 0. A README example that stops working fails here."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Your own model, data and loop"


def _blocks() -> list[tuple[str, str]]:
    text = README.read_text()
    start = text.index(SECTION)
    section = text[start : text.index("\n## ", start + len(SECTION))]
    return re.findall(r"```(\w*)\n(.*?)```", section, flags=re.S)


def _files_and_steps(blocks: list[tuple[str, str]]) -> tuple[dict[str, str], list[str], list[list[str]]]:
    """(path -> text) of the files the section shows, the scripts among them, and the shell commands."""
    files, scripts, commands = {}, [], []
    for lang, body in blocks:
        first = body.splitlines()[0] if body.strip() else ""
        if lang in ("python", "yaml") and first.startswith("# ") and "." in first:
            path = first[2:].strip()
            files[path] = body
            if "/" not in path:  # a script at the top (mylab/ holds modules)
                scripts.append(path)
        elif lang == "bash":
            for line in body.splitlines():
                line = line.split("  #")[0].strip()
                if line and not line.startswith(("export ", "#")):
                    commands.append(shlex.split(line))
    return files, scripts, commands


def test_the_section_shows_files_scripts_and_commands() -> None:
    files, scripts, commands = _files_and_steps(_blocks())
    assert {"mylab/nets.py", "mylab/data.py", "mylab/train.py", "mylab/plugin.py", "conf/model/my_net.yaml",
            "conf/dataset/my_data.yaml"} <= set(files)
    assert scripts == ["my_loop.py", "notebook.py"] and len(commands) >= 7


@pytest.mark.slow
def test_every_example_of_the_section_runs(tmp_path: Path) -> None:
    files, scripts, commands = _files_and_steps(_blocks())
    for path, body in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(body)
    (tmp_path / "mylab" / "__init__.py").write_text("")
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["PYTHONPATH"] = str(tmp_path)  # export PYTHONPATH=$PWD, as the section says
    for i, words in enumerate(commands):
        prefix = {}
        while "=" in words[0] and words[0].split("=")[0].isupper():  # VAR=value powertrain ...
            key, value = words.pop(0).split("=", 1)
            prefix[key] = value
        assert words[0] == "powertrain", words
        args = [w.replace("$PWD", str(tmp_path)) for w in words[1:]]
        args += [] if any(a.startswith("max_epochs=") for a in args) else ["max_epochs=2"]
        args += ["hardware.device=cpu",
                 f"hydra.sweep.dir={tmp_path / f'sweep{i}'}" if "-m" in args else f"hydra.run.dir={tmp_path / f'run{i}'}"]
        proc = subprocess.run([sys.executable, "-m", "powertrain", *args], cwd=tmp_path, env={**env, **prefix},
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{' '.join(words)}\n{proc.stderr[-3000:]}"
    for script in scripts:
        proc = subprocess.run([sys.executable, script], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, f"{script}\n{proc.stderr[-3000:]}"
        assert proc.stdout.strip(), script
    assert "epoch 2:" in subprocess.run([sys.executable, "my_loop.py"], cwd=tmp_path, env=env,
                                        capture_output=True, text=True, timeout=600).stdout
