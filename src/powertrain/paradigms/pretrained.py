"""The ``pretrained`` paradigm (knowledge recycling): start from trained weights, fine-tune, and account
for what producing those weights cost.

Exactly one weight source: ``paradigm.weights=timm`` (timm's published weights, from the local cache
unless ``paradigm.download=true``), ``paradigm.checkpoint=PATH`` (a state_dict file) or
``paradigm.from_run=RUN_DIR`` (a previous powertrain run: its ``checkpoint.pt`` and, from its
result.json, the energy and carbon of producing it). ``Setup.upstream`` carries that cost, divided by
``paradigm.amortize_over`` (the number of downstream runs that share it); run.py reports it as
``energy.upstream_j`` / ``energy.total_with_upstream_j`` and ``carbon.upstream_g``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from powertrain.config import ConfigError, ParadigmConfig, RunConfig
from powertrain.config.checks import Check, at_least, non_negative, one_of, optional, run_check
from powertrain.models import parts
from powertrain.paradigms import Setup, single_task
from powertrain.paradigms._timm_weights import load_timm_pretrained
from powertrain.results import CHECKPOINT_FILE, USABLE, read_result

NAME = "pretrained"


@dataclass
class Config(ParadigmConfig):
    """Where the weights come from (exactly one source), how much of the model is trained, who pays."""

    name: str = NAME
    weights: Optional[str] = None  # "timm" to load timm's pretrained weights
    checkpoint: Optional[str] = None  # a state_dict file
    from_run: Optional[str] = None  # a previous powertrain run directory
    finetune: str = "full"  # full | head | partial
    partial_blocks: int = 1  # finetune=partial: train the last k blocks
    backbone_lr_scale: float = 1.0  # lr multiplier for the backbone when fine-tuning
    amortize_over: int = 1  # downstream uses the upstream cost is shared between
    reset_classifier: bool = False  # fresh final layer even when its shape fits (new label set)
    download: bool = False  # weights=timm: may fetch from the model hub (needs network); else local cache only
    upstream_energy_j: Optional[float] = None  # weights/checkpoint: their known training energy, if published
    upstream_carbon_g: Optional[float] = None


CHECKS: dict[str, Check] = {
    "paradigm.finetune": one_of(("full", "head", "partial")),
    "paradigm.partial_blocks": at_least(1),
    "paradigm.backbone_lr_scale": non_negative,
    "paradigm.amortize_over": at_least(1),
    "paradigm.upstream_energy_j": optional(non_negative),
    "paradigm.upstream_carbon_g": optional(non_negative),
}


def check(cfg: RunConfig) -> None:
    """Exactly one weight source; a run's own recorded cost is not overridden by hand."""
    p = cfg.paradigm
    for key, fn in CHECKS.items():
        run_check(key, getattr(p, key.split(".", 1)[1]), fn)
    sources = {k: v for k, v in (("weights", p.weights), ("checkpoint", p.checkpoint),
                                 ("from_run", p.from_run)) if v}
    if len(sources) != 1:
        raise ConfigError("paradigm", ", ".join(f"{k}={v}" for k, v in sources.items()) or "no weight source",
                          "exactly one of paradigm.weights=timm, paradigm.checkpoint=PATH, paradigm.from_run=RUN_DIR")
    if p.from_run and (p.upstream_energy_j is not None or p.upstream_carbon_g is not None):
        raise ConfigError("paradigm.upstream_energy_j", p.upstream_energy_j,
                          "null with paradigm.from_run (the upstream run's result.json supplies its cost)")



