"""Statistics of repeated runs: intervals, tests and verdicts, pinned on synthetic result files with a known
effect (it must come out significant) and with none (it must not), at the stated n."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("scipy")
pytest.importorskip("pandas")

# five repeats' relative noise, ±3 %: the same spread in every variant, in a different order in each
NOISE = [[-0.03, 0.0, 0.03, -0.015, 0.015], [0.015, -0.03, 0.0, 0.03, -0.015], [0.0, 0.015, -0.015, -0.03, 0.03],
         [0.03, -0.015, 0.015, 0.0, -0.03], [-0.015, 0.03, -0.03, 0.015, 0.0]]


def test_mann_whitney_cannot_reach_significance_at_n3_but_can_at_n5() -> None:
    from powertrain.report import stats

    assert stats.mann_whitney_p([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)  # exact two-sided minimum at n=3
    assert stats.mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert stats.mann_whitney_p([1.0], [2.0, 3.0]) is None  # no test from one run
    assert stats.kruskal_p([[1, 2, 3], [1.5, 2.5, 3.5]]) > 0.05
    assert stats.kruskal_p([[1, 2, 3], [11, 12, 13], [21, 22, 23]]) < 0.05


def test_bootstrap_interval_is_seeded_and_brackets_the_median() -> None:
    from powertrain.report import stats

    values = [10.0, 10.4, 9.7, 10.1, 10.3]
    a, b = stats.median_ci(values), stats.median_ci(values)
    assert a == b  # the same runs always give the same interval
    assert a["median"] == 10.1 and a["n"] == 5 and a["ci"][0] <= 10.1 <= a["ci"][1]
    assert stats.median_ci([3.0])["ci"] is None
    assert stats.median_ci([3.0, 3.0, 3.0])["ci"] == [3.0, 3.0]  # identical runs: nothing to spread


def test_repeats_needed_grows_with_noise_and_shrinks_with_the_effect() -> None:
    from powertrain.report import stats

    few, more = stats.repeats_needed(0.05, 0.02), stats.repeats_needed(0.05, 0.06)
    assert stats.MIN_N_SIGNIFICANT <= few < more
    assert stats.repeats_needed(0.95, 0.06) == stats.MIN_N_SIGNIFICANT  # a big effect: the exact test's minimum
    assert stats.repeats_needed(None, 0.05) is None and stats.repeats_needed(0.05, None) is None


def _layers_result(variant: str, repeat: int, energy_j: float, conv: int = 2, linear: int = 3,
                   relu: bool = True) -> dict[str, Any]:
    return {"schema": "powertrain.result/1", "status": "completed", "error": None,
            "run": {"overrides": [f"study.variant={variant}", f"repeat={repeat}"]},
            "config": {"model": {"family": "simple_cnn", "conv_blocks": conv, "linear_layers": linear, "relu": relu},
                       "study": {"driver": "yarally_layers", "part": "variants", "variant": variant},
                       "seed": 0, "repeat": repeat, "repeats": 5, "max_epochs": 3},
            "metrics": {"final_accuracy": 0.9, "epochs": 3, "target_accuracy": None, "reached_target": False,
                        "energy_to_target_j": None},
            "energy": {"total_j": energy_j, "train_j": energy_j, "eval_j": 0.0, "measured_fraction": 0.0,
                       "components": []},
            "time": {"wall_s": 3.0, "train_s": 2.0}, "history": []}


@pytest.fixture
def layers_sweep(tmp_path: Path) -> Path:
    """A yarally_layers study dir of result files: conv 1→4 doubles the energy (a known effect), linear 3→7
    and ReLU change nothing (no effect); every variant 5 times with the same ±3 % noise, interleaved."""
    from powertrain.studies._common import interleave

    base = {"default": (10.0, {}), "conv_1": (8.0, {"conv": 1}), "conv_4": (16.0, {"conv": 4}),
            "linear_7": (10.0, {"linear": 7}), "relu_off": (10.0, {"relu": False})}
    root = tmp_path / "study"
    for job, (r, name) in enumerate(interleave(list(base), 5)):
        energy, model = base[name]
        d = root / "variants" / str(job)
        d.mkdir(parents=True)
        res = _layers_result(name, r, energy * (1 + NOISE[list(base).index(name)][r]), **model)
        (d / "result.json").write_text(json.dumps(res))
    (root / "study.json").write_text(json.dumps({"driver": "yarally_layers", "summary": None}))
    return root


def test_layers_study_calls_a_known_effect_significant_and_no_effect_noise(layers_sweep: Path) -> None:
    from powertrain.report import load_sweep
    from powertrain.studies.yarally_layers import analyze

    df = load_sweep(layers_sweep)
    assert len(df) == 25 and set(df["variant"]) == {"default", "conv_1", "conv_4", "linear_7", "relu_off"}
    sections = analyze(df, json.loads((layers_sweep / "study.json").read_text()))
    heads = {r[0]: r for r in sections[0].tables[0].rows}
    conv, relu, linear = heads["conv 1→4"], heads["ReLU on vs off"], heads["linear 3→7"]
    assert conv[1] == "+100 %" and conv[3] == "5/5" and conv[4] == pytest.approx(2 / 252)  # exact MWU, n=5
    assert conv[5] == "significant"
    lo, hi = (float(v.replace("−", "-").rstrip(" %")) for v in conv[2].split(" to "))
    assert 80 < lo < 100 < hi < 120  # the interval brackets the true +100 % and excludes no change
    for row in (relu, linear):
        assert row[5] == "not distinguishable from noise" and row[4] > 0.05
    text = sections[0].text
    assert "conv 1→4: +100 % [" in text and "(n=5, p=0.0079)" in text
    assert "ReLU on vs off: +0 % [" in text and "not distinguishable from noise at n=5" in text
    # below the noise floor (the default's own spread), and how many repeats the paper's +3 % would need
    assert "smaller than the noise floor of identical runs (±2 %)" in text
    assert "repeats per variant would resolve the paper's +3 % at this noise" in text
    assert "noise floor: identical runs of the default differ by ±2.4 %" in text
    assert [name for name, _ in sections[0].figures] == ["variant_energy"]


def test_layers_answer_keeps_the_old_keys_beside_the_new(layers_sweep: Path) -> None:
    from powertrain.report import load_sweep
    from powertrain.studies.yarally_layers import _runs_from_df, answer

    ans = answer(_runs_from_df(load_sweep(layers_sweep)))
    assert ans["changes"]["conv 1→4"] == pytest.approx(1.0)  # the float the summary always had
    eff = ans["effects"]["conv 1→4"]
    assert eff["n"] == [5, 5] and eff["significant"] is True and eff["from"] == "conv_1" and eff["to"] == "conv_4"
    default = next(r for r in ans["variants"] if r["variant"] == "default")
    assert default["energy_j"] == pytest.approx(10.0) and default["runs"] == 5 and len(default["energy_ci"]) == 2
    json.dumps(ans)  # all of it goes into study.json


def _cell_groups(ratio: float) -> list[list[float]]:
    """Three cells of five seeds: energies 10, 14 and 10·ratio J, each with the same ±3 % noise."""
    return [[m * (1 + n) for n in NOISE[i]] for i, m in enumerate((10.0, 14.0, 10.0 * ratio))]


def test_worst_best_ratio_with_an_effect_is_significant_and_without_is_not() -> None:
    from powertrain.report import stats

    eff = stats.worst_best_ratio(_cell_groups(3.0))
    assert eff["estimate"] == pytest.approx(3.0) and eff["ci"][0] < 3.0 < eff["ci"][1]
    assert eff["p"] < 0.05 and eff["significant"] and eff["n"] == [5, 5, 5]
    same = stats.worst_best_ratio([[10 * (1 + 0.01 * i) * (1 + n) for n in NOISE[i]] for i in range(3)])
    assert same["estimate"] == pytest.approx(1.02)  # worst/best of cells 1 % apart inside ±3 % noise ...
    assert not same["significant"] and same["below_noise_floor"]  # ... and says it is noise
    text = stats.verdict("worst/best", same, fmt=lambda v: f"{v:.2f}x")
    assert "not distinguishable from noise at n=5 per group" in text


def test_worst_best_table_carries_the_interval_on_result_files(tmp_path: Path) -> None:
    from powertrain.report import load_sweep
    from powertrain.report.analysis import worst_best, worst_best_table

    rows = [(c, s, e) for c, g in enumerate(_cell_groups(3.0)) for s, e in enumerate(g)]
    for job, (cell, seed, energy) in enumerate(rows):
        d = tmp_path / "grid" / str(job)
        d.mkdir(parents=True)
        res = _layers_result("x", 0, energy)
        res["config"] = {"batch_size": [32, 128, 512][cell], "seed": seed}
        res["metrics"].update(target_accuracy=0.9, reached_target=True, energy_to_target_j=energy)
        (d / "result.json").write_text(json.dumps(res))
    df = load_sweep(tmp_path / "grid")
    wb = worst_best(df)[0]
    assert wb["ratio"] == pytest.approx(3.0) and wb["ratio_p"] < 0.05 and wb["ratio_ci"][0] < 3.0 < wb["ratio_ci"][1]
    assert wb["ratio_effect"]["verdict"].startswith("worst/best energy to target: 3.00x [")
    table = worst_best_table(df)
    row = dict(zip(table.columns, table.rows[0]))
    assert row["worst/best"] == "3.00x" and " to " in row["95 % interval"] and row["p (Kruskal-Wallis, cells)"] < 0.05


def test_break_even_has_an_interval_and_never_is_a_word() -> None:
    from powertrain.studies.pretrain_finetune import break_even, break_even_stats

    pre = [1.4 * (1 + n) for n in NOISE[0]]
    ft = [1.0 * (1 + n) for n in NOISE[1]]
    sc = [3.0 * (1 + n) for n in NOISE[2]]
    out = break_even_stats(pre, ft, sc)
    eff = out["break_even_effect"]
    assert eff["estimate"] == break_even(1.4, 1.0, 3.0) == 1 and eff["ci"][0] <= 1 <= eff["ci"][1]
    assert out["saving_effect"]["significant"] and out["saving_effect"]["estimate"] == pytest.approx(-2 / 3)
    assert eff["verdict"].startswith("break-even n*: 1 [1, 1] (n=5 per group, p of the saving=0.0079)")
    none = break_even_stats(pre, sc, ft)  # fine-tuning dearer than scratch: no saving, ever
    assert none["break_even_effect"]["estimate"] == "never" and none["break_even_ci"] == ["never", "never"]
    close = break_even_stats(pre, [2.9 * (1 + n) for n in NOISE[1]], sc)  # a tiny saving inside the noise
    assert close["break_even_ci"][1] == "never" and not close["saving_effect"]["significant"]
    json.dumps(close)
    assert math.isfinite(close["saving_effect"]["estimate"])


def _mt_result(variant: str, repeat: int, energy_j: float | None) -> dict[str, Any]:
    res = _layers_result(variant, repeat, energy_j or 50.0)
    res["config"]["study"] = {"driver": "multitask_vs_single", "part": "runs", "variant": variant}
    res["run"]["dir"] = f"runs/{variant}/{repeat}"
    res["metrics"].update(target_accuracy=0.8, reached_target=energy_j is not None, energy_to_target_j=energy_j)
    return res


def _mt_summary(tmp_path: Path, energy: dict[str, list[Any]], skip: tuple[str, int] = ("", -1)) -> dict[str, Any]:
    """multitask_vs_single's analysis of 4 interleaved repeats with these energies (None: missed its target;
    ``skip``: the (variant, repeat) that left no result.json at all)."""
    from types import SimpleNamespace

    from powertrain.studies import multitask_vs_single as mvs
    from powertrain.studies._common import interleave

    sweep = tmp_path / "runs"
    for job, (r, name) in enumerate(interleave(list(energy), 4)):
        if (name, r) == skip:
            continue  # the job ended without a result.json: variant_results leaves it out
        d = sweep / str(job)
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps(_mt_result(name, r, energy[name][r])))
    cfg = SimpleNamespace(seed=0, verbose=False, target_accuracy=0.8, model=SimpleNamespace(family="simple_cnn"),
                          study=SimpleNamespace(tasks=["a", "b"], task_targets=[], mixing="round_robin",
                                                repeats=4, scale="smoke"))
    ctx = SimpleNamespace(cfg=cfg, sweep=lambda part, overrides, variants=None: sweep)
    return mvs.run(ctx)  # type: ignore[arg-type]


def test_multitask_saving_pairs_repeats_by_index_and_its_point_matches_its_interval(tmp_path: Path) -> None:
    """single_a's repeat 1 left no readable result and single_b's repeat 3 missed its target: only repeats
    0 and 2 have both, and the saved fraction printed is the one its interval and verdict are about."""
    from powertrain.report import stats

    energy = {"multitask": [30.0, 31.0, 29.0, 30.5], "single_a": [20.0, None, 22.0, 40.0],
              "single_b": [15.0, 16.0, 17.0, None]}
    summary = _mt_summary(tmp_path, energy, skip=("single_a", 1))
    eff = summary["saved_effect"]
    assert summary["status"] == "completed" and eff["n"] == [4, 2]  # repeats 0 and 2, not positions 0-2
    pairs = [20.0 + 15.0, 22.0 + 17.0]  # each repeat's own single-task runs
    assert summary["noise_floor"] == pytest.approx(stats.noise_floor(pairs))
    total = stats.median([20.0, 22.0]) + stats.median([15.0, 17.0])
    assert summary["energy_single_sum_j"] == pytest.approx(total)
    assert summary["energy_saved_fraction"] == pytest.approx((total - 30.25) / total) == pytest.approx(eff["estimate"])
    assert eff["ci"][0] <= summary["energy_saved_fraction"] <= eff["ci"][1]
    assert f"({abs(total - 30.25) / total * 100:.0f} % of the single-task runs' {total:.3g} J)" in summary["comparison"]


def test_the_wandb_report_summary_carries_every_answer_with_its_interval(layers_sweep: Path) -> None:
    from powertrain.report import load_sweep
    from powertrain.report.wandb_upload import study_answers
    from powertrain.studies.yarally_layers import _runs_from_df, answer

    summary = answer(_runs_from_df(load_sweep(layers_sweep)))
    (layers_sweep / "study.json").write_text(json.dumps({"driver": "yarally_layers", "summary": summary}))
    got = study_answers(layers_sweep)
    assert got["answers/effects.conv 1→4/estimate"] == pytest.approx(1.0)
    assert got["answers/effects.conv 1→4/ci_low"] < 1.0 < got["answers/effects.conv 1→4/ci_high"]
    assert got["answers/effects.conv 1→4/n"] == "5/5" and got["answers/effects.conv 1→4/significant"] is True
    assert got["answers/effects.ReLU on vs off/verdict"].startswith("ReLU on vs off: +0 % [")
    assert got["answers/noise_floor"] == pytest.approx(summary["noise_floor"])


def test_figures_carry_the_spread_of_repeats(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from powertrain.report import load_sweep
    from powertrain.report.figures import convergence, energy_heatmap

    job = 0
    for lr in (0.1, 0.01):
        for bs in (32, 128):
            for seed, noise in enumerate(NOISE[0][:3]):
                e = 10.0 * (1 + noise) * (2 if lr == 0.01 else 1)
                res = _layers_result("x", 0, e)
                res["config"] = {"optimizer": {"lr": lr}, "batch_size": bs, "seed": seed}
                res["metrics"].update(target_accuracy=0.9, reached_target=True, energy_to_target_j=e)
                res["history"] = [{"epoch": 1, "accuracy": 0.5 + noise, "energy_j": e / 2},
                                  {"epoch": 2, "accuracy": 0.92, "energy_j": e}]
                d = tmp_path / "grid" / str(job)
                d.mkdir(parents=True)
                (d / "result.json").write_text(json.dumps(res))
                job += 1
    df = load_sweep(tmp_path / "grid")
    texts = [t.get_text() for t in energy_heatmap(df).axes[0].texts]
    # each cell: its median, the min-max of its three seeds and how many reached the target
    assert "10 J\n9.7–10.3 J\n3/3 reached" in texts and "20 J\n19.4–20.6 J\n3/3 reached" in texts
    ax = convergence(df).axes[0]
    assert len(ax.collections) >= 4  # a band (and energy bars) per setting: 4 settings of 3 runs each
    assert sorted(t.get_text() for t in ax.get_legend().get_texts())[0].endswith("(n=3)")


def test_noise_section_without_a_usable_spread_leaves_the_spread_sentence_out(tmp_path: Path) -> None:
    """Two runs of one setting that both metered 0 J: no coefficient of variation (mean 0), so no noise
    floor to state, and the section must still come out (it raised TypeError on ``None * 100``)."""
    from powertrain.report import load_sweep
    from powertrain.report.analysis import noise_section

    for job in range(2):
        d = tmp_path / "grid" / str(job)
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps(_layers_result("x", job, 0.0)))
    out = noise_section(load_sweep(tmp_path / "grid"))
    assert out is not None
    text, table = out
    assert "Run-to-run spread" not in text and "±" not in text
    assert table.rows[0][1:4] == ["(one setting)", 2, 2] and table.rows[0][-1] is None


@pytest.mark.parametrize("seeds", [1, 3])  # one line per run / the median of the repeats with bands
def test_both_convergence_figures_label_a_task_metric_of_the_users(tmp_path: Path, seeds: int) -> None:
    pytest.importorskip("matplotlib")
    from powertrain.report import load_sweep
    from powertrain.report.figures import convergence

    for job, (lr, seed) in enumerate((lr, s) for lr in (0.1, 0.01) for s in range(seeds)):
        res = _layers_result("x", 0, 10.0 + job)
        res["config"] = {"optimizer": {"lr": lr}, "seed": seed}
        res["metrics"].update(metric="f1", target_accuracy=0.9, reached_target=True)
        res["history"] = [{"epoch": 1, "accuracy": 0.5, "energy_j": 5.0 + job},
                          {"epoch": 2, "accuracy": 0.92, "energy_j": 10.0 + job}]
        d = tmp_path / "grid" / str(job)
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps(res))
    fig = convergence(load_sweep(tmp_path / "grid"))
    ax = fig.axes[0]
    assert ax.get_ylabel() == "f1 × 100 after each epoch"
    assert ("median of the repeats" in ax.get_title()) == (seeds > 1)
    fig.savefig(tmp_path / "convergence.png")


def test_a_multitask_run_that_costs_more_says_more(tmp_path: Path) -> None:
    """Multitask dearer than its single-task runs: the sentence says how much *more*, not "101 % of"."""
    energy = {"multitask": [70.0, 71.0, 69.0, 70.5], "single_a": [20.0, 21.0, 22.0, 20.5],
              "single_b": [15.0, 16.0, 17.0, 15.5]}
    summary = _mt_summary(tmp_path, energy)
    total = summary["energy_single_sum_j"]
    assert summary["energy_saved_j"] < 0
    more = -summary["energy_saved_j"]
    assert summary["comparison"] == (f"multitask costs {more:.3g} J more ({more / total * 100:.0f} % more than "
                                     f"the single-task runs' {total:.3g} J)")
