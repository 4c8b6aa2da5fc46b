"""The Hydra Sweeper behind ``hydra/sweeper=powertrain`` (the default): Hydra's basic sweeper, whose job list
is rearranged by ``powertrain.launch.repeats.plan`` (repeats interleaved, a swept seed as rounds, explicit
variants), and every job of a batch validated and probed before it launches
(``powertrain.launch.preflight.check_batch``: a batch with a bad point launches nothing, one line per
reason, exit 2). Hydra's ``BasicSweeper.sweep`` composes every job of a batch in ``validate_batch_is_legal``
anyway; the checks reuse those compositions. Launching and batching stay the basic sweeper's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper


class RepeatSweeper(BasicSweeper):
    """Basic sweeper + ``repeats=N`` + ``hydra.sweeper.variants`` + every point checked first."""

    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[dict[str, str]] = None,
                 variants: Optional[list[list[str]]] = None) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.variants = [[str(o) for o in v] for v in variants] if variants else None
        self._next_job = 0

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        from powertrain.launch.preflight import check_batch

        assert self.hydra_context is not None and self.config is not None
        check_batch(self.config, self.hydra_context.config_loader, batch, self._next_job)
        self._next_job += len(batch)

    # BasicSweeper.sweep calls self.split_arguments: this method replaces its plain Cartesian product
    def split_arguments(self, overrides: list[Any], max_batch_size: Optional[int]) -> list[list[list[str]]]:  # type: ignore[override]
        from powertrain.launch.repeats import plan, sweep_repeats

        repeats = sweep_repeats(self.config)
        seeds: list[str] = []
        rest = []
        for o in overrides:
            if o.key_or_group == "seed" and o.is_sweep_override() and o.is_discrete_sweep():
                seeds = [f"seed={v}" for v in o.sweep_string_iterator()]
            elif o.key_or_group == "repeat" and repeats > 1:
                continue  # the sweeper numbers the repeats itself
            else:
                rest.append(o)
        jobs = plan(BasicSweeper.split_arguments(rest, None)[0], seeds, repeats, self.variants)
        if max_batch_size is None:
            return [jobs]
        return [list(c) for c in BasicSweeper.split_overrides_to_chunks(jobs, max_batch_size)]
