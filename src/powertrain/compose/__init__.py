"""From what the user typed to a checked ``RunConfig``: the argv pre-check, ``resume=``, Hydra's schemas,
and ``validate`` (the one place a composed config is checked).

- ``overrides``: every command-line override against the schema (keys, types, ranges, group options)
- ``resume``: ``resume=<run_dir>`` → that run's overrides and directory
- ``validate``: ``validate``, name checks from the registries, ``register_configs``, ``schema``

Layer: above the registries it reads names from (models, data, train.optim, paradigms, studies, carbon,
hardware, run.distributed); below the entry point and the launchers. Nothing it imports imports it.
"""
