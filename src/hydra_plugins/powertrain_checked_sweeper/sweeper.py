"""``CheckedSweeper``: Hydra's basic sweeper, every job of a batch validated and probed before it launches.

Hydra's ``BasicSweeper.sweep`` composes every job of a batch in ``validate_batch_is_legal`` before
launching it; this subclass reuses those compositions for powertrain's own checks
(``powertrain.launch.preflight.check_batch``), so checking a grid whole costs no extra composition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper


class CheckedSweeper(BasicSweeper):
    """Hydra's basic sweeper; a batch with a bad point launches nothing (one line per reason, exit 2)."""

    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[dict[str, str]] = None):
        super().__init__(max_batch_size=max_batch_size, params=params)
        self._next_job = 0

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        from powertrain.launch.preflight import check_batch

        assert self.hydra_context is not None and self.config is not None
        check_batch(self.config, self.hydra_context.config_loader, batch, self._next_job)
        self._next_job += len(batch)
