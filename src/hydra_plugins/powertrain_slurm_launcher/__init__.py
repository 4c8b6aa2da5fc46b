"""powertrain's Slurm launcher for Hydra: hydra-submitit-launcher's ``SlurmLauncher`` that survives a dead job.

``conf/hydra/launcher/slurm.yaml`` (and so ``slurm_local`` and site configs built on it) points
``_target_`` at ``launcher.PowertrainSlurmLauncher``. See docs/slurm.md, "A killed job".
"""
