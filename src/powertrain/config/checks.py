"""Value checks by dotted key: small predicates that return None (fine) or what is allowed.

A leaf module (imports only ``powertrain.config.errors``), so data, models and carbon may use it. The checks of
names (which model families, datasets, paradigms ... exist) come from the registries and are added by
``powertrain.compose.validate``, which sits above all of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Optional

from powertrain.config.errors import ConfigError, one_of_message

Check = Callable[[Any], Optional[str]]
MAX_EPOCHS = 100_000  # a sane bound: 100k epochs of the 1,797 digits is days of CPU; more is a typo


def one_of(options: Iterable[str]) -> Check:
    """Allowed: one of ``options`` (a did-you-mean hint names the closest)."""
    opts = tuple(options)
    return lambda v: None if v in opts else one_of_message(v, opts)


def positive(v: Any) -> Optional[str]:
    return None if v is not None and v > 0 and math.isfinite(v) else "a finite number > 0"


def non_negative(v: Any) -> Optional[str]:
    return None if v is not None and v >= 0 and math.isfinite(v) else "a finite number >= 0"


def at_least(n: int) -> Check:
    return lambda v: None if v is not None and v >= n else f"an integer >= {n}"


def optional(check: Check) -> Check:
    def inner(v: Any) -> Optional[str]:
        if v is None:
            return None
        msg = check(v)
        return None if msg is None else f"null or {msg}"

    return inner


def each(check: Check) -> Check:
    def inner(v: Any) -> Optional[str]:
        msgs = [m for m in map(check, v) if m is not None]
        return None if not msgs else f"a list of values, each {msgs[0]}"

    return inner


def fraction_open_closed(v: Any) -> Optional[str]:
    return None if 0 < v <= 1 else "a number in (0, 1]"


def fraction_closed(v: Any) -> Optional[str]:
    return None if 0 <= v <= 1 else "a number in [0, 1]"


def beta(v: Any) -> Optional[str]:
    return None if 0 <= v < 1 else "a number in [0, 1)"


def _device(v: Any) -> Optional[str]:
    ok = v in ("auto", "cpu", "cuda") or (isinstance(v, str) and v.startswith("cuda:") and v[5:].isdigit())
    return None if ok else "auto, cpu, cuda or cuda:N"


def _classes(v: Any) -> Optional[str]:
    ok = all(isinstance(c, int) and c >= 0 for c in v) and len(set(v)) == len(v)
    return None if ok else "a list of distinct class indices >= 0"


# Range checks of the fields every run has. Used on single CLI overrides (before Hydra composes, so a
# sweep with one bad value fails before any job starts) and on the composed config.
FIELD_CHECKS: dict[str, Check] = {
    "model.linear_layers": at_least(1),
    "model.conv_blocks": at_least(0),
    "model.dropout": beta,
    "model.input_size": optional(at_least(1)),
    "model.hidden_sizes": each(at_least(1)),  # a 0-wide layer trains to chance and says completed
    "dataset.num_classes": at_least(2),
    "dataset.channels": at_least(1),
    "dataset.image_size": at_least(1),
    "dataset.train_size": at_least(1),
    "dataset.test_size": at_least(1),
    "dataset.noise": non_negative,
    "dataset.clutter": non_negative,
    "dataset.max_shift_px": at_least(0),
    "dataset.label_noise": beta,
    "dataset.limit_train": optional(at_least(1)),
    "dataset.limit_test": optional(at_least(1)),
    "dataset.test_fraction": lambda v: None if 0 < v < 1 else "a number in (0, 1)",
    "dataset.classes": _classes,
    "optimizer.lr": positive,
    "optimizer.momentum": beta,
    "optimizer.weight_decay": non_negative,
    "optimizer.beta1": beta,
    "optimizer.beta2": beta,
    "optimizer.eps": positive,
    "optimizer.alpha": beta,
    "optimizer.scheduler.step_size": at_least(1),
    "optimizer.scheduler.gamma": positive,
    "optimizer.scheduler.warmup_epochs": at_least(0),
    "hardware.device": _device,
    "hardware.kind": one_of(("auto", "cpu", "gpu")),
    "hardware.tdp_w": optional(positive),
    "hardware.embodied_kgco2e": optional(non_negative),
    "hardware.lifetime_years": optional(positive),
    "hardware.utilization": optional(fraction_open_closed),
    "hardware.cpu_threads": optional(at_least(1)),
    "hardware.gpu_power_limit_w": optional(positive),
    "hardware.gpu_locked_clocks_mhz": lambda v: check_clocks(v),
    "energy.idle_baseline_s": non_negative,
    "energy.sample_hz": lambda v: None if 1 <= v <= 1000 else "a number in [1, 1000]",
    "energy.cpu_idle_share": fraction_closed,
    "energy.dram_w_per_gb": non_negative,
    "energy.cpu_share": optional(fraction_open_closed),
    "energy.threads_total": optional(at_least(1)),
    "energy.layer_profile_steps": at_least(0),
    "energy.gpu_idle_share": fraction_closed,
    "carbon.intensity_g_per_kwh": optional(non_negative),
    "carbon.pue": lambda v: None if v >= 1 and math.isfinite(v) else "a number >= 1.0",
    "tracking.mode": one_of(("offline", "online", "disabled")),
    "tracking.init_timeout_s": positive,
    "budget.energy_j": optional(positive),
    "budget.time_s": optional(positive),
    "distributed.nproc_per_node": at_least(1),
    "distributed.backend": one_of(("auto", "gloo", "nccl")),
    "distributed.timeout_s": positive,
    "checkpoint.every_s": positive,
    "checkpoint.min_interval_s": non_negative,
    "batch_size": at_least(1),
    "eval_batch_size": at_least(1),
    "max_epochs": lambda v: at_least(1)(v) or (None if v <= MAX_EPOCHS else f"an integer in [1, {MAX_EPOCHS}] "
                                               "(more is taken for a typo; budget.time_s bounds a long run)"),
    "seed": lambda v: None if v is not None and 0 <= v < 2**32 else "an integer in [0, 2**32) (numpy's seed range)",
    "target_accuracy": optional(fraction_open_closed),
    "precision": one_of(("fp32", "bf16", "fp16")),
    "study.scale": one_of(("smoke", "paper")),
    "study.repeats": optional(at_least(1)),
    "repeats": at_least(1),
    "repeat": at_least(0),
    "study.seeds": lambda v: None if v and all(isinstance(s, int) and 0 <= s < 2**32 for s in v)
    else "a non-empty list of seeds in [0, 2**32)",
}


def run_check(key: str, value: Any, check: Optional[Check]) -> None:
    """Raise ConfigError if ``check`` refuses ``value`` (no check: anything goes)."""
    if check is None:
        return
    try:
        msg = check(value)
    except TypeError:
        msg = "a value of the right type"
    if msg is not None:
        raise ConfigError(key, value, msg)


def check_value(key: str, value: Any) -> None:
    """Raise ConfigError if ``value`` is not allowed for ``key`` by the range checks above."""
    run_check(key, value, FIELD_CHECKS.get(key))


def parse_clocks(value: Any) -> Optional[tuple[int, int]]:
    """``hardware.gpu_locked_clocks_mhz`` as (min, max) MHz: one value locks both ends.

    Raises:
        ValueError: with what is allowed, for anything else.
    """
    if value is None:
        return None
    # a list from the CLI arrives as omegaconf's ListConfig, a Sequence
    values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    ok = 1 <= len(values) <= 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
    )
    if not ok or values[0] > values[-1]:
        raise ValueError("null, one clock in MHz, or a [min, max] pair of clocks in MHz with min <= max")
    return values[0], values[-1]


def check_clocks(value: Any) -> Optional[str]:
    """The config check for ``hardware.gpu_locked_clocks_mhz`` (None = allowed)."""
    try:
        parse_clocks(value)
    except ValueError as err:
        return str(err)
    return None


def check_precision(precision: str, device_type: str) -> None:
    """bf16/fp16 autocast needs CUDA: refuse it rather than silently train in fp32."""
    if precision != "fp32" and device_type != "cuda":
        raise ConfigError("precision", precision, "fp32 on CPU (bf16/fp16 autocast needs CUDA)")