def build(cfg: RunConfig, device: torch.device, autocast: Callable[[], Any]) -> Setup:
    """Build the model, load the pretrained weights, freeze what ``paradigm.finetune`` keeps fixed."""
    check(cfg)  # also for in-process callers that skipped validate()
    p = cfg.paradigm

    model, task, info = single_task(cfg, device, autocast)
    notes: list[str] = []
    if p.weights:
        load_timm_pretrained(cfg, model, task.data.input_shape, task.data.num_classes, notes)
        source = f"timm:{cfg.model.name}"
        energy_j, carbon_g, chain = p.upstream_energy_j, p.upstream_carbon_g, []
    elif p.checkpoint:
        state = read_state_dict(p.checkpoint, "paradigm.checkpoint")
        notes += load_matching(model, state, "paradigm.checkpoint", p.checkpoint, p.reset_classifier)
        source = f"checkpoint:{Path(p.checkpoint).resolve()}"
        energy_j, carbon_g, chain = p.upstream_energy_j, p.upstream_carbon_g, []
    else:
        run_dir = Path(p.from_run).resolve()
        upstream_result = read_upstream_run(run_dir)
        state = read_state_dict(run_dir / CHECKPOINT_FILE, "paradigm.from_run")
        notes += load_matching(model, state, "paradigm.from_run", str(run_dir), p.reset_classifier)
        source = f"run:{run_dir}"
        energy_j, carbon_g, chain = upstream_cost(upstream_result)
    if energy_j is None:
        notes.append(f"upstream energy of {source} unknown: energy.total_with_upstream_j is null "
                     "(set paradigm.upstream_energy_j if its training energy is published)")

    groups, freeze_note = finetune_groups(model, p.finetune, p.partial_blocks, p.backbone_lr_scale, cfg.optimizer.lr)
    notes.append(freeze_note)
    n = p.amortize_over
    upstream = {
        "source": source,
        "energy_j": energy_j,
        "carbon_g": carbon_g,
        "amortize_over": n,
        "energy_j_amortized": None if energy_j is None else energy_j / n,
        "carbon_g_amortized": None if carbon_g is None else carbon_g / n,
        "chain": chain,  # every upstream run behind this one, nearest first
    }
    return Setup(model, task, groups, info, upstream, notes)


# ------------------------------------------------------------------------------------------- upstream


def read_upstream_run(run_dir: Path) -> dict[str, Any]:
    """The result.json of a finished powertrain run that saved its weights; ConfigError otherwise."""
    key = "paradigm.from_run"
    if not (run_dir / CHECKPOINT_FILE).is_file():
        raise ConfigError(key, str(run_dir), "a powertrain run directory holding checkpoint.pt "
                          "(the upstream run needs save_checkpoint=true)")
    try:
        result = read_result(run_dir)
    except (OSError, ValueError) as e:
        raise ConfigError(key, str(run_dir), f"a run directory with a readable result.json ({type(e).__name__})") from e
    if result.get("status") not in USABLE:  # a failed or preempted run is not finished
        raise ConfigError(key, str(run_dir), f"a run that finished ({', '.join(USABLE)}); this one is "
                          f"{result.get('status')!r}" + (" (resume it first)" if result.get("status") == "preempted" else ""))
    if (result.get("energy") or {}).get("total_j") is None:
        raise ConfigError(key, str(run_dir), "a run whose result.json records energy.total_j")
    return result


def upstream_cost(result: dict[str, Any]) -> tuple[float, Optional[float], list[dict[str, Any]]]:
    """Energy (J) and carbon (g) of producing an upstream run's weights, and the chain behind it.

    The run's own energy plus the share of *its* upstream it was charged (``energy.upstream_j``), so a chain
    A → B → C carries A's cost into C (all of it with the default amortize_over=1).
    """
    energy = result["energy"]
    energy_j = energy["total_j"] + (energy.get("upstream_j") or 0.0)
    carbon = result.get("carbon") or {}
    carbon_g = carbon.get("total_g")
    prior = result.get("upstream") or {}
    if carbon_g is not None and prior.get("energy_j") is not None:
        # its upstream's carbon must be known too: a partial sum would understate the chain
        carbon_g = None if carbon.get("upstream_g") is None else carbon_g + carbon["upstream_g"]
    link = {"source": f"run:{result.get('run', {}).get('dir')}", "energy_j": energy["total_j"],
            "carbon_g": carbon.get("total_g"), "status": result.get("status")}
    return energy_j, carbon_g, [link] + list(prior.get("chain") or [])


# -------------------------------------------------------------------------------------------- weights


