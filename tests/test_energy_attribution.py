"""A job is billed its share of the CPU packages and memory, and the result says how that share was found."""

from __future__ import annotations

import pytest

from fakes.host import dual_socket, kvm_guest, package_cpus
from fakes.powercap import make_powercap
from powertrain.compose.validate import check_value
from powertrain.config import EnergyConfig
from powertrain.config.errors import ConfigError
from powertrain.energy import Ledger, build_meter
from powertrain.energy.attribution import (
    detect_cpu_share,
    microarchitecture,
    parse_cpu_max,
    parse_cpuinfo,
    parse_proc_stat,
)

SLURM_8 = {"SLURM_JOB_ID": "42", "SLURM_CPUS_ON_NODE": "8", "SLURM_JOB_CPUS_PER_NODE": "8"}
JOB_8_CPUS = set(package_cpus(32, 0)[:4] + package_cpus(32, 0)[32:36])  # 4 cores + their siblings


def _no_rapl(tmp_path, **cfg):
    return EnergyConfig(powercap_root=str(tmp_path / "no-powercap"), **cfg)


def test_kvm_guest_is_billed_per_vcpu_within_its_microarchitectures_envelope(tmp_path):
    host = kvm_guest(tmp_path, vcpus=2, family=25, model=1)  # what this project's dev VM reports
    meter = build_meter(_no_rapl(tmp_path), host=host.paths, affinity={0, 1}, environ={})
    cpu = meter.sources[0]
    assert (cpu.name, cpu.method, cpu.measured) == ("cpu:package-0", "per_thread_coefficient_estimate", False)
    # idle: the 2 held vCPUs' part of the idle draw; busy: both vCPUs at the Zen 3 maximum
    assert cpu._power_w(0.0, 0.0, 1.0) == pytest.approx(2 * 0.45)
    assert cpu._power_w(0.0, 2.0, 1.0) == pytest.approx(2 * 2.02)
    assert cpu._power_w(0.0, 1.0, 1.0) == pytest.approx(2 * 0.45 + (2.02 - 0.45))  # one of two busy
    extra = cpu.extra()
    assert extra["share"] is None and "hidden by the hypervisor" in extra["share_basis"]
    assert extra["coefficient_source"].startswith("Cloud Carbon Footprint per-vCPU coefficients for EPYC 3rd")
    (line, dram_line) = meter.billing_lines()
    assert line.startswith(
        "cpu:package-0: 2 vCPUs of a host of unknown size (KVM guest, EPYC 3rd Gen (Zen 3/Milan), "
        "0.45–2.02 W/thread, Cloud Carbon Footprint"
    )
    assert dram_line.startswith("dram:0: resident memory of this process")
    assert "overlaps" in meter.sources[1].extra()["note"]  # whole-server coefficients include memory
    meter.close()


def test_threads_total_override_states_the_hosts_size(tmp_path):
    host = kvm_guest(tmp_path)
    meter = build_meter(_no_rapl(tmp_path, threads_total=128), host=host.paths, affinity={0, 1}, environ={})
    assert meter.billing_lines()[0].startswith("cpu:package-0: 2 of 128 threads (KVM guest, EPYC 3rd Gen")
    assert meter.sources[0].extra()["share"] == pytest.approx(2 / 128)
    meter.close()


def test_unknown_microarchitecture_gets_a_labelled_per_thread_default_not_a_whole_package(tmp_path):
    host = kvm_guest(tmp_path, family=6, model=0x6A)  # Ice Lake server: no published coefficient
    (host.proc / "cpuinfo").write_text(
        (host.proc / "cpuinfo").read_text().replace("AuthenticAMD", "GenuineIntel")
    )
    meter = build_meter(_no_rapl(tmp_path), host=host.paths, affinity={0, 1}, environ={})
    cpu = meter.sources[0]
    assert cpu.extra()["coefficient_source"].startswith("assumption: microarchitecture not identified")
    assert cpu._power_w(0.0, 2.0, 1.0) == pytest.approx(2 * 3.50)  # ≈ 7 W, not 85 W
    meter.close()


