"""RAPL through a fake powercap tree: what is counted, wraps, and what happens when it cannot be read."""

from __future__ import annotations

import builtins
import time

import pytest

from fakes.powercap import INTEL_MAX_RANGE_UJ, make_powercap
from powertrain.energy import rapl
from powertrain.energy.estimate import CpuEstimate, DramEstimate
from powertrain.energy.rapl import build_rapl_sources, discover_rapl, poll_interval_s


def _sources(root, tdp_w=None):
    return build_rapl_sources(
        str(root),
        lambda name: CpuEstimate(100.0, name=name),
        lambda name, n: DramEstimate(0.375 / n, name=name),
        cpu_tdp_w=tdp_w,
    )


def _by_name(sources):
    return {s.name: s for s in sources}


def test_one_socket_counts_package_and_dram_not_core(tmp_path):
    pc = make_powercap(tmp_path, sockets=1, dram=True, core=True)
    sources, why = _sources(tmp_path)
    assert why is None
    assert sorted(s.name for s in sources) == ["cpu:package-0", "dram:0"]  # core would double count
    src = _by_name(sources)
    for s in sources:
        s.start()
    pc.add_uj("intel-rapl:0", 12_500_000)  # 12.5 J
    pc.add_uj("intel-rapl:0:0", 2_000_000)
    pc.add_uj("intel-rapl:0:1", 9_000_000)  # core: inside the package already
    assert src["cpu:package-0"].read_j() == pytest.approx(12.5)
    assert src["dram:0"].read_j() == pytest.approx(2.0)
    assert all(s.measured and s.method == "rapl" for s in sources)
    for s in sources:
        s.stop()


def test_two_sockets_each_metered(tmp_path):
    pc = make_powercap(tmp_path, sockets=2, dram=True, core=False)
    sources, why = _sources(tmp_path)
    assert why is None
    src = _by_name(sources)
    assert set(src) == {"cpu:package-0", "cpu:package-1", "dram:0", "dram:1"}
    for s in sources:
        s.start()
    pc.add_uj("intel-rapl:0", 3_000_000)
    pc.add_uj("intel-rapl:1", 5_000_000)
    assert src["cpu:package-0"].read_j() == pytest.approx(3.0)
    assert src["cpu:package-1"].read_j() == pytest.approx(5.0)
    assert src["dram:1"].read_j() == 0.0
    for s in sources:
        s.stop()


def test_psys_and_mmio_zones_are_not_counted(tmp_path):
    pc = make_powercap(tmp_path, sockets=1, dram=False, core=False)
    pc.add_zone("intel-rapl:1", "psys", 5)  # laptops: the whole SoC, overlapping the package
    (tmp_path / "intel-rapl-mmio:0").mkdir()  # a second interface to the same package counter
    (tmp_path / "intel-rapl-mmio:0" / "name").write_text("package-0\n")
    domains, why = discover_rapl(str(tmp_path))
    assert why is None
    assert [d.component for d in domains] == ["cpu:package-0"]


def test_wrap_between_reads_is_corrected(tmp_path):
    max_uj = 10_000_000
    pc = make_powercap(tmp_path, dram=False, core=False, max_range_uj=max_uj)
    pc.set_uj("intel-rapl:0", 9_000_000)
    (src,), _ = _sources(tmp_path)
    src.start()
    pc.add_uj("intel-rapl:0", 3_000_000)  # 9 J + 3 J wraps at 10 J to 2 J
    assert int((tmp_path / "intel-rapl:0" / "energy_uj").read_text()) == 2_000_000
    assert src.read_j() == pytest.approx(3.0)
    assert src.wraps == 1
    pc.add_uj("intel-rapl:0", 1_000_000)
    assert src.read_j() == pytest.approx(4.0)
    src.stop()


def test_missing_max_range_undercounts_and_flags_the_wrap(tmp_path):
    pc = make_powercap(tmp_path, dram=False, core=False, max_range_uj=None)
    pc.set_uj("intel-rapl:0", 9_000_000)
    (src,), _ = _sources(tmp_path)
    src.start()
    pc.set_uj("intel-rapl:0", 9_500_000)
    assert src.read_j() == pytest.approx(0.5)
    pc.set_uj("intel-rapl:0", 1_000_000)  # wrapped; the range is unknown
    energy_j = src.read_j()
    assert energy_j == pytest.approx(1.5)  # the 1 J after the wrap is counted; never a negative step
    extra = src.extra()
    assert extra["wraps_uncorrected"] == 1
    assert "undercounts" in extra["note"]
    src.stop()


