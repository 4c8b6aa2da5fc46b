"""Typed run configuration: the schema Hydra composes into, and nothing else.

The dataclasses below are registered in Hydra's ConfigStore (``powertrain.compose.validate.register_configs``) as
``base_config`` and ``base_<group>``, so each YAML file under ``conf/`` holds values only. Their defaults
equal the defaults conf/config.yaml composes (tests/test_config.py pins that). Checks live in
``powertrain.compose.validate``; paradigms and study drivers subclass ``ParadigmConfig`` / ``StudyConfig`` in
their own modules. This module imports nothing from the rest of powertrain except the error type.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from powertrain.config.errors import ConfigError

__all__ = ["ConfigError", "RunConfig", "GROUPS", "data_root"]


@dataclass
class ModelConfig:
    """Which network to build. ``family`` picks the builder from the model registry; ``_target_`` names the
    user's own callable instead (Hydra's convention), and the keys beside it are its arguments."""

    family: str = "simple_cnn"
    name: str = "simple_cnn"  # for family=timm: the timm model name
    linear_layers: int = 3  # N of the seed models (including the classifier)
    conv_blocks: int = 2  # M of SimpleCNN
    relu: bool = True
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 128])  # family=mlp
    dropout: float = 0.0
    input_size: Optional[int] = None  # resize inputs to this side length (e.g. 224 for ViT); None = as is
    # the user's own model: an importable callable ("mylab.nets.MyNet" or "mylab.nets:MyNet"); it gets the
    # data's shape as the keyword arguments it names (in_channels, image_size, num_classes, ...)
    _target_: Optional[str] = None
    # its other arguments: written beside _target_ in YAML (+model.width=64 on the command line); validate
    # gathers them here
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class DatasetConfig:
    """Where the data comes from. Everything is held in memory as tensors on the training device."""

    name: str = "digits"
    root: Optional[str] = None  # torchvision datasets; None -> $POWERTRAIN_DATA or ./data
    download: bool = False  # never fetch unless asked: compute nodes are often offline
    # synthetic only (powertrain.data.synthetic); the difficulty knobs default to off, the presets set them
    num_classes: int = 10
    channels: int = 1
    image_size: int = 8
    train_size: int = 2048
    test_size: int = 512
    noise: float = 0.5  # per-pixel Gaussian noise std (it averages out over pixels, so alone it is easy)
    clutter: float = 0.0  # smooth per-sample background at the patterns' own scale: makes classes overlap
    max_shift_px: int = 0  # each sample's pattern moves up to this many pixels each way (convolutions help)
    label_noise: float = 0.0  # share of *training* labels replaced by a random class; test labels stay clean
    # all datasets: use only the first N samples of each split (None = all); handy for quick runs
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None
    test_fraction: float = 0.25  # digits has no official split: a seeded stratified holdout
    classes: list[int] = field(default_factory=list)  # keep only these labels, renumbered 0..k-1 ([] = all)
    # the user's own data: a callable returning (train, test) torch Datasets of (x, y) samples, or one object
    # with .train and .test (and optionally .num_classes); the keys beside it are its arguments
    _target_: Optional[str] = None
    args: dict[str, Any] = field(default_factory=dict)
    # DataLoader worker processes for datasets that are not small tensors (None = min(4, CPUs held - 1))
    num_workers: Optional[int] = None


@dataclass
class TaskConfig:
    """What a training step minimises and what an evaluation reports (default: classification).

    ``loss`` and ``evaluate`` name the user's own functions (importable paths, as ``_target_``):
    ``loss(model, batch) -> scalar tensor`` and ``evaluate(model, batches) -> dict`` of metrics, where
    ``batches`` iterates over the test split on the training device. ``metric`` names the entry of that dict
    that targets (``target_accuracy``), reports and pruning read: accuracy-like, higher is better.
    """

    loss: Optional[str] = None  # None = cross-entropy of model(x) against integer labels y
    evaluate: Optional[str] = None  # None = accuracy and mean cross-entropy over the test split
    metric: str = "accuracy"


@dataclass
class SchedulerConfig:
    name: str = "cosine"  # none | cosine | step
    step_size: int = 10  # step: epochs between decays
    gamma: float = 0.1
    warmup_epochs: int = 0


@dataclass
class OptimizerConfig:
    name: str = "sgd"  # sgd | adam | adamw | rmsprop
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    alpha: float = 0.99  # rmsprop smoothing
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)


@dataclass
class HardwareConfig:
    """The device to train on and the life-cycle figures of the hardware (for embodied carbon).

    Every number carries its source in ``sources``; a number without a public source is listed in
    ``assumptions`` so the result can say so.
    """

    name: str = "auto"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    kind: str = "auto"  # gpu | cpu | auto (detect)
    tdp_w: Optional[float] = None  # None = detect (CPU model table) or ask the driver (NVML power limit)
    embodied_kgco2e: Optional[float] = None  # cradle-to-gate emissions of the device
    lifetime_years: Optional[float] = None
    utilization: Optional[float] = None  # expected share of the lifetime spent busy (0..1]
    sources: dict[str, str] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)  # which numbers above are assumptions
    # hardware=auto: case-insensitive substrings of torch.cuda.get_device_name that select this profile
    match: list[str] = field(default_factory=list)
    # CPU threads for torch's intra-op pool. None = $SLURM_CPUS_PER_TASK inside a Slurm job (so array
    # tasks sharing a node do not oversubscribe it), else torch's default; $OMP_NUM_THREADS always wins.
    cpu_threads: Optional[int] = None
    # GPU knobs (issue 15), set through NVML on the run's GPU before training and always restored:
    # the board power limit in W, and locked graphics clocks in MHz (one value or [min, max])
    gpu_power_limit_w: Optional[float] = None
    gpu_locked_clocks_mhz: Any = None


@dataclass
class ParadigmConfig:
    """How knowledge enters the run. Each paradigm module in ``powertrain.paradigms`` subclasses this with
    its own fields and registers it as ``base_<name>`` (conf/paradigm/<name>.yaml starts from it)."""

    name: str = "scratch"


@dataclass
class StudyConfig:
    """A study preset (``experiment=<name>``): several runs and one report, run by ``study.driver``.

    A driver with knobs of its own subclasses this in its module (``powertrain.studies.<driver>``);
    conf/experiment/<name>.yaml starts from it with ``defaults: [/study: base_study_<driver>]``.
    """

    driver: Optional[str] = None  # a name in powertrain.studies.STUDIES; None = a plain run
    scale: str = "smoke"  # smoke (minutes on a laptop) | paper (the published setting)
    seeds: list[int] = field(default_factory=lambda: [0])
    part: Optional[str] = None  # set by the driver on its sub-runs: this run is that part, not the study
    # runs of every variant, interleaved round by round (each driver says whether seeds vary with them);
    # None = the driver's default for study.scale (smoke: fits the smoke budget; paper: the paper's)
    repeats: Optional[int] = None
    variant: Optional[str] = None  # set by the driver on the runs of a variant sweep: which variant this is


@dataclass
class EnergyConfig:
    meter: str = "auto"  # auto | estimate
    idle_baseline_s: float = 0.0  # >0: measure idle power for this long before training
    sample_hz: float = 10.0  # background sampling for power-integrating sources
    cpu_idle_share: float = 0.3  # estimate: share of TDP drawn by an idle package
    dram_w_per_gb: float = 0.375  # estimate: DRAM power per GB in use
    gpu_indices: Optional[list[int]] = None  # None = the GPUs this process may use
    gpu_idle_share: float = 0.15  # estimate: share of TDP drawn by an idle GPU (no NVML energy/power)
    powercap_root: str = "/sys/class/powercap"  # where RAPL counters live (a bind mount in containers)
    cpu_share: Optional[float] = None  # share of the CPU packages billed to this job (None = detected)
    threads_total: Optional[int] = None  # hardware threads of the host (None = detected; hidden in a VM)
    # >0: after training, profile this many steps and split the train energy by layer type (an attribution)
    layer_profile_steps: int = 0


@dataclass
class CarbonConfig:
    region: Optional[str] = None  # ISO 3166 alpha-3 (DEU) or cloud region (gcp:europe-west4)
    intensity_g_per_kwh: Optional[float] = None  # overrides the table
    pue: float = 1.0
    world_average_fallback: bool = False  # opt in to a labelled world average when region is unknown


@dataclass
class TrackingConfig:
    name: str = "none"  # none | wandb
    project: str = "powertrain"
    entity: Optional[str] = None
    group: Optional[str] = None  # None = the sweep id in a multirun
    job_type: str = "train"
    tags: list[str] = field(default_factory=list)
    mode: str = "offline"  # offline | online | disabled; $WANDB_MODE wins
    dir: Optional[str] = None  # None = the run directory
    init_timeout_s: float = 30.0


@dataclass
class BudgetConfig:
    energy_j: Optional[float] = None
    time_s: Optional[float] = None


@dataclass
class DistributedConfig:
    """One run across processes (PyTorch DDP). ``batch_size`` stays the global batch: each of the world's
    ranks takes ``batch_size / world_size`` of every step (the result records ``batch_size_per_rank``)."""

    # ranks this command starts on this machine (powertrain's local launcher); 1 = one process, unless
    # torchrun or a multi-task Slurm step started the ranks (they set the world size themselves)
    nproc_per_node: int = 1
    backend: str = "auto"  # auto (nccl on GPU, gloo on CPU) | gloo | nccl
    timeout_s: float = 300.0  # a collective waiting longer than this on a silent peer fails the run


@dataclass
class CheckpointConfig:
    """Progress that survives a kill (powertrain.run.progress): result.json (status ``running``) and the
    resumable checkpoint.pt, rewritten after every epoch by a background thread."""

    progress: bool = True  # false: written only at the end and on SIGTERM/SIGUSR2/Ctrl-C (a kill -9 loses all)
    every_s: float = 300.0  # inside an epoch too, once this long has passed since the last save
    min_interval_s: float = 1.0  # epochs ending sooner after a save are saved with a later one


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    paradigm: ParadigmConfig = field(default_factory=ParadigmConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    carbon: CarbonConfig = field(default_factory=CarbonConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    # modules imported before anything else in every process of the run (DDP ranks, study parts, Slurm
    # tasks): where the user's @register_model / @register_dataset calls live; $POWERTRAIN_PLUGINS adds more
    plugins: list[str] = field(default_factory=list)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    batch_size: int = 64  # global: split across the ranks of a distributed run
    max_epochs: int = 40
    seed: int = 0
    target_accuracy: Optional[float] = None
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast, CUDA only)
    compile: bool = False
    eval_batch_size: int = 1024
    save_checkpoint: bool = True  # keep model weights in the run dir (for paradigm.from_run / resume)
    verbose: bool = True
    predict: bool = False  # profile a few steps and predict the run's (or sweep's) energy; train nothing
    # -m sweeps: run every job this many times, interleaved (round r is the job list rotated by r), so
    # slow drift in machine load hits every job alike; the seed stays as given (identical runs)
    repeats: int = 1
    repeat: int = 0  # which of those repeats this run is (set by the sweeper; a label, not a factor)


GROUPS: dict[str, type] = {
    "model": ModelConfig,
    "dataset": DatasetConfig,
    "optimizer": OptimizerConfig,
    "hardware": HardwareConfig,
    "paradigm": ParadigmConfig,
    "tracking": TrackingConfig,
}
# groups a bare ``name=option`` selects (experiment is optional: no preset unless named); ``study`` is set by
# an experiment preset, never by hand
CHOICE_GROUPS = (*GROUPS, "experiment")


def data_root(ds: DatasetConfig) -> str:
    """The dataset directory: ``dataset.root``, else ``$POWERTRAIN_DATA``, else ``./data``."""
    return os.path.abspath(ds.root or os.environ.get("POWERTRAIN_DATA") or "data")


def get_dotted(obj: Any, dotted: str, default: Any = KeyError) -> Any:
    """``obj.a.b`` / ``obj["a"]["b"]`` for ``"a.b"`` (dataclasses and dicts alike); ``default`` if absent."""
    for part in dotted.split("."):
        try:
            obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
        except (KeyError, AttributeError, TypeError):
            if default is KeyError:
                raise KeyError(dotted) from None
            return default
    return obj