def test_slurm_job_on_dual_socket_node_is_billed_its_thread_share_idle_included(tmp_path):
    host = dual_socket(tmp_path)  # 2 × EPYC 7543 (225 W TDP), 128 threads
    cfg = _no_rapl(tmp_path)
    job = build_meter(cfg, host=host.paths, affinity=JOB_8_CPUS, environ=SLURM_8)
    node = build_meter(cfg, host=host.paths, affinity=set(range(128)), environ={})
    cpu, whole = job.sources[0], node.sources[0]
    assert cpu.method == "tdp_utilization_estimate" and cpu.extra()["share"] == pytest.approx(8 / 128)
    idle_node_w = 2 * 225.0 * 0.3
    assert whole._power_w(0.0, 0.0, 1.0) == pytest.approx(idle_node_w)
    assert cpu._power_w(0.0, 0.0, 1.0) == pytest.approx(idle_node_w * 8 / 128)  # idle: its threads' part
    assert cpu._power_w(0.0, 8.0, 1.0) == pytest.approx(2 * 225.0 * 8 / 128)  # its 8 threads flat out
    # the same work costs the same dynamic power whoever is billed: only the idle part is shared out
    assert cpu._power_w(0.0, 8.0, 1.0) - cpu._power_w(0.0, 0.0, 1.0) == pytest.approx(
        whole._power_w(0.0, 8.0, 1.0) - whole._power_w(0.0, 0.0, 1.0)
    )
    assert job.billing_lines()[0].startswith("cpu:packages: 8 of 128 threads (bare metal, 2 × 225 W TDP")
    assert "Slurm allocation (SLURM_CPUS_ON_NODE=8)" in job.billing_lines()[0]
    unbound = detect_cpu_share(SLURM_8, host.paths, affinity=set(range(128)))  # no task/affinity plugin
    assert unbound.threads_held == 8 and unbound.share == pytest.approx(8 / 128)
    job.close()
    node.close()


def test_cgroup_quota_and_cpu_share_override_limit_the_billed_threads(tmp_path):
    host = dual_socket(tmp_path)
    host.set_cgroup("/docker/abc", cpu_max="250000 100000")  # --cpus=2.5
    share = detect_cpu_share({}, host.paths, affinity=set(range(128)))
    assert share.threads_held == 2.5 and share.share == pytest.approx(2.5 / 128)
    assert "cgroup cpu.max quota (2.5 CPUs)" in share.basis
    forced = detect_cpu_share({}, host.paths, cpu_share=0.5, affinity=set(range(128)))
    assert forced.threads_held == 64 and forced.share == 0.5 and "energy.cpu_share=0.5" in forced.basis


def _attributed_node(tmp_path, environ, affinity):
    pc = make_powercap(tmp_path / "powercap", sockets=2, dram=True, core=False)
    host = dual_socket(tmp_path / "host")
    host.set_cgroup("/system.slice/slurmstepd.scope/job_42/step_0")
    meter = build_meter(
        EnergyConfig(powercap_root=str(tmp_path / "powercap")),
        host=host.paths,
        affinity=affinity,
        environ=environ,
    )
    return pc, host, meter


def test_rapl_package_shared_with_another_busy_process_is_attributed_by_busy_time(tmp_path):
    environ = {**SLURM_8, "SLURM_MEM_PER_NODE": "16000"}
    pc, host, meter = _attributed_node(tmp_path, environ, JOB_8_CPUS)
    assert [(s.name, s.method, s.measured) for s in meter.sources] == [
        ("cpu:package-0", "rapl_attributed", True),
        ("dram:0", "rapl_attributed", True),
        ("cpu:package-1", "rapl_attributed", True),
        ("dram:1", "rapl_attributed", True),
    ]
    meter.begin_window("train")
    pkg0 = package_cpus(32, 0)
    # the job's 8 CPUs do 2 s of work; another job does 6 s on the rest of package 0 and 4 s on package 1
    host.run({**{c: 0.25 for c in sorted(JOB_8_CPUS)}, pkg0[10]: 3.0, pkg0[11]: 3.0, 40: 4.0}, job_s=2.0)
    pc.add_uj("intel-rapl:0", 100_000_000)  # 100 J on package 0
    pc.add_uj("intel-rapl:1", 50_000_000)
    pc.add_uj("intel-rapl:0:0", 8_000_000)
    m = meter.end_window("train")
    c = {x.name: x for x in m.components}
    assert c["cpu:package-0"].energy_j == pytest.approx(25.0)  # 2 s of 8 s busy
    assert c["cpu:package-0"].measured and c["cpu:package-0"].measured_j == pytest.approx(25.0)
    assert c["cpu:package-0"].extra["package_energy_j"] == pytest.approx(100.0)
    assert c["cpu:package-0"].extra["share"] == pytest.approx(0.25)
    assert "busy-time share: the Slurm job cgroup's cpu.stat" in c["cpu:package-0"].extra["share_basis"]
    assert c["cpu:package-1"].energy_j == pytest.approx(0.0)  # none of its threads are the job's
    mem_share = 16000 * 2**20 / (263_000_000 * 1024)
    assert c["dram:0"].energy_j == pytest.approx(8.0 * mem_share)
    assert "memory allocation share" in c["dram:0"].extra["share_basis"]
    assert meter.billing_lines()[0].startswith(
        "cpu:package-0: part of the package-0 counter (RAPL, measured)"
    )

    ledger = Ledger()
    ledger.add("train", m)
    meter.begin_window("eval")  # a window the job spends idle while the neighbour keeps working
    host.run({pkg0[10]: 1.0})
    pc.add_uj("intel-rapl:0", 20_000_000)
    ledger.add("eval", meter.end_window("eval"))
    (cpu0,) = [c for c in ledger.components() if c["name"] == "cpu:package-0"]
    assert cpu0["energy_j"] == pytest.approx(25.0) and cpu0["package_energy_j"] == pytest.approx(120.0)
    assert cpu0["share"] == pytest.approx(25.0 / 120.0)  # the share of the run, not of its last window
    meter.close()


