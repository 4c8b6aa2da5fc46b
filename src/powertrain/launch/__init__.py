"""Many runs: what starts, checks and gathers them.

- ``search``: the Optuna sweeper's search space, samplers and argv checks (``hydra/sweeper=optuna``)
- ``slurm``: the Slurm launcher's argv and sinfo checks
- ``ddp``: ``distributed.nproc_per_node=N``, the local launcher that starts the ranks and outlives them
- ``predict``: ``predict=true``, a run's or a sweep's energy from a few profiled steps
- ``checks``: the checks on the overrides every start makes (the command line's and ``run_job``'s)
- ``callback``: the Hydra callback that writes a sweep's summary and report when it ends

Layer: the top below the entry point; imports ``compose``, ``report``, ``run`` and below.
"""
