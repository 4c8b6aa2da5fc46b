"""Carbon accounting against hand-computed figures from the packaged tables."""

import csv
from importlib import resources

import pytest

from powertrain import carbon
from powertrain.carbon import intensity
from powertrain.compose.validate import check_value
from powertrain.config import CarbonConfig, ConfigError, HardwareConfig

KWH_J = 3.6e6


def _country_row(iso3: str) -> dict:
    path = resources.files("powertrain.resources").joinpath(intensity.COUNTRY_TABLE)
    with path.open(encoding="utf-8") as f:
        return next(r for r in csv.DictReader(f) if r["iso3"] == iso3)


def _no_embodied() -> HardwareConfig:
    return HardwareConfig(name="bare")


def test_one_kwh_in_germany_with_pue():
    deu = float(_country_row("DEU")["carbon_intensity_g_per_kwh"])
    cfg = CarbonConfig(region="DEU", pue=1.2)
    intensity = carbon.resolve(cfg)
    out = carbon.account(cfg, intensity, _no_embodied(), energy_j=KWH_J, wall_s=60.0)
    assert out["region"] == "DEU"
    assert out["intensity_g_per_kwh"] == pytest.approx(deu)
    assert out["operational_g"] == pytest.approx(deu * 1.2)
    assert out["facility_energy_kwh"] == pytest.approx(1.2)
    assert "Our World in Data" in out["intensity_source"]
    assert _country_row("DEU")["year"] in out["intensity_source"]


def test_region_is_case_insensitive_and_accepts_country_name():
    assert carbon.resolve(CarbonConfig(region="deu")).region == "DEU"
    assert carbon.resolve(CarbonConfig(region="Germany")).region == "DEU"


def test_cloud_region_lookup():
    out = carbon.resolve(CarbonConfig(region="gcp:europe-west4"))
    assert out.g_per_kwh == 236.0  # the table's figure for Eemshaven
    assert out.kind == "cloud_table"
    assert "cloud.google.com" in out.source


def test_override_wins_over_table():
    cfg = CarbonConfig(region="DEU", intensity_g_per_kwh=100.0)
    out = carbon.account(cfg, carbon.resolve(cfg), _no_embodied(), energy_j=2 * KWH_J, wall_s=1.0)
    assert out["intensity_g_per_kwh"] == 100.0
    assert out["intensity_source"] == "carbon.intensity_g_per_kwh override"
    assert out["operational_g"] == pytest.approx(200.0)


@pytest.mark.parametrize(
    "region, suggestion",
    [("DEUU", "DEU"), ("gcp:europe-west99", "gcp:europe-west4"), ("gcp:us-centrall1", "gcp:us-central1")],
)
def test_unknown_region_lists_close_matches(region, suggestion):
    with pytest.raises(ConfigError) as err:
        carbon.resolve(CarbonConfig(region=region))
    assert err.value.key == "carbon.region"
    assert suggestion in str(err.value)
    assert "\n" not in str(err.value)


def test_provider_without_table_rows_says_what_to_do():
    with pytest.raises(ConfigError, match="no aws regions"):
        carbon.resolve(CarbonConfig(region="aws:us-east-1"))


def test_bad_region_fails_the_override_check_before_a_sweep_starts():
    with pytest.raises(ConfigError, match="DEU"):
        check_value("carbon.region", "DEUU")
    check_value("carbon.region", "gcp:europe-west4")
    check_value("carbon.region", None)


def test_no_region_gives_null_carbon_and_a_hint():
    cfg = CarbonConfig()
    assert carbon.resolve(cfg) is None
    hw = HardwareConfig(name="x", embodied_kgco2e=100.0, lifetime_years=5.0, utilization=1.0)
    out = carbon.account(cfg, None, hw, energy_j=KWH_J, wall_s=3600.0)
    for key in ("region", "intensity_g_per_kwh", "intensity_source", "operational_g", "total_g"):
        assert out[key] is None
    assert out["embodied_g"] is not None  # embodied does not depend on the grid
    assert carbon.hint() in out["notes"]
    assert "\n" not in carbon.hint() and "carbon.region" in carbon.hint()


