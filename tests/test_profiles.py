"""Hardware profiles: every number has a source or is a declared assumption; auto picks by name."""

import math

import pytest

from powertrain.compose.validate import check_value
from powertrain.config import HardwareConfig
from powertrain.hardware.profiles import NUMBERS, load_profile, profile_dir, profile_names, select_profile

REQUIRED = {"auto", "cpu", "cuda", "a100_sxm", "h100_sxm", "jetson_agx_orin"}


def test_required_profiles_exist():
    names = set(profile_names())
    assert REQUIRED <= names
    assert names & {"rtx_4090", "rtx_a6000"}


@pytest.mark.parametrize("name", sorted(p.stem for p in profile_dir().glob("*.yaml")))
def test_every_number_has_a_source_or_is_an_assumption(name):
    text = (profile_dir() / f"{name}.yaml").read_text()
    assert text.lstrip("# \n").find("defaults:") >= 0 and "- base_hardware" in text
    p = load_profile(name)
    assert p.name == name
    declared = {a.split(":")[0] for a in p.assumptions}
    for key in NUMBERS:
        value = getattr(p, key)
        if name == "auto":
            assert value is None  # auto takes its numbers from the detected profile
            continue
        ok = key in p.sources or any(key in d for d in declared)
        assert ok, f"{name}.{key}={value} has neither a source nor an assumption"
        if value is not None:
            assert math.isfinite(value)
            check_value(f"hardware.{key}", value)
    for key in p.sources:
        assert key in NUMBERS, f"{name}: source for unknown key {key}"


@pytest.mark.parametrize(
    "device_name, profile",
    [
        ("NVIDIA H100 80GB HBM3", "h100_sxm"),
        ("NVIDIA A100-SXM4-80GB", "a100_sxm"),
        ("NVIDIA A100-SXM4-40GB", "a100_sxm"),
        ("NVIDIA GeForce RTX 4090", "rtx_4090"),
        ("NVIDIA RTX A6000", "rtx_a6000"),
        ("Orin", "jetson_agx_orin"),
        ("NVIDIA H100 PCIe", "cuda"),  # a PCIe card is not the SXM profile
        ("Tesla T4", "cuda"),
    ],
)
def test_auto_matches_gpu_name(device_name, profile):
    p = select_profile(HardwareConfig(), "cuda:0", device_name=device_name)
    assert p.name == profile
    assert p.kind == "gpu" and p.device == "cuda:0"


def test_auto_on_cpu_picks_cpu_profile():
    p = select_profile(HardwareConfig(), "cpu")
    assert p.name == "cpu" and p.kind == "cpu" and p.embodied_kgco2e is not None


def test_command_line_number_wins_and_is_sourced():
    p = select_profile(HardwareConfig(embodied_kgco2e=99.0), "cuda", device_name="NVIDIA H100 80GB HBM3")
    assert p.name == "h100_sxm" and p.embodied_kgco2e == 99.0
    assert "command line" in p.sources["embodied_kgco2e"]
    assert not any(a.startswith("embodied_kgco2e") for a in p.assumptions)
    assert p.tdp_w == 700


def test_named_profile_keeps_its_figures():
    p = select_profile(load_profile("a100_sxm"), "cuda")
    assert (p.tdp_w, p.embodied_kgco2e, p.lifetime_years, p.utilization) == (400, 150, 6, 0.85)
    assert "BLOOM" in p.sources["embodied_kgco2e"]


def test_hydra_composes_each_profile():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from powertrain.compose.validate import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(profile_dir().parent), version_base=None):
        for name in profile_names():
            cfg = compose(overrides=[f"+hardware={name}"])
            obj = OmegaConf.to_object(cfg.hardware)
            assert isinstance(obj, HardwareConfig) and obj.name == name
    GlobalHydra.instance().clear()


def test_the_profiles_tdp_goes_to_the_device_the_run_trains_on() -> None:
    from powertrain.config import HardwareConfig
    from powertrain.hardware.profiles import tdp_split

    profile = HardwareConfig(tdp_w=300.0)
    assert tdp_split(profile, on_gpu=True) == {"cpu_tdp_w": None, "gpu_tdp_w": 300.0}
    assert tdp_split(profile, on_gpu=False) == {"cpu_tdp_w": 300.0, "gpu_tdp_w": None}
