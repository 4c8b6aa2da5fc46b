"""Pretrained (knowledge recycling) and multitask (knowledge sharing) paradigms, and their experiments.

Tiny in-process runs on small synthetic data (seconds each on a 2-core CPU).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from powertrain.config import ConfigError, RunConfig
from powertrain.run import run


def make_cfg(**values: Any) -> RunConfig:
    """A quiet CPU RunConfig on small synthetic data; dotted keys reach into the groups."""
    cfg = RunConfig()
    defaults = {"dataset.name": "synthetic", "dataset.train_size": 256, "dataset.test_size": 128,
                "model.family": "simple_cnn", "optimizer.name": "sgd", "optimizer.lr": 0.05,
                "optimizer.momentum": 0.9, "optimizer.scheduler.name": "none", "hardware.device": "cpu",
                "batch_size": 64, "max_epochs": 2,
                "verbose": False, "save_checkpoint": True}
    for dotted, v in {**defaults, **values}.items():
        if dotted == "paradigm.name":  # each paradigm has its own schema
            from powertrain.compose.validate import paradigm_schema

            cfg.paradigm = paradigm_schema(v)()
            continue
        *parents, leaf = dotted.split(".")
        node = cfg
        for p in parents:
            node = getattr(node, p)
        assert hasattr(node, leaf), dotted  # a typo in a test must not pass silently
        setattr(node, leaf, v)
    return cfg


def finetune_cfg(**values: Any) -> RunConfig:
    return make_cfg(**{"paradigm.name": "pretrained", **values})


# ------------------------------------------------------------------------------------------ pretrained


def test_from_run_chain_carries_upstream_energy(tmp_path: Path) -> None:
    a = run(make_cfg(), tmp_path / "a")
    b = run(finetune_cfg(**{"paradigm.from_run": str(tmp_path / "a"), "paradigm.amortize_over": 4}), tmp_path / "b")
    assert a["status"] == b["status"] == "completed"
    assert b["energy"]["upstream_j"] == pytest.approx(a["energy"]["total_j"] / 4)
    assert b["energy"]["total_with_upstream_j"] == pytest.approx(b["energy"]["total_j"] + a["energy"]["total_j"] / 4)
    assert b["upstream"]["energy_j"] == pytest.approx(a["energy"]["total_j"])

    # A → B → C: C carries B's own energy plus the share of A that B was charged
    c = run(finetune_cfg(**{"paradigm.from_run": str(tmp_path / "b")}), tmp_path / "c")
    assert c["energy"]["upstream_j"] == pytest.approx(b["energy"]["total_j"] + a["energy"]["total_j"] / 4)
    assert [link["source"] for link in c["upstream"]["chain"]] == [f"run:{tmp_path / 'b'}", f"run:{tmp_path / 'a'}"]


def test_upstream_carbon_is_carried_when_a_region_is_set(tmp_path: Path) -> None:
    a = run(make_cfg(**{"carbon.region": "DEU", "max_epochs": 1}), tmp_path / "a")
    b = run(finetune_cfg(**{"carbon.region": "DEU", "max_epochs": 1, "paradigm.from_run": str(tmp_path / "a"),
                            "paradigm.amortize_over": 2}), tmp_path / "b")
    assert b["carbon"]["upstream_g"] == pytest.approx(a["carbon"]["total_g"] / 2)
    assert b["carbon"]["total_with_upstream_g"] == pytest.approx(b["carbon"]["total_g"] + a["carbon"]["total_g"] / 2)


def test_head_only_finetuning_leaves_the_backbone_bit_identical(tmp_path: Path) -> None:
    run(make_cfg(), tmp_path / "up")
    b = run(finetune_cfg(**{"paradigm.from_run": str(tmp_path / "up"), "paradigm.finetune": "head",
                            "optimizer.lr": 0.5}), tmp_path / "ft")
    assert b["status"] == "completed"
    before = torch.load(tmp_path / "up" / "checkpoint.pt", weights_only=True)["model"]
    after = torch.load(tmp_path / "ft" / "checkpoint.pt", weights_only=True)["model"]
    backbone = [k for k in before if k.startswith("features.")]
    assert backbone and all(torch.equal(before[k], after[k]) for k in backbone)  # BatchNorm statistics too
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("head."))


def test_partial_finetuning_trains_the_last_blocks_and_scales_their_lr() -> None:
    from powertrain.models import create_model
    from powertrain.paradigms.pretrained import finetune_groups

    cfg = make_cfg()
    model = create_model(cfg.model, (1, 8, 8), 10)
    groups, note = finetune_groups(model, "partial", 1, 0.1, lr=0.05)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith(("features.4.", "features.5.", "head."))}
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(0.005)
    assert sum(len(g["params"]) for g in groups) == len(trainable)  # frozen ones are not in the optimizer
    assert "head + last 1 block(s)" in note


def test_a_head_of_another_class_count_is_replaced_and_reported(tmp_path: Path) -> None:
    run(make_cfg(**{"dataset.num_classes": 4}), tmp_path / "up")
    b = run(finetune_cfg(**{"paradigm.from_run": str(tmp_path / "up"), "max_epochs": 1}), tmp_path / "ft")
    assert b["status"] == "completed"
    assert any("head replaced" in n and "head.4" in n and "[4, 16] → [10, 16]" in n for n in b["notes"])


def test_corrupt_checkpoint_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match=r"paradigm.checkpoint=.*readable state_dict"):
        run(finetune_cfg(**{"paradigm.checkpoint": str(bad)}), tmp_path / "ft")
    result = json.loads((tmp_path / "ft" / "result.json").read_text())
    assert result["status"] == "failed" and "paradigm.checkpoint" in result["error"]


def test_checkpoint_of_another_architecture_is_a_config_error(tmp_path: Path) -> None:
    from powertrain.models import create_model

    other = create_model(make_cfg().model, (3, 8, 8), 10)  # 3 input channels; the data has 1
    path = tmp_path / "rgb.pt"
    torch.save(other.state_dict(), path)
    with pytest.raises(ConfigError, match=r"backbone layer\(s\) do not fit, e.g. features.0"):
        run(finetune_cfg(**{"paradigm.checkpoint": str(path)}), tmp_path / "ft")


def test_exactly_one_weight_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one of"):
        run(finetune_cfg(), tmp_path / "none")


def test_timm_weights_offline_fail_fast_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_CACHE", "HF_HOME", "TORCH_HOME"):
        monkeypatch.setenv(var, str(tmp_path / "empty" / var))
    cfg = finetune_cfg(**{"model.family": "timm", "model.name": "test_resnet", "paradigm.weights": "timm",
                          "dataset.channels": 3, "dataset.image_size": 16, "save_checkpoint": False})
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        run(cfg, tmp_path / "run")
    assert time.perf_counter() - t0 < 30
    msg = str(err.value)
    assert "\n" not in msg
    assert all(v in msg for v in ("HF_HUB_CACHE", "HF_HOME", "TORCH_HOME", "HF_HUB_OFFLINE", "paradigm.download"))


def _hf_cache_with_test_resnet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> torch.nn.Module:
    """A Hugging Face cache as hf_hub_download leaves it, holding "pretrained" test_resnet weights."""
    import timm
    from safetensors.torch import save_file

    published = timm.create_model("test_resnet")
    snap = tmp_path / "hub" / "models--timm--test_resnet.r160_in1k" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in published.state_dict().items()}, str(snap / "model.safetensors"))
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return published


def test_timm_weights_load_from_the_local_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _hf_cache_with_test_resnet(tmp_path, monkeypatch)
    cfg = finetune_cfg(**{"model.family": "timm", "model.name": "test_resnet", "paradigm.weights": "timm",
                          "paradigm.finetune": "head", "dataset.channels": 3, "dataset.image_size": 16,
                          "max_epochs": 1, "save_checkpoint": False})
    result = run(cfg, tmp_path / "run")
    assert result["status"] == "completed", result["error"]
    assert any("1000 → 10 classes" in n for n in result["notes"])
    assert result["upstream"]["energy_j"] is None and result["energy"]["total_with_upstream_j"] is None


@pytest.mark.parametrize("reset", [False, True])
def test_timm_weights_reset_classifier_when_the_class_count_fits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 reset: bool) -> None:
    import contextlib

    from powertrain.paradigms import build_setup

    published = _hf_cache_with_test_resnet(tmp_path, monkeypatch)
    cfg = finetune_cfg(**{"model.family": "timm", "model.name": "test_resnet", "paradigm.weights": "timm",
                          "paradigm.reset_classifier": reset, "dataset.num_classes": 1000, "dataset.channels": 3,
                          "dataset.image_size": 16})
    setup = build_setup(cfg, torch.device("cpu"), contextlib.nullcontext)
    own, pub = setup.model.state_dict(), published.state_dict()
    assert all(torch.equal(own[k], v) for k, v in pub.items() if not k.startswith("fc."))
    assert torch.equal(own["fc.weight"], pub["fc.weight"]) is not reset
    assert any("paradigm.reset_classifier=true" in n for n in setup.notes) is reset


# ------------------------------------------------------------------------------------------- multitask


def test_multitask_reports_per_task_metrics_and_stops_when_every_task_hits_its_target(tmp_path: Path) -> None:
    cfg = make_cfg(**{"paradigm.name": "multitask", "paradigm.tasks": ["digits", "synthetic"],
                      "paradigm.task_targets": [0.7, 0.85], "paradigm.mixing": "proportional", "max_epochs": 15})
    r = run(cfg, tmp_path / "mt")
    assert r["status"] == "target_reached", r.get("error")
    tasks = r["metrics"]["tasks"]
    assert set(tasks) == {"digits", "synthetic"}
    assert tasks["digits"]["accuracy"] >= 0.7 and tasks["synthetic"]["accuracy"] >= 0.85
    assert r["metrics"]["final_accuracy"] == pytest.approx((tasks["digits"]["accuracy"] + tasks["synthetic"]["accuracy"]) / 2)
    # the run stops at the epoch the last task reached its target; that task's energy is the run's
    last = max(tasks.values(), key=lambda t: t["epochs_to_target"])
    assert last["epochs_to_target"] == r["metrics"]["epochs"]
    assert last["energy_to_target_j"] == pytest.approx(r["metrics"]["energy_to_target_j"])
    assert all(0 < t["energy_to_target_j"] <= r["energy"]["total_j"] + 1e-9 for t in tasks.values())


def test_multitask_without_targets_runs_its_epochs(tmp_path: Path) -> None:
    cfg = make_cfg(**{"paradigm.name": "multitask", "paradigm.tasks": ["digits", "synthetic"],
                      "paradigm.task_weights": [1.0, 0.5], "max_epochs": 1})
    r = run(cfg, tmp_path / "mt")
    assert r["status"] == "completed" and r["metrics"]["tasks"]["digits"]["energy_to_target_j"] is None


def test_multitask_input_adaptation_and_refusals() -> None:
    from powertrain.data import DataSplits
    from powertrain.paradigms.multitask import adapt_inputs

    def splits(c: int, h: int, w: int) -> DataSplits:
        return DataSplits("x", torch.randn(4, c, h, w), torch.zeros(4, dtype=torch.long),
                          torch.randn(2, c, h, w), torch.zeros(2, dtype=torch.long), 2)

    out, notes = adapt_inputs("rgb", splits(3, 32, 32), (1, 8, 8), "digits")
    assert out.input_shape == (1, 8, 8) and len(notes) == 2
    out, _ = adapt_inputs("gray", splits(1, 8, 8), (3, 16, 16), "cifar")
    assert out.input_shape == (3, 16, 16)
    with pytest.raises(ConfigError, match="1 ↔ 3"):
        adapt_inputs("two", splits(2, 8, 8), (3, 8, 8), "cifar")
    with pytest.raises(ConfigError, match="aspect ratio"):
        adapt_inputs("wide", splits(1, 8, 16), (1, 8, 8), "digits")


def test_multitask_refuses_unknown_presets_and_wrong_lengths(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dataset preset names"):
        run(make_cfg(**{"paradigm.name": "multitask", "paradigm.tasks": ["digits", "nope"]}), tmp_path / "a")
    with pytest.raises(ConfigError, match="one value per task"):
        run(make_cfg(**{"paradigm.name": "multitask", "paradigm.tasks": ["digits", "synthetic"],
                        "paradigm.task_targets": [0.9]}), tmp_path / "b")


# ----------------------------------------------------------------------------------------- experiments


def test_break_even() -> None:
    from powertrain.studies.pretrain_finetune import break_even

    assert break_even(100.0, 10.0, 30.0) == 5  # 100 + 5·10 = 150 ≤ 5·30 = 150 … n* = ceil(100 / 20)
    assert break_even(100.0, 10.0, 31.0) == 5
    assert break_even(100.0, 30.0, 30.0) is None
    assert break_even(0.0, 1.0, 2.0) == 1


def test_break_even_is_said_once_with_small_savings_readable() -> None:
    from powertrain.studies.pretrain_finetune import break_even_answer, break_even_lines

    never = break_even_lines(break_even_answer(1.3, 0.74, 0.51))
    assert never[1].endswith("= never: fine-tuning to the target costs at least as much as training from scratch")
    assert never[0].endswith("= -0.23 J")
    some = break_even_lines(break_even_answer(1.27, 0.0856, 0.234))  # a 0.148 J saving, not "0.1 J"
    assert some[0].endswith("= 0.148 J")
    assert some[1].startswith("  break-even n* = ceil(E_pre / (E_scratch − E_ft)) = 9: after 9 fine-tuning(s)")


# a quick CPU setup for the study presets: small synthetic data, SimpleCNN, SGD
QUICK = ["dataset=synthetic", "dataset.train_size=256", "dataset.test_size=128", "dataset.limit_train=null",
         "model=simple_cnn", "hardware=cpu", "optimizer.lr=0.05", "save_checkpoint=true"]


def test_pretrain_finetune_experiment_writes_the_break_even(tmp_path: Path, cli: Any) -> None:
    """The study runs its three parts as CLI runs into one directory and records the break-even."""
    proc = cli("experiment=pretrain_finetune", "study.pretrain_dataset=synthetic", "target_accuracy=0.3",
               "max_epochs=8", "study.repeats=2", *QUICK, f"hydra.run.dir={tmp_path / 'exp'}", cwd=tmp_path,
               timeout=300)
    saved = json.loads((tmp_path / "exp" / "study.json").read_text())
    s = saved["summary"]
    assert saved["schema"] == "powertrain.study/1" and saved["driver"] == "pretrain_finetune"
    assert set(s["runs"]) == {"pretrain", "finetune", "scratch"}
    pre = [json.loads((tmp_path / "exp" / "pretrain" / j / "result.json").read_text()) for j in ("0", "1")]
    cmp = [json.loads((tmp_path / "exp" / "compare" / j / "result.json").read_text()) for j in "0123"]
    # fine-tuning and scratch interleaved and rotated per round; repeat r fine-tunes pretraining r, seed r
    assert [(r["config"]["study"]["variant"], r["config"]["repeat"], r["config"]["seed"]) for r in cmp] == [
        ("finetune", 0, 0), ("scratch", 0, 0), ("scratch", 1, 1), ("finetune", 1, 1)]
    assert [p["config"]["seed"] for p in pre] == [0, 1]
    for ft, p in ((cmp[0], pre[0]), (cmp[3], pre[1])):
        assert ft["energy"]["upstream_j"] == pytest.approx(p["energy"]["total_j"])
    assert s["status"] == "completed", s["report"]
    assert saved["status"] == "completed" and proc.returncode == 0, proc.stderr[-2000:]
    assert "break-even n* = ceil(E_pre / (E_scratch − E_ft))" in proc.stdout
    e_pre, e_ft, e_sc = s["energy_pretrain_j"], s["energy_finetune_j"], s["energy_scratch_j"]
    from powertrain.report.stats import median
    from powertrain.studies.pretrain_finetune import break_even

    assert e_pre == pytest.approx(median([p["energy"]["total_j"] for p in pre]))  # medians of the repeats
    assert s["break_even_n"] == break_even(e_pre, e_ft, e_sc)
    assert s["break_even_effect"]["n"] == [2, 2, 2] and "break-even n*:" in proc.stdout


def test_pretrain_finetune_names_its_own_key_for_an_unknown_pretrain_preset(tmp_path: Path, cli: Any) -> None:
    proc = cli("experiment=pretrain_finetune", "study.pretrain_dataset=nope", "target_accuracy=0.3",
               f"hydra.run.dir={tmp_path / 'exp'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("powertrain: error: study.pretrain_dataset='nope'")
    assert "dataset preset names" in proc.stderr
    assert not (tmp_path / "exp" / "pretrain").exists()  # refused before any part ran


def test_experiment_presets_compose(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    from powertrain.compose.validate import register_configs, validate
    from powertrain.config.paths import conf_dir

    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        pf = validate(compose(config_name="config", overrides=["experiment=pretrain_finetune"]))
        mt = validate(compose(config_name="config", overrides=["experiment=multitask_vs_single", "max_epochs=3"]))
    # the study's own values live under study.: each part picks its paradigm (pretrain: scratch, ...)
    assert pf.study.driver == "pretrain_finetune" and pf.study.pretrain_dataset == "digits_0to4"
    assert pf.target_accuracy is not None and pf.dataset.classes == [5, 6, 7, 8, 9]
    assert mt.study.driver == "multitask_vs_single" and len(mt.study.task_targets) == len(mt.study.tasks)
    assert mt.max_epochs == 3  # command-line overrides still win over the preset


def test_a_preset_without_a_driver_and_an_unknown_preset_are_refused(tmp_path: Path, cli: Any) -> None:
    proc = cli("experiment=nonexistent_xyz", cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    presets = ", ".join(sorted(p.stem for p in (Path(__file__).parents[1] / "conf" / "experiment").glob("*.yaml")))
    assert {"multitask_vs_single", "pretrain_finetune"} <= set(presets.split(", "))
    assert f"experiment='nonexistent_xyz' is not allowed: one of {presets}" in proc.stderr
    conf = tmp_path / "conf" / "experiment"
    conf.mkdir(parents=True)
    (conf / "nodriver.yaml").write_text("# @package _global_\nmax_epochs: 1\n")
    proc = cli(f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "experiment=nodriver",
               f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == ("powertrain: error: experiment='nodriver' is not allowed: "
                                                    "a study preset that sets study.driver")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()  # nothing trained
