"""``train.loop.fit`` on its own, with a scripted meter: what an epoch's row says when progress saves cut
its train window, and a one-process stop request checked per step."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from powertrain.data import DataSplits
from powertrain.energy.base import ComponentEnergy, Ledger, Measurement, combine
from powertrain.train.loop import fit
from powertrain.train.tasks import ClassificationTask


class _ScriptedMeter:
    """Every window bills 1.25 J to gpu:0 and 0.5 J to cpu:0 over 0.1 s (the cpu estimated)."""

    def begin_window(self, name: str) -> None:
        pass

    def end_window(self, name: str) -> Measurement:
        return Measurement(name, 0.1, [ComponentEnergy("gpu:0", "gpu", "nvml_energy_counter", True, 1.25, 1.25),
                                       ComponentEnergy("cpu:0", "cpu", "tdp_utilization_estimate", False, 0.5)])


class _DueEveryThirdStep:
    """A progress whose flag reads raised every third step (the loop reads it once a step)."""

    def __init__(self) -> None:
        self.reads, self.saves = 0, []

    @property
    def due(self) -> bool:
        self.reads += 1
        return self.reads % 3 == 0

    def mid_epoch(self, steps: int) -> None:
        self.saves.append(steps)


def _task() -> ClassificationTask:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 2, (64,), generator=g)
    return ClassificationTask(DataSplits("toy", x, y, x[:16], y[:16], 2), 8, 16, 0)


def _fit(progress: Any = None, stop_requested: Any = lambda: False, epochs: int = 1) -> tuple[Any, Ledger]:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    ledger = Ledger()
    r = fit(model, _task(), torch.optim.SGD(model.parameters(), lr=0.1), _ScriptedMeter(), ledger,
            max_epochs=epochs, progress=progress, stop_requested=stop_requested)
    return r, ledger


def test_an_epoch_cut_by_progress_saves_reads_as_the_ledger_billed_it() -> None:
    progress = _DueEveryThirdStep()
    r, ledger = _fit(progress)
    assert progress.saves == [3, 6]  # 8 steps: the train window cut in three
    row = r.state.history[0]
    assert row["epoch_train_j"] == ledger.phase_j("train") == 3 * 1.75
    assert row["epoch_train_s"] == ledger.phase_time_s["train"]
    assert row["epoch_components_j"] == {"gpu:0": 4 * 1.25, "cpu:0": 4 * 0.5}  # 3 train parts + eval


def test_combine_sums_parts_by_the_ledgers_rules() -> None:
    a = Measurement("train", 1.0, [ComponentEnergy("gpu:0", "gpu", "nvml_energy_counter", True, 2.0, 2.0)], 1.0)
    b = Measurement("train", 2.0, [ComponentEnergy("gpu:0", "gpu", "nvml_power_integration", False, 3.0, 0.0,
                                                   {"fallback": "counter lost"})], 0.5)
    m = combine([a, b])
    ledger = Ledger()
    for part in (a, b):
        ledger.add("train", part)
    assert [c.to_dict() for c in m.components] == ledger.components(("train",))
    assert m.time_s == 3.0 and m.total_j == 5.0 and m.carbon_g == 1.5
    assert m.components[0].method == "nvml_energy_counter+nvml_power_integration" and not m.components[0].measured
    assert combine([a]) is a


def test_a_one_process_fit_without_progress_still_stops_between_steps() -> None:
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) >= 3

    r, _ = _fit(stop_requested=stop, epochs=2)
    assert r.status == "preempted" and r.state.steps == 3 and r.state.epoch == 0


def test_a_loaders_test_batches_are_the_shard_asked_for_on_every_call() -> None:
    # the loader was cached by its first call: a later (rank, world_size) silently got that first shard
    from torch.utils.data import TensorDataset

    from powertrain.data.own import DatasetPair

    x, y = torch.randn(10, 3), torch.arange(10)
    pair = DatasetPair("toy", TensorDataset(x, y), TensorDataset(x, y), 10, (3,), 0)
    task = ClassificationTask(pair, 4, 4, 0)

    def labels(rank: int, world: int) -> list[int]:
        return [int(v) for _, yb in task.test_batches(rank, world) for v in yb]

    whole, first, second = labels(0, 1), labels(0, 2), labels(1, 2)
    assert sorted(whole) == list(range(10))
    assert len(first) == len(second) == 5 and sorted(first + second) == whole
    assert labels(0, 1) == whole and labels(1, 2) == second  # asked again: the same, from the cache


def test_an_own_evaluation_that_returns_no_dict_is_named_in_one_line() -> None:
    import pytest

    from powertrain.config import ConfigError
    from powertrain.train.tasks import SupervisedTask

    def not_a_dict(model: Any, batches: Any) -> float:
        return 0.5

    task = SupervisedTask(_task().data, 8, 16, 0, evaluate_fn=not_a_dict)
    with pytest.raises(ConfigError, match="task.evaluate.*not_a_dict.*returned a float"):
        task.evaluate(nn.Linear(4, 2))