def test_without_slurm_the_process_cpu_time_is_set_against_the_package(tmp_path, monkeypatch):
    from powertrain.energy import estimate

    clock = {"cpu_s": 100.0}  # this process's CPU time, as time.process_time() would report it
    monkeypatch.setattr(estimate.time, "process_time", lambda: clock["cpu_s"])
    # no Slurm: a cpuset of package 0's first threads; the cgroup's cpu.stat is not the job's to use
    pc, host, meter = _attributed_node(tmp_path, {}, set(range(32)))
    meter.begin_window("train")
    host.run({0: 3.0, 1: 1.0, 2: 4.0}, job_s=7.0)  # 8 s busy on package 0, 4 s of it ours
    clock["cpu_s"] += 4.0
    pc.add_uj("intel-rapl:0", 80_000_000)
    m = meter.end_window("train")
    cpu0 = m.components[0]
    assert cpu0.method == "rapl_attributed" and cpu0.energy_j == pytest.approx(40.0)
    assert "this process's CPU time" in cpu0.extra["share_basis"]
    meter.close()


def test_proc_stat_is_read_once_per_window_edge_for_all_packages(tmp_path, monkeypatch):
    from powertrain.energy import attribution

    reads = []
    real_read = attribution._read
    monkeypatch.setattr(attribution, "_read", lambda p: (reads.append(p), real_read(p))[1])
    pc, host, meter = _attributed_node(tmp_path, SLURM_8, JOB_8_CPUS)
    meter.start()
    reads.clear()
    meter.begin_window("train")
    host.run({0: 1.0}, job_s=1.0)
    meter.end_window("train")
    stat_reads = [p for p in reads if p.endswith("/stat")]
    assert len(stat_reads) == 2  # two edges, two packages: one /proc/stat read per edge
    meter.close()


def test_exclusive_node_is_not_attributed_and_says_so(tmp_path):
    environ = {"SLURM_JOB_ID": "7", "SLURM_CPUS_ON_NODE": "128"}
    pc, host, meter = _attributed_node(tmp_path, environ, set(range(128)))
    assert all(s.method == "rapl" for s in meter.sources)
    meter.begin_window("train")
    host.run({0: 5.0}, job_s=1.0)
    pc.add_uj("intel-rapl:0", 100_000_000)
    m = meter.end_window("train")
    cpu = m.components[0]
    assert cpu.energy_j == pytest.approx(100.0) and cpu.measured
    assert cpu.extra["share"] == 1.0 and cpu.extra["share_basis"].startswith(
        "exclusive: this job holds 128 of 128"
    )
    meter.close()


@pytest.mark.parametrize(
    ("vendor", "family", "model", "stepping", "expected"),
    [
        ("GenuineIntel", 6, 0x55, 4, "Skylake"),
        ("GenuineIntel", 6, 0x55, 7, "Cascade Lake"),
        ("GenuineIntel", 6, 0x55, 11, None),  # Cooper Lake: no published coefficient
        ("GenuineIntel", 6, 0x4F, 1, "Broadwell"),
        ("AuthenticAMD", 23, 1, 2, "EPYC 1st Gen (Zen/Naples)"),
        ("AuthenticAMD", 23, 0x31, 0, "EPYC 2nd Gen (Zen 2/Rome)"),
        ("AuthenticAMD", 25, 0x11, 1, None),  # Genoa: no row
    ],
)
def test_microarchitecture_from_cpuid(vendor, family, model, stepping, expected):
    text = f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\nstepping\t: {stepping}\n"
    assert microarchitecture(parse_cpuinfo(text)) == expected


def test_parsers_read_kernel_formats(tmp_path):
    assert parse_cpu_max("max 100000") is None and parse_cpu_max("50000 100000") == 0.5
    host = dual_socket(tmp_path)
    info = parse_cpuinfo((host.proc / "cpuinfo").read_text())
    assert info.packages == 2 and not info.virtual and len(info.cpu_package) == 128
    assert info.package_cpus()[1] == sorted(package_cpus(32, 1))
    busy = parse_proc_stat((host.proc / "stat").read_text())
    assert len(busy) == 128 and busy[0] == 1000  # "cpu " (the total) is not a CPU


@pytest.mark.parametrize(
    ("key", "bad"), [("energy.cpu_share", 0), ("energy.cpu_share", 1.5), ("energy.threads_total", 0)]
)
def test_overrides_reject_bad_values_naming_what_is_allowed(key, bad):
    with pytest.raises(ConfigError) as err:
        check_value(key, bad)
    assert key in str(err.value) and str(bad) in str(err.value)
