"""The user's own model, dataset and training step, defined outside src/powertrain, trained by every route.

Routes: a config dir of their own on ``hydra.searchpath`` with ``_target_`` YAML; the command line
(``model._target_=...``); an installed package's entry points; names registered in a plug-in module
(``plugins=[...]`` / ``$POWERTRAIN_PLUGINS``), which must reach DDP ranks and study parts. Each route also
as a 2-job sweep. Bad input in the user's code is one line and exit 2, before the meter starts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from own_lab import lab_env, on_sys_path, write_lab

QUICK = ["max_epochs=2", "hardware.device=cpu", "save_checkpoint=false"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    paths = write_lab(tmp_path_factory.mktemp("own"))
    on_sys_path(paths)
    return paths


def _own(tiny_cfg: Any, **values: Any) -> Any:
    """tiny_cfg without its synthetic-data sizes (a dataset callable of one's own takes no train_size)."""
    return tiny_cfg(**{"dataset.train_size": 2048, "dataset.test_size": 512, **values})


def _cli(lab: dict[str, Path], *args: str, cwd: Path, env: dict[str, str] | None = None,
         command: list[str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = (command or [sys.executable, "-m", "powertrain"]) + list(args)
    return subprocess.run(cmd, cwd=cwd, env=lab_env(lab, **(env or {})), capture_output=True, text=True,
                          timeout=timeout)


def _result(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "result.json").read_text())


def _sweep_rows(sweep: Path) -> list[dict[str, Any]]:
    return json.loads((sweep / "sweep_summary.json").read_text())["rows"]


def _one_line_exit_2(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("powertrain: error: "), proc.stderr[-3000:]
    return lines[0]


# ------------------------------------------------------------------------------------------ routes


@pytest.mark.slow
def test_search_path_and_target_yaml_train_and_sweep(lab: dict[str, Path], tmp_path: Path) -> None:
    searchpath = f"hydra.searchpath=[file://{lab['conf']}]"
    proc = _cli(lab, searchpath, "model=my_net", "dataset=my_data", *QUICK, f"hydra.run.dir={tmp_path / 'one'}",
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = _result(tmp_path / "one")
    assert r["status"] == "completed" and r["metrics"]["final_accuracy"] > 0.5  # 4 classes: chance is 0.25
    assert r["config"]["model"]["_target_"] == "mylab_pt.nets.MyNet" and r["config"]["model"]["width"] == 16
    assert r["data"]["name"] == "mylab_pt.data.images" and r["data"]["batches"] == "on_device"
    # a sweep over the user's model and a shipped one, on the user's data
    sweep = tmp_path / "sweep"
    proc = _cli(lab, "-m", searchpath, "model=my_net,simple_cnn", "dataset=my_data", *QUICK,
                f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _sweep_rows(sweep)
    assert len(rows) == 2 and {row["status"] for row in rows} == {"completed"}


@pytest.mark.slow
def test_command_line_target_trains_and_sweeps(lab: dict[str, Path], tmp_path: Path) -> None:
    own = ["model=target", "model._target_=mylab_pt.nets.TabNet", "dataset=target",
           "dataset._target_=mylab_pt.data.points"]
    proc = _cli(lab, *own, "+model.width=24", "dataset.num_workers=1", *QUICK,
                f"hydra.run.dir={tmp_path / 'one'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = _result(tmp_path / "one")
    assert r["status"] == "completed" and r["metrics"]["final_accuracy"] > 0.8  # 3 separated blobs
    # a map-style dataset goes through a DataLoader with a worker; its N x F samples are no image
    assert r["data"]["batches"] == "dataloader (1 workers)" and r["data"]["input_shape"] == [6]
    assert r["data"]["num_classes"] == 3  # from the dataset's own attribute
    sweep = tmp_path / "sweep"
    proc = _cli(lab, "-m", *own, "+model.width=8,32", "dataset.num_workers=0", *QUICK,
                f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _sweep_rows(sweep)
    assert len(rows) == 2 and {row["status"] for row in rows} == {"completed"}
    widths = sorted(_result(sweep / str(i))["config"]["model"]["width"] for i in range(2))
    assert widths == [8, 32]


@pytest.mark.slow
def test_entry_points_of_an_installed_package_train_sweep_and_are_listed(lab: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    proc = _cli(lab, "model.family=ep_net", "dataset.name=ep_data", *QUICK, f"hydra.run.dir={tmp_path / 'one'}",
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _result(tmp_path / "one")["metrics"]["final_accuracy"] > 0.5
    sweep = tmp_path / "sweep"
    proc = _cli(lab, "-m", "model.family=ep_net", "dataset.name=ep_data", "optimizer=sgd,adam", *QUICK,
                f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [row["status"] for row in _sweep_rows(sweep)] == ["completed", "completed"]
    # the names join the checks' lists: did-you-mean, and --help says where each comes from
    line = _one_line_exit_2(_cli(lab, "model.family=ep_nett", cwd=tmp_path))
    assert "ep_net" in line and "did you mean 'ep_net'" in line
    help_text = _cli(lab, "--help", cwd=tmp_path).stdout
    assert "ep_net (ep_net = mylab_ep.nets:EpNet)" in help_text and "ep_data (ep_data = mylab_ep.data:make)" in help_text


@pytest.mark.slow
def test_plugin_named_by_the_plugins_key_reaches_two_ddp_ranks(lab: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    proc = _cli(lab, "plugins=[mylab_pt.plugin]", "model.family=lab_net", "dataset.name=lab_images",
                "distributed.nproc_per_node=2", "batch_size=64", *QUICK, f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = _result(out)
    assert r["status"] == "completed" and r["world_size"] == 2
    assert r["metrics"]["final_accuracy"] > 0.5
    # both ranks trained the registered model: the CPU of this one host is billed once
    assert [c["name"] for c in r["energy"]["components"]] == ["node0/cpu:package-0", "node0/dram:0"]


@pytest.mark.slow
def test_plugin_from_the_environment_reaches_a_study_part_on_the_users_model(lab: dict[str, Path],
                                                                             tmp_path: Path) -> None:
    out = tmp_path / "study"
    proc = _cli(lab, "experiment=geissler_lr_batch", "model.family=lab_net", "dataset.name=lab_images",
                "study.lrs=[0.1]", "study.batch_sizes=[64]", "study.seeds=[0]", "target_accuracy=0.6",
                "max_epochs=3", f"hydra.run.dir={out}", cwd=tmp_path, env={"POWERTRAIN_PLUGINS": "mylab_pt.plugin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = json.loads((out / "study.json").read_text())
    assert study["status"] == "completed" and study["summary"]["runs"] == 1
    job = _result(out / "grid" / "0")
    assert job["config"]["model"]["family"] == "lab_net" and job["status"] == "target_reached"


def test_a_name_registered_in_a_wrapper_script_is_refused_before_ddp_ranks_start(lab: dict[str, Path],
                                                                                 tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        "import powertrain, torch\n\n"
        "@powertrain.register_model('script_net')\n"
        "def script_net(in_features, num_classes):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_features, num_classes))\n\n"
        "from powertrain.__main__ import main\n"
        "main()\n")
    args = ["model.family=script_net", "max_epochs=1", "hardware.device=cpu", f"hydra.run.dir={tmp_path / 'r'}"]
    proc = _cli(lab, *args, cwd=tmp_path, command=[sys.executable, str(script)])
    assert proc.returncode == 0, proc.stderr[-3000:]  # one process: it trains
    line = _one_line_exit_2(_cli(lab, *args, "distributed.nproc_per_node=2", cwd=tmp_path,
                                 command=[sys.executable, str(script)]))
    assert "model.family='script_net'" in line and "registered by __main__" in line and "plugins=" in line
    # a study: refused once, before its first part starts, with one line; study.json says why
    study = tmp_path / "study"
    line = _one_line_exit_2(_cli(lab, "experiment=geissler_lr_batch", "study.lrs=[0.1]", "study.batch_sizes=[64]",
                                 "study.seeds=[0]", *args[:-1], f"hydra.run.dir={study}", cwd=tmp_path,
                                 command=[sys.executable, str(script)]))
    assert "a model the study's parts can import" in line and "registered by __main__" in line
    assert not (study / "grid").exists()
    record = json.loads((study / "study.json").read_text())
    assert record["status"] == "failed" and "the study's parts" in record["error"]


def test_reach_check_accepts_a_module_named_in_plugins(lab: dict[str, Path], tiny_cfg: Any) -> None:
    import mylab_pt.plugin  # noqa: F401  (registers lab_net in this process)

    from powertrain.config import ConfigError
    from powertrain.run.build import check_plugins_reach

    cfg = tiny_cfg(**{"model.family": "lab_net", "dataset.name": "lab_images"})
    with pytest.raises(ConfigError, match=r"registered by mylab_pt.plugin .*plugins=\[mylab_pt.plugin\]"):
        check_plugins_reach(cfg, "the study's parts")
    cfg.plugins = ["mylab_pt.plugin"]
    check_plugins_reach(cfg, "the study's parts")
    check_plugins_reach(tiny_cfg(**{"model._target_": "mylab_pt.nets.MyNet"}), "the DDP ranks")


# ---------------------------------------------------------------------------- data and model shapes


def test_a_registered_dataset_needs_no_dataset_root(lab: dict[str, Path], compose: Any, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import mylab_pt.plugin  # noqa: F401

    from powertrain.compose.validate import validate
    from powertrain.config import ConfigError

    monkeypatch.chdir(tmp_path)  # no ./data here, and no $POWERTRAIN_DATA: no root exists
    monkeypatch.delenv("POWERTRAIN_DATA", raising=False)
    cfg = validate(compose("dataset.name=lab_images", "plugins=[mylab_pt.plugin]"))
    assert cfg.dataset.name == "lab_images"
    with pytest.raises(ConfigError, match="dataset.root="):  # a shipped dataset that reads files still does
        validate(compose("dataset=mnist"))
    # a layer knob the user's model does not take is refused (a study varying it would compare equal models)
    with pytest.raises(ConfigError, match="model.conv_blocks=4 is not allowed: its default \\(2\\) for "
                                          "mylab_pt.nets.TabNet, which takes no conv_blocks argument"):
        validate(compose("model._target_=mylab_pt.nets.TabNet", "model.conv_blocks=4"))


def test_tabular_features_train_a_shipped_dense_model(tiny_cfg: Any, tmp_path: Path) -> None:
    """A loader registered the internal way, returning N×F tensors (it failed with an IndexError)."""
    import torch

    from powertrain.data import DATASETS, register_loader
    from powertrain.run import run

    @register_loader("tabular_test")
    def tabular(cfg: Any) -> Any:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(400, 7, generator=g) * 5 + 3
        y = (x[:, 0] > 3).long()
        return x[:300], y[:300], x[300:], y[300:], 2

    try:
        r = run(tiny_cfg(**{"dataset.name": "tabular_test", "model.family": "mlp", "max_epochs": 5}), tmp_path)
    finally:
        DATASETS.pop("tabular_test")
    assert r["status"] == "completed" and r["data"]["input_shape"] == [7]
    assert r["metrics"]["final_accuracy"] > 0.9


def test_layer_share_and_knobs_work_on_a_target_model(lab: dict[str, Path], tiny_cfg: Any, tmp_path: Path) -> None:
    from powertrain.run import run

    cfg = _own(tiny_cfg, **{"model._target_": "mylab_pt.nets.MyNet", "dataset._target_": "mylab_pt.data.images",
                      "dataset.num_classes": 4, "model.conv_blocks": 3, "energy.layer_profile_steps": 2,
                      "max_epochs": 1})
    r = run(cfg, tmp_path)
    assert r["status"] == "completed", r.get("error")
    share = r["energy"]["layer_attribution"]["share"]
    assert share["conv"] > 0 and share["linear"] > 0 and share["activation"] > 0  # found by layer type
    # the knob reached the user's network: three conv layers
    from powertrain.models import create_model

    model = create_model(cfg.model, (1, 8, 8), 4)
    assert sum(type(m).__name__ == "Conv2d" for m in model.modules()) == 3


def test_small_tensor_data_stay_on_the_device_others_use_a_dataloader(lab: dict[str, Path]) -> None:
    from powertrain.config import DatasetConfig
    from powertrain.data import DataSplits, load_data
    from powertrain.data.own import DatasetPair

    on_device = load_data(DatasetConfig(_target_="mylab_pt.data.images", num_classes=4))
    assert isinstance(on_device, DataSplits) and on_device.input_shape == (1, 8, 8)
    loader = load_data(DatasetConfig(_target_="mylab_pt.data.points", num_workers=0))
    assert isinstance(loader, DatasetPair) and loader.num_classes == 3 and loader.input_shape == (6,)


# ------------------------------------------------------------------------------- a step of one's own


@pytest.mark.slow
def test_a_regression_step_reaches_its_target_and_is_in_the_sweep_report(lab: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = _cli(lab, "-m", "model=target", "model._target_=mylab_pt.nets.Regressor", "dataset=target",
                "dataset._target_=mylab_pt.data.regression", "task.loss=mylab_pt.train.mse",
                "task.evaluate=mylab_pt.train.r2", "task.metric=r2", "target_accuracy=0.9", "max_epochs=30",
                "optimizer=adam", "optimizer.lr=0.01,0.02", "hardware.device=cpu", "save_checkpoint=false",
                f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for i in range(2):
        r = _result(sweep / str(i))
        assert r["status"] == "target_reached" and r["metrics"]["metric"] == "r2"
        assert r["metrics"]["final_accuracy"] >= 0.9  # the r2 of task.evaluate
        assert r["history"][-1]["r2"] == r["metrics"]["final_accuracy"] and "mse" in r["history"][-1]
        assert r["metrics"]["energy_to_target_j"] > 0
    rows = _sweep_rows(sweep)
    assert [row["status"] for row in rows] == ["target_reached", "target_reached"]
    assert "target_reached" in (sweep / "report.md").read_text()


# ----------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args, expected", [
    (["model._target_=mylab_pt.nets.Nope"],
     "model._target_='mylab_pt.nets.Nope' is not allowed: an importable callable: mylab_pt.nets has no "
     "attribute 'Nope'"),
    (["model._target_=mylab_lost.nets.MyNet"],
     "model._target_='mylab_lost.nets.MyNet' is not allowed: an importable callable: no module named 'mylab_lost'"),
    (["model._target_=mylab_pt.nets.MyNet", "+model.widht=8"],
     "model.widht=8 is not allowed: an argument mylab_pt.nets.MyNet takes (in_channels, image_size, "
     "num_classes, width, conv_blocks) (did you mean 'width'?)"),
    (["model._target_=torch.nn.Linear", "+model.in_features=5", "+model.out_features=10"],
     "model='torch.nn.Linear' is not allowed: a model whose forward takes a batch of inputs 4×1×8×8 from "
     "digits: RuntimeError: mat1 and mat2 shapes cannot be multiplied"),
    (["dataset._target_=mylab_pt.data.strings"],
     "dataset._target_='mylab_pt.data.strings' is not allowed: datasets of (x, y) samples with x a tensor or "
     "array (train[0][0] is a str)"),
    (["model._target_=mylab_pt.nets.Regressor", "dataset._target_=mylab_pt.data.regression",
      "task.loss=mylab_pt.train.vector_loss", "task.evaluate=mylab_pt.train.r2", "task.metric=r2"],
     "task.loss='mylab_pt.train.vector_loss' is not allowed: a function returning the batch's loss as a "
     "scalar tensor autograd can differentiate (it returned a tensor of shape [4])"),
    (["task.metric=r2"], "task.metric='r2' is not allowed: accuracy with the default evaluation"),
])
def test_bad_own_code_is_one_line_and_exit_2_before_the_meter_starts(lab: dict[str, Path], tmp_path: Path,
                                                                     args: list[str], expected: str) -> None:
    out = tmp_path / "run"
    proc = _cli(lab, *args, "max_epochs=1", "hardware.device=cpu", f"hydra.run.dir={out}", cwd=tmp_path)
    assert _one_line_exit_2(proc).startswith(f"powertrain: error: {expected}")
    assert "epoch " not in proc.stdout
    if (out / "result.json").exists():  # found after composing (else by the command-line check: no run dir)
        r = _result(out)
        assert r["status"] == "failed" and r["energy"]["total_j"] is None
        assert not r["energy"].get("setup_j")  # nothing was metered: the check ran before the meter
        assert "energy:" not in proc.stdout  # the meter was never built


def test_check_model_on_data_reports_what_it_found(lab: dict[str, Path], tiny_cfg: Any) -> None:
    """The function sweeps call for every grid point before the first job."""
    from powertrain.run.build import check_model_on_data

    found = check_model_on_data(_own(tiny_cfg, **{"model._target_": "mylab_pt.nets.TabNet",
                                            "dataset._target_": "mylab_pt.data.points", "dataset.num_workers": 0}))
    assert found == {"input_shape": [6], "num_classes": 3, "batches": "dataloader (0 workers)",
                     "output_shape": [4, 3]}
