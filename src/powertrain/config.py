"""Typed run configuration: the schema Hydra composes into, and the one place it is validated.

The dataclasses below are registered in Hydra's ConfigStore as ``base_<group>`` so each YAML file under
``conf/`` holds values only. ``validate`` turns the composed DictConfig into a ``RunConfig`` object and
checks every value before any data is loaded; a bad value raises ``ConfigError`` whose message is one
line naming the key, the value and what is allowed.

omegaconf is imported lazily: the rest of the package takes plain ``RunConfig`` objects.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional


class ConfigError(ValueError):
    """A configuration value that is not allowed. ``str(err)`` is a one-line message for the user."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r} is not allowed: {allowed}")


# --------------------------------------------------------------------------------------------- schema


@dataclass
class ModelConfig:
    """Which network to build. ``family`` picks the builder from the model registry."""

    family: str = "simple_cnn"
    name: str = "simple_cnn"  # for family=timm: the timm model name
    linear_layers: int = 3  # N of the seed models (including the classifier)
    conv_blocks: int = 2  # M of SimpleCNN
    relu: bool = True
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 128])  # family=mlp
    dropout: float = 0.0
    input_size: Optional[int] = None  # resize inputs to this side length (e.g. 224 for ViT); None = as is


@dataclass
class DatasetConfig:
    """Where the data comes from. Everything is held in memory as tensors on the training device."""

    name: str = "digits"
    root: Optional[str] = None  # torchvision datasets; None -> $POWERTRAIN_DATA or ./data
    download: bool = False  # never fetch unless asked: compute nodes are often offline
    # synthetic only
    num_classes: int = 10
    channels: int = 1
    image_size: int = 8
    train_size: int = 2048
    test_size: int = 512
    noise: float = 0.5
    # all datasets: use only the first N samples of each split (None = all); handy for quick runs
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None
    test_fraction: float = 0.25  # digits has no official split: a seeded stratified holdout
    classes: list[int] = field(default_factory=list)  # keep only these labels, renumbered 0..k-1 ([] = all)


@dataclass
class SchedulerConfig:
    name: str = "none"  # none | cosine | step
    step_size: int = 10  # step: epochs between decays
    gamma: float = 0.1
    warmup_epochs: int = 0


@dataclass
class OptimizerConfig:
    name: str = "adam"  # sgd | adam | adamw | rmsprop
    lr: float = 1e-3
    momentum: float = 0.0
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
    """How knowledge enters the run: from scratch, recycled (pretrained) or shared (multitask)."""

    name: str = "scratch"  # scratch | pretrained | multitask
    weights: Optional[str] = None  # pretrained: "timm" to load timm's pretrained weights
    checkpoint: Optional[str] = None  # pretrained: a state_dict file
    from_run: Optional[str] = None  # pretrained: a previous powertrain run directory
    finetune: str = "full"  # full | head | partial
    partial_blocks: int = 1  # finetune=partial: train the last k blocks
    backbone_lr_scale: float = 1.0  # lr multiplier for the backbone when fine-tuning
    amortize_over: int = 1  # downstream uses the upstream cost is shared between
    tasks: list[str] = field(default_factory=list)  # multitask: dataset presets
    mixing: str = "round_robin"  # round_robin | proportional
    task_weights: list[float] = field(default_factory=list)
    task_targets: list[float] = field(default_factory=list)
    reset_classifier: bool = False  # pretrained: fresh final layer even when its shape fits (new label set)
    download: bool = False  # weights=timm: may fetch from the model hub (needs network); else local cache only
    upstream_energy_j: Optional[float] = None  # weights/checkpoint: their known training energy, if published
    upstream_carbon_g: Optional[float] = None
    pretrain_dataset: Optional[str] = None  # experiment=pretrain_finetune: dataset preset of the upstream run


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
    batch_size: int = 64
    max_epochs: int = 40
    seed: int = 0
    target_accuracy: Optional[float] = None
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast, CUDA only)
    compile: bool = False
    eval_batch_size: int = 1024
    save_checkpoint: bool = True  # keep model weights in the run dir (for paradigm.from_run / resume)
    resume: Optional[str] = None  # a run directory to resume (its checkpoint and ledger)
    verbose: bool = True


GROUPS = {
    "model": ModelConfig,
    "dataset": DatasetConfig,
    "optimizer": OptimizerConfig,
    "hardware": HardwareConfig,
    "paradigm": ParadigmConfig,
    "tracking": TrackingConfig,
}


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (``base_config`` and ``base_<group>``)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="base_config", node=RunConfig)
    for group, node in GROUPS.items():
        cs.store(group=group, name=f"base_{group}", node=node)


# ---------------------------------------------------------------------------------------- validation