def read_state_dict(path: str | Path, key: str) -> dict[str, torch.Tensor]:
    """A state_dict from ``path`` (a bare state_dict, or a dict holding it under "model"/"state_dict")."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(key, str(path), "an existing state_dict file (torch.save(model.state_dict(), PATH))")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, not a torch file at all
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        raise ConfigError(key, str(path), f"a readable state_dict saved with torch.save ({type(e).__name__}: {first})") from e
    if isinstance(obj, dict):
        for wrapper in ("model", "state_dict"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(key, str(path), "a state_dict (a dict of parameter name → tensor)")
    return {_strip(k): v for k, v in obj.items()}


def _strip(name: str) -> str:
    # keys as saved by a compiled or DataParallel model
    for prefix in ("_orig_mod.", "module."):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name


def load_matching(model: nn.Module, state: dict[str, torch.Tensor], key: str, where: str,
                  reset_classifier: bool = False) -> list[str]:
    """Load ``state`` into ``model``; head layers that do not fit keep their fresh weights.

    Every backbone tensor must be present with the same shape (else ConfigError: a different architecture
    or input shape). Returns notes for the result (replaced layers, ignored tensors).
    """
    core = parts.unwrap(model)
    own = core.state_dict()
    if not any(k in own for k in state) and all(k.startswith("1.") for k in state):
        state = {k[2:]: v for k, v in state.items()}  # saved with the Resize wrapper of create_model
    head = parts.head_name(core)
    classifier = parts.classifier_name(core)
    merged, replaced, bad = dict(own), [], []
    for mod_name, module in core.named_modules():
        names = [f"{mod_name}.{t}" if mod_name else t
                 for t, _ in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))]
        if not names:
            continue
        fits = all(n in state and state[n].shape == own[n].shape for n in names)
        if reset_classifier and mod_name == classifier:
            replaced.append(f"{mod_name} (paradigm.reset_classifier=true)")
        elif fits:
            merged.update({n: state[n] for n in names})
        elif mod_name == head or mod_name.startswith(head + "."):
            replaced.append(_shape_change(mod_name, names[0], state, own))
        else:
            bad.append(_shape_change(mod_name, names[0], state, own))
    if bad:
        raise ConfigError(key, where, f"weights for this model (model.family and input shape as upstream): "
                          f"{len(bad)} backbone layer(s) do not fit, e.g. {bad[0]}")
    core.load_state_dict(merged)
    notes = [f"loaded pretrained weights from {where}"]
    if replaced:
        notes.append("head replaced, freshly initialised: " + "; ".join(replaced))
    unused = sorted(set(state) - set(own))
    if unused:
        notes.append(f"{len(unused)} tensor(s) in the weights not used by this model, e.g. {unused[0]}")
    return notes


def _shape_change(module: str, tensor: str, state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> str:
    if tensor not in state:
        return f"{module} (missing from the weights)"
    return f"{module} ({tensor} {list(state[tensor].shape)} → {list(own[tensor].shape)})"


# --------------------------------------------------------------------------------------- timm weights


def finetune_groups(model: nn.Module, mode: str, partial_blocks: int, backbone_lr_scale: float,
                    lr: float) -> tuple[list[dict[str, Any]], str]:
    """Freeze what ``mode`` keeps fixed and return the optimizer's param groups and a note.

    Frozen parameters get ``requires_grad=False`` and are left out of the optimizer; BatchNorm layers
    that are entirely frozen stay in eval mode. ``backbone_lr_scale`` != 1 puts the trainable backbone
    parameters in their own group with lr × scale (0 freezes them: no gradient computed at all).
    """
    core = parts.unwrap(model)
    head = parts.param_names(core, [parts.head_name(core)])
    named = dict(core.named_parameters())
    if mode == "full":
        trainable = set(named)
    elif mode == "head":
        trainable = set(head)
    else:
        blocks = parts.block_names(core)
        last = [m for b in blocks[-partial_blocks:] for m in b] if partial_blocks else []
        trainable = head | parts.param_names(core, last)
    if backbone_lr_scale == 0:
        trainable = trainable & head
    for n, prm in named.items():
        prm.requires_grad_(n in trainable)
    pinned = parts.pin_frozen_norms(core)

    head_params = [prm for n, prm in named.items() if n in trainable and n in head]
    body_params = [prm for n, prm in named.items() if n in trainable and n not in head]
    if backbone_lr_scale == 1 or not body_params:
        groups = [{"params": head_params + body_params}]
    else:
        groups = [{"params": head_params}, {"params": body_params, "lr": lr * backbone_lr_scale}]
    n_train = sum(prm.numel() for n, prm in named.items() if n in trainable)
    n_all = sum(prm.numel() for prm in named.values())
    what = {"full": "all layers", "head": "head only",
            "partial": f"head + last {partial_blocks} block(s)"}[mode]
    note = f"fine-tuning {what}: {n_train:,} of {n_all:,} parameters trainable"
    if pinned:
        note += f"; {pinned} frozen BatchNorm layer(s) keep their statistics"
    if backbone_lr_scale not in (0, 1) and body_params:
        note += f"; backbone lr × {backbone_lr_scale:g}"
    return groups, note
