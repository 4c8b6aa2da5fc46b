"""The checks every start makes on its overrides before Hydra composes anything.

One place for the command line (``__main__``) and ``run_job``: a check added for one start and not the
other is how ``run_job("repeats=3")`` once ran a single job where the command line refused it. It lives
in ``launch`` because the sweeper, repeats and launcher checks do.
"""

from __future__ import annotations

from typing import Optional


def check_argv(overrides: list[str], multirun: Optional[bool], other_sources: bool = False) -> None:
    """Raise the one-line ConfigError for the first override a start must refuse.

    ``overrides``: Hydra's flags taken out (``compose.overrides.hydra_args``); ``multirun``: whether ``-m``
    was given (None: read it from ``overrides``); ``other_sources``: see ``check_overrides``.
    """
    from powertrain.compose.overrides import check_overrides
    from powertrain.config.targets import import_plugins, plugins_in_argv
    from powertrain.launch.repeats import check_argv as check_repeats_argv
    from powertrain.launch.search import check_argv as check_sweep_argv
    from powertrain.launch.slurm import check_launcher_argv

    import_plugins(plugins_in_argv(overrides))  # plugins=[...]: their names join the checks below
    check_overrides(overrides, other_sources=other_sources)
    check_sweep_argv(overrides)  # hydra/sweeper=optuna: sampler, keys, search space
    check_repeats_argv(overrides, multirun=multirun)  # repeats=N: only where a sweeper can repeat
    check_launcher_argv(overrides)  # hydra.launcher.<key>: a key the chosen launcher has