MODEL_FAMILIES = ("simple_cnn", "dense_poly", "dense_linear", "mlp", "timm")
DATASETS = ("digits", "synthetic", "mnist", "fashion_mnist", "cifar10", "cifar100")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULERS = ("none", "cosine", "step")
PARADIGMS = ("scratch", "pretrained", "multitask")
PRECISIONS = ("fp32", "bf16", "fp16")
METERS = ("auto", "estimate")
TRACKERS = ("none", "wandb")
WANDB_MODES = ("offline", "online", "disabled")


def _one_of(options: tuple[str, ...]) -> Callable[[Any], Optional[str]]:
    def check(v: Any) -> Optional[str]:
        if v in options:
            return None
        close = difflib.get_close_matches(str(v), options, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return "one of " + ", ".join(options) + hint

    return check


def _positive(v: Any) -> Optional[str]:
    return None if v is not None and v > 0 and math.isfinite(v) else "a finite number > 0"


def _non_negative(v: Any) -> Optional[str]:
    return None if v is not None and v >= 0 and math.isfinite(v) else "a finite number >= 0"


def _at_least(n: int) -> Callable[[Any], Optional[str]]:
    return lambda v: None if v is not None and v >= n else f"an integer >= {n}"


def _optional(check: Callable[[Any], Optional[str]]) -> Callable[[Any], Optional[str]]:
    def inner(v: Any) -> Optional[str]:
        if v is None:
            return None
        msg = check(v)
        return None if msg is None else f"null or {msg}"

    return inner


def _each(check: Callable[[Any], Optional[str]]) -> Callable[[Any], Optional[str]]:
    def inner(v: Any) -> Optional[str]:
        msgs = [m for m in map(check, v) if m is not None]
        return None if not msgs else f"a list of values, each {msgs[0]}"

    return inner


def _fraction_open_closed(v: Any) -> Optional[str]:
    return None if 0 < v <= 1 else "a number in (0, 1]"


def _fraction_closed(v: Any) -> Optional[str]:
    return None if 0 <= v <= 1 else "a number in [0, 1]"


def _beta(v: Any) -> Optional[str]:
    return None if 0 <= v < 1 else "a number in [0, 1)"


def _region(v: Any) -> Optional[str]:
    if v is None:
        return None
    from powertrain.carbon import region_problem  # the tables live with the carbon accounting

    return region_problem(v)


def _device(v: Any) -> Optional[str]:
    ok = v in ("auto", "cpu", "cuda") or (
        isinstance(v, str) and v.startswith("cuda:") and v[5:].isdigit()
    )
    return None if ok else "auto, cpu, cuda or cuda:N"


# Value checks by dotted key. Used both on single CLI overrides (before Hydra composes, so a sweep
# with one bad value fails before any job starts) and on the composed config.
CHECKS: dict[str, Callable[[Any], Optional[str]]] = {
    "model.family": _one_of(MODEL_FAMILIES),
    "model.linear_layers": _at_least(1),
    "model.conv_blocks": _at_least(0),
    "model.dropout": _beta,
    "model.input_size": _optional(_at_least(1)),
    "dataset.name": _one_of(DATASETS),
    "dataset.num_classes": _at_least(2),
    "dataset.channels": _at_least(1),
    "dataset.image_size": _at_least(1),
    "dataset.train_size": _at_least(1),
    "dataset.test_size": _at_least(1),
    "dataset.noise": _non_negative,
    "dataset.limit_train": _optional(_at_least(1)),
    "dataset.limit_test": _optional(_at_least(1)),
    "dataset.test_fraction": lambda v: None if 0 < v < 1 else "a number in (0, 1)",
    "optimizer.name": _one_of(OPTIMIZERS),
    "optimizer.lr": _positive,
    "optimizer.momentum": _beta,
    "optimizer.weight_decay": _non_negative,
    "optimizer.beta1": _beta,
    "optimizer.beta2": _beta,
    "optimizer.eps": _positive,
    "optimizer.alpha": _beta,
    "optimizer.scheduler.name": _one_of(SCHEDULERS),
    "optimizer.scheduler.step_size": _at_least(1),
    "optimizer.scheduler.gamma": _positive,
    "optimizer.scheduler.warmup_epochs": _at_least(0),
    "hardware.device": _device,
    "hardware.kind": _one_of(("auto", "cpu", "gpu")),
    "hardware.tdp_w": _optional(_positive),
    "hardware.embodied_kgco2e": _optional(_non_negative),
    "hardware.lifetime_years": _optional(_positive),
    "hardware.utilization": _optional(_fraction_open_closed),
    "hardware.cpu_threads": _optional(_at_least(1)),
    "hardware.gpu_power_limit_w": _optional(_positive),
    "hardware.gpu_locked_clocks_mhz": lambda v: _gpu_clocks(v),
    "paradigm.name": _one_of(PARADIGMS),
    "paradigm.finetune": _one_of(("full", "head", "partial")),
    "paradigm.partial_blocks": _at_least(1),
    "paradigm.backbone_lr_scale": _non_negative,
    "paradigm.amortize_over": _at_least(1),
    "paradigm.mixing": _one_of(("round_robin", "proportional")),
    "paradigm.task_weights": _each(_non_negative),
    "paradigm.task_targets": _each(_fraction_open_closed),
    "paradigm.upstream_energy_j": _optional(_non_negative),
    "paradigm.upstream_carbon_g": _optional(_non_negative),
    "dataset.classes": lambda v: None if all(isinstance(c, int) and c >= 0 for c in v) and len(set(v)) == len(v)
    else "a list of distinct class indices >= 0",
    "energy.meter": _one_of(METERS),
    "energy.idle_baseline_s": _non_negative,
    "energy.sample_hz": lambda v: None if 1 <= v <= 1000 else "a number in [1, 1000]",
    "energy.cpu_idle_share": _fraction_closed,
    "energy.dram_w_per_gb": _non_negative,
    "energy.gpu_idle_share": _fraction_closed,
    "carbon.region": lambda v: _region(v),
    "carbon.intensity_g_per_kwh": _optional(_non_negative),
    "carbon.pue": lambda v: None if v >= 1 and math.isfinite(v) else "a number >= 1.0",
    "tracking.name": _one_of(TRACKERS),
    "tracking.mode": _one_of(WANDB_MODES),
    "tracking.init_timeout_s": _positive,
    "budget.energy_j": _optional(_positive),
    "budget.time_s": _optional(_positive),
    "batch_size": _at_least(1),
    "eval_batch_size": _at_least(1),
    "max_epochs": _at_least(1),
    "target_accuracy": _optional(_fraction_open_closed),
    "precision": _one_of(PRECISIONS),
}


def _gpu_clocks(v: Any) -> Optional[str]:
    from powertrain.energy.gpu_knobs import check_clocks

    return check_clocks(v)


def check_value(key: str, value: Any) -> None:
    """Raise ConfigError if ``value`` is not allowed for ``key`` (keys without a check pass)."""
    check = CHECKS.get(key)
    if check is None:
        return
    try:
        msg = check(value)
    except TypeError:
        msg = "a value of the right type"
    if msg is not None:
        raise ConfigError(key, value, msg)


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def validate(cfg: Any) -> RunConfig:
    """Convert a composed DictConfig (or a RunConfig) into a checked ``RunConfig``.

    Raises:
        ConfigError: on the first value that is not allowed.
    """
    if not isinstance(cfg, RunConfig):
        from omegaconf import OmegaConf

        cfg = OmegaConf.to_object(cfg)
        if not isinstance(cfg, RunConfig):  # composed without the schema (e.g. a bare dict)
            raise ConfigError("config", type(cfg).__name__, "a config composed on base_config")
    for key in CHECKS:
        check_value(key, _get(cfg, key))
    _check_combinations(cfg)
    return cfg


def check_precision(precision: str, device_type: str) -> None:
    """bf16/fp16 autocast needs CUDA: refuse it rather than silently train in fp32."""
    if precision != "fp32" and device_type != "cuda":
        raise ConfigError("precision", precision, "fp32 on CPU (bf16/fp16 autocast needs CUDA)")


def _check_combinations(cfg: RunConfig) -> None:
    if cfg.hardware.device == "cpu":  # hardware.device=auto is checked once run() knows the device
        check_precision(cfg.precision, "cpu")
        from powertrain.energy.gpu_knobs import check_gpu_run  # GPU knobs need a GPU run

        check_gpu_run(cfg.hardware, "cpu")
    if cfg.optimizer.nesterov and (cfg.optimizer.name != "sgd" or cfg.optimizer.momentum <= 0):
        raise ConfigError("optimizer.nesterov", True, "only with optimizer=sgd and momentum > 0")
    if cfg.dataset.name not in ("digits", "synthetic"):
        root = data_root(cfg.dataset)
        if not cfg.dataset.download and not os.path.isdir(root):
            raise ConfigError(
                "dataset.root",
                root,
                "an existing directory holding the dataset files (set dataset.root or "
                "$POWERTRAIN_DATA, or dataset.download=true on a machine with network)",
            )
    if cfg.model.family == "timm":
        from powertrain.models import check_timm_name

        check_timm_name(cfg.model.name)


def data_root(ds: DatasetConfig) -> str:
    """The dataset directory: ``dataset.root``, else ``$POWERTRAIN_DATA``, else ``./data``."""
    return os.path.abspath(ds.root or os.environ.get("POWERTRAIN_DATA") or "data")
