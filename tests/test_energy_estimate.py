"""Estimates: they respond to load, and their constants come from a named source or a labelled assumption."""

from __future__ import annotations

import os
import threading
import time

import pytest

from powertrain.energy.estimate import (
    DEFAULT_CPU_TDP_W,
    CpuEstimate,
    DramEstimate,
    GpuEstimate,
    lookup_cpu_tdp,
)
from powertrain.energy.select import cpu_tdp


def _window_j(source, work, seconds=0.3):
    source.start()
    before_j = source.read_j()
    work(seconds)
    return source.read_j() - before_j


def _window_w(source, seconds=0.1):
    """Mean power of an idle window, over the time it really took (a loaded box oversleeps a wait)."""
    t0 = time.perf_counter()
    energy_j = _window_j(source, threading.Event().wait, seconds)
    return energy_j / (time.perf_counter() - t0)


def _busy(seconds):
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def test_busy_cpu_window_costs_more_than_a_sleeping_one():
    src = CpuEstimate(tdp_w=100.0, idle_share=0.3, logical_cpus=2)
    t0 = time.perf_counter()
    sleep_j = _window_j(src, threading.Event().wait)
    t1, cpu1 = time.perf_counter(), sum(os.times()[:2])
    busy_j = _window_j(src, _busy)
    t2, cpu2 = time.perf_counter(), sum(os.times()[:2])
    # sleeping: the idle share only, 30 W
    assert sleep_j == pytest.approx(30.0 * (t1 - t0), rel=0.2)
    # busy: 30 W + 70 W × the share of the 2 CPUs this process got (a full core → 65 W; less when the
    # machine is shared, so compare with the CPU time actually obtained)
    expected_busy_j = 30.0 * (t2 - t1) + 70.0 * (cpu2 - cpu1) / 2
    assert busy_j == pytest.approx(expected_busy_j, rel=0.15)
    assert busy_j > 1.2 * sleep_j
    assert busy_j <= 100.0 * (t2 - t1)  # never above TDP


def test_dram_estimate_follows_resident_memory():
    src = DramEstimate(w_per_gb=10.0)
    small_w = _window_w(src)
    block = bytearray(300 * 1024 * 1024)  # touched pages: resident
    block[::4096] = b"\1" * len(block[::4096])
    big_w = _window_w(src)
    del block
    # 300 MB more resident at 10 W/GB is +3 W
    assert big_w - small_w == pytest.approx(3.0, rel=0.35)


def test_gpu_estimate_without_utilisation_bills_full_tdp():
    src = GpuEstimate(tdp_w=250.0, util_fn=None)
    assert _window_w(src) == pytest.approx(250.0, rel=0.05)
    assert src.extra()["constant_tdp"] is True


def test_gpu_estimate_uses_utilisation_until_it_fails():
    util = {"value": 0.0}

    def read_util():
        if util["value"] is None:
            raise RuntimeError("driver gone")
        return util["value"]

    src = GpuEstimate(tdp_w=200.0, idle_share=0.1, util_fn=read_util)
    assert _window_w(src) == pytest.approx(20.0, rel=0.05)  # 20 W idle
    util["value"] = None
    assert _window_w(src) == pytest.approx(200.0, rel=0.05)  # full TDP
    assert "driver gone" in src.extra()["utilization_unreadable"]


def test_tdp_table_matches_a_known_xeon():
    tdp_w, entry = lookup_cpu_tdp("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz")
    assert tdp_w == 150.0 and entry == "intel xeon gold 6248"
    assert lookup_cpu_tdp("Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz")[0] == 205.0  # not the 6248


def test_unknown_cpu_falls_back_to_a_labelled_assumption():
    assert lookup_cpu_tdp("Intel(R) Xeon(R) Processor") == (None, None)  # this machine's CPU string
    tdp_w, source = cpu_tdp(model="Intel(R) Xeon(R) Processor")
    assert tdp_w == DEFAULT_CPU_TDP_W
    assert source.startswith("assumption:") and "not in the CPU TDP table" in source
    assert cpu_tdp(140.0, model="Intel(R) Xeon(R) Processor") == (140.0, "hardware profile")


@pytest.mark.parametrize(("platform", "expected"), [("linux", 2048 * 1024), ("darwin", 2048)])
def test_rss_without_procfs_reads_ru_maxrss_in_the_platforms_unit(monkeypatch, platform, expected):
    import resource
    import types

    from powertrain.energy import estimate

    def no_procfs(*args, **kwargs):
        raise FileNotFoundError("/proc/self/statm")

    monkeypatch.setattr(estimate, "open", no_procfs, raising=False)
    monkeypatch.setattr(estimate.sys, "platform", platform)
    monkeypatch.setattr(resource, "getrusage", lambda who: types.SimpleNamespace(ru_maxrss=2048))
    assert estimate._rss_bytes() == expected  # KiB on Linux, bytes on macOS