def test_world_average_fallback_is_labelled():
    cfg = CarbonConfig(world_average_fallback=True)
    intensity = carbon.resolve(cfg)
    assert intensity.g_per_kwh == 475.0
    assert "world average" in intensity.source and "labelled" in intensity.source
    out = carbon.account(cfg, intensity, _no_embodied(), energy_j=KWH_J, wall_s=1.0)
    assert out["operational_g"] == pytest.approx(475.0)
    assert any("fallback" in n for n in out["notes"])


def test_fallback_does_not_hide_a_typo():
    with pytest.raises(ConfigError):
        carbon.resolve(CarbonConfig(region="DEUU", world_average_fallback=True))


def test_embodied_share_and_total():
    # 2 devices × 150 kg over 6 years at 85 %: one busy hour costs 2 × 150e3 / (6 × 8766 × 0.85) g
    hw = HardwareConfig(name="a", embodied_kgco2e=150.0, lifetime_years=6.0, utilization=0.85)
    cfg = CarbonConfig(region="FRA")
    intensity = carbon.resolve(cfg)
    out = carbon.account(cfg, intensity, hw, energy_j=KWH_J, wall_s=3600.0, devices=2)
    expected = 2 * 150e3 / (6 * 365.25 * 24 * 0.85)
    assert out["embodied_g"] == pytest.approx(expected)
    assert out["total_g"] == pytest.approx(out["operational_g"] + expected)
    assert out["embodied"]["devices"] == 2


def test_missing_life_cycle_figure_makes_embodied_and_total_null():
    cfg = CarbonConfig(region="DEU")
    out = carbon.account(cfg, carbon.resolve(cfg), _no_embodied(), energy_j=KWH_J, wall_s=1.0)
    assert out["operational_g"] is not None
    assert out["embodied_g"] is None and out["total_g"] is None


def test_contract_keys_and_average_note():
    cfg = CarbonConfig(region="DEU")
    intensity = carbon.resolve(cfg)
    out = carbon.account(cfg, intensity, _no_embodied(), energy_j=KWH_J / 2, wall_s=1.0)
    # every contract key, with the value a reader would check by hand: 0.5 kWh × PUE 1.0 × DEU g/kWh
    assert out["region"] == "DEU"
    assert out["intensity_g_per_kwh"] == pytest.approx(float(_country_row("DEU")["carbon_intensity_g_per_kwh"]))
    assert out["intensity_source"] == intensity.source
    assert out["pue"] == 1.0
    assert out["operational_g"] == pytest.approx(0.5 * float(_country_row("DEU")["carbon_intensity_g_per_kwh"]))
    assert out["embodied_g"] is None and out["total_g"] is None  # no life-cycle figures: no partial total
    assert any("not marginal" in n for n in out["notes"])
    assert any("pue" in a for a in out["assumptions"])  # PUE 1.0 is called out


def test_per_epoch_rows_and_the_result_use_the_same_formula():
    cfg = CarbonConfig(region="DEU", pue=1.3)
    intensity = carbon.resolve(cfg)
    out = carbon.account(cfg, intensity, _no_embodied(), energy_j=1234.0, wall_s=1.0)
    assert carbon.operational_g(cfg, intensity, 1234.0) == pytest.approx(out["operational_g"])
    assert carbon.operational_g(cfg, None, 1234.0) is None


def test_embodied_counts_every_gpu_the_run_measured():
    gpus = [{"name": f"gpu:{i}", "kind": "gpu"} for i in range(4)] + [{"name": "cpu:package-0", "kind": "cpu"}]
    assert carbon.device_count(gpus, "gpu") == 4
    assert carbon.device_count(gpus, "cpu") == 1
    assert carbon.device_count([], "gpu") == 1  # estimated GPU without a component still occupies one