def test_poll_interval_prevents_two_wraps_between_reads(tmp_path):
    make_powercap(tmp_path, max_range_uj=INTEL_MAX_RANGE_UJ)
    domains, _ = discover_rapl(str(tmp_path))
    assert poll_interval_s(domains) == 1.0  # 262 kJ at 500 W wraps in ~9 min: 1 s is plenty
    domains[0].max_range_uj = 100_000_000  # 100 J: wraps in 0.2 s at 500 W
    assert poll_interval_s(domains) == pytest.approx(0.05)
    assert poll_interval_s(domains, max_power_w=1000.0) == pytest.approx(0.025)


def test_poll_thread_catches_a_wrap_between_windows(tmp_path):
    # 4 J range → the poller reads every 10 ms (the floor); two wraps between window reads would be
    # lost without it
    pc = make_powercap(tmp_path, dram=False, core=False, max_range_uj=4_000_000)
    pc.set_uj("intel-rapl:0", 0)
    (src,), _ = _sources(tmp_path)
    src.start()
    assert src.poller.running
    for _ in range(3):
        pc.add_uj("intel-rapl:0", 3_000_000)
        deadline = time.monotonic() + 2.0
        before_j = src.measured_j()  # updated by every read, the poller's included
        while src.measured_j() == before_j and time.monotonic() < deadline:
            time.sleep(0.005)  # wait for the poller, not for a window
    assert src.read_j() == pytest.approx(9.0)  # 3 × 3 J, two of them across a wrap
    src.stop()
    assert not src.poller.running


def test_absent_root_says_so(tmp_path):
    sources, why = _sources(tmp_path / "nope")
    assert sources == []
    assert why == f"{tmp_path / 'nope'} absent"


def test_no_rapl_zones_says_so(tmp_path):
    (tmp_path / "dtpm").mkdir()
    sources, why = _sources(tmp_path)
    assert sources == [] and "no intel-rapl package domain" in why


def test_permission_denied_gives_the_fix(tmp_path, monkeypatch):
    make_powercap(tmp_path)
    real_open = builtins.open

    def open_as_unprivileged(path, *args, **kwargs):
        # we run as root, so chmod 000 would not stop us: deny at the file boundary instead
        if str(path).endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(rapl, "open", open_as_unprivileged, raising=False)
    sources, why = _sources(tmp_path)
    assert sources == []
    assert "permission denied" in why and "PLATYPUS" in why
    assert "chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj" in why


def test_unreadable_counter_gives_the_error(tmp_path):
    make_powercap(tmp_path, dram=False, core=False)
    (tmp_path / "intel-rapl:0" / "energy_uj").unlink()
    (tmp_path / "intel-rapl:0" / "energy_uj").mkdir()  # reading it fails even as root
    sources, why = _sources(tmp_path)
    assert sources == [] and "IsADirectoryError" in why


def test_counter_failing_mid_run_keeps_joules_and_estimates_on(tmp_path):
    pc = make_powercap(tmp_path, dram=False, core=False)
    (src,), _ = _sources(tmp_path)
    src.start()
    pc.add_uj("intel-rapl:0", 7_000_000)
    assert src.read_j() == pytest.approx(7.0)
    (tmp_path / "intel-rapl:0" / "energy_uj").unlink()  # e.g. the module was unloaded
    time.sleep(0.05)
    energy_j = src.read_j()  # must not raise
    assert energy_j > 7.0  # the estimate bills the time since the last good read (≥ idle share × TDP)
    assert src.measured_j() == pytest.approx(7.0)
    assert not src.measured and src.method == "tdp_utilization_estimate"
    assert "FileNotFoundError" in src.extra()["fallback_reason"]
    assert src.extra()["measured_method"] == "rapl"
    src.stop()


def test_poll_between_window_reads_keeps_a_measured_window_measured(tmp_path):
    # the poller may read a counter while the meter is reading the other sources at a window edge;
    # the edge must record the counter's total and measured part from one reading, not from two
    from powertrain.energy.base import EnergyMeter, Source

    pc = make_powercap(tmp_path, dram=False, core=False)
    (src,), _ = _sources(tmp_path)

    class PollsInBetween(Source):
        name, measured, polls = "other", False, 1

        def read_j(self) -> float:
            if self.polls:  # at the opening edge only
                self.polls -= 1
                pc.add_uj("intel-rapl:0", 1_000_000)
                src.read_j()  # what the poll thread does, at the worst moment
            return 0.0

    meter = EnergyMeter([src, PollsInBetween()])
    meter.begin_window("train")
    (c, _) = meter.end_window("train").components
    assert c.measured and c.measured_j == pytest.approx(c.energy_j) == pytest.approx(1.0)
    meter.close()
