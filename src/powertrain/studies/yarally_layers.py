"""Layer types (Yarally et al. 2023, Table II): what conv blocks, linear layers and ReLU cost in energy.

SimpleCNN is varied one factor at a time from the preset's model (conv blocks in ``study.conv_blocks``,
linear layers in ``study.linear_layers``, ReLU on and off), each variant one run of the same fixed
``max_epochs``, as in the paper. The answer: energy and accuracy of every variant, the % change from the
default, and the paper's three headline changes (conv 1→4, linear 3→7, ReLU) beside ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from powertrain.config import RunConfig, StudyConfig
from powertrain.config.checks import Check, at_least, each
from powertrain.config.errors import ConfigError
from powertrain.results import SUCCESS
from powertrain.studies._common import finish, fmt_pct

if TYPE_CHECKING:
    from powertrain.report import Section
    from powertrain.studies import StudyContext

NAME = "yarally_layers"

# Yarally et al. 2023, Table II: energy change of the whole training (FashionMNIST / CIFAR-10)
PAPER = {"conv 1→4": "+95 % / +66 %", "linear 3→7": "+5 % / +7 %", "ReLU on vs off": "+3 %"}


@dataclass
class Config(StudyConfig):
    conv_blocks: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    linear_layers: list[int] = field(default_factory=lambda: [3, 4, 5, 6, 7])


CHECKS: dict[str, Check] = {"study.conv_blocks": each(at_least(1)), "study.linear_layers": each(at_least(1))}


def check(cfg: RunConfig) -> None:
    """The study varies SimpleCNN's layers: it needs model=simple_cnn."""
    if cfg.model.family != "simple_cnn":
        raise ConfigError("model", cfg.model.family, "simple_cnn (the study varies its conv blocks, linear "
                          "layers and ReLU)")


def variants(cfg: RunConfig) -> list[tuple[str, list[str], dict[str, Any]]]:
    """(part name, overrides, model values) of the default and of each one-factor change from it."""
    m, s = cfg.model, cfg.study
    base = {"conv_blocks": m.conv_blocks, "linear_layers": m.linear_layers, "relu": m.relu}
    out = [("default", [], dict(base))]
    for c in s.conv_blocks:
        if c != m.conv_blocks:
            out.append((f"conv_{c}", [f"model.conv_blocks={c}"], {**base, "conv_blocks": c}))
    for n in s.linear_layers:
        if n != m.linear_layers:
            out.append((f"linear_{n}", [f"model.linear_layers={n}"], {**base, "linear_layers": n}))
    relu = not m.relu
    out.append((f"relu_{'on' if relu else 'off'}", [f"model.relu={str(relu).lower()}"], {**base, "relu": relu}))
    return out


def _change(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """Relative change from ``a`` to ``b`` (None when either is unknown)."""
    return None if a is None or b is None or a <= 0 else b / a - 1


def headline_changes(rows: list[dict[str, Any]], cfg_model: dict[str, Any], s: Any) -> dict[str, Optional[float]]:
    """Our versions of the paper's three changes, from the variants' energies."""
    def energy(**want: Any) -> Optional[float]:
        for r in rows:
            if all(r[k] == v for k, v in {**cfg_model, **want}.items()):
                return r["energy_j"]
        return None

    return {"conv 1→4": _change(energy(conv_blocks=min(s.conv_blocks)), energy(conv_blocks=max(s.conv_blocks))),
            "linear 3→7": _change(energy(linear_layers=min(s.linear_layers)),
                                  energy(linear_layers=max(s.linear_layers))),
            "ReLU on vs off": _change(energy(relu=False), energy(relu=True))}


def run(ctx: StudyContext) -> dict[str, Any]:
    """One run per variant, then the % changes (see the module doc)."""
    cfg = ctx.cfg
    rows = []
    for name, overrides, model in variants(cfg):
        r = ctx.single(name, overrides)
        rows.append({"variant": name, **model, "status": r["status"], "energy_j": r["energy"]["total_j"],
                     "train_s": (r.get("time") or {}).get("train_s"), "accuracy": r["metrics"]["final_accuracy"],
                     "layers_j": ((r["energy"].get("layer_attribution") or {}).get("energy_j"))})
    base = rows[0]["energy_j"]
    for r in rows:
        r["energy_change"] = _change(base, r["energy_j"])
    m = cfg.model
    changes = headline_changes(rows, {"conv_blocks": m.conv_blocks, "linear_layers": m.linear_layers,
                                      "relu": m.relu}, cfg.study)
    ok = all(r["status"] in SUCCESS for r in rows)
    summary = {"status": "completed" if ok else "failed", "variants": rows, "changes": changes, "paper": PAPER}
    lines = [f"yarally_layers: SimpleCNN on {cfg.dataset.name}, {cfg.max_epochs} epochs per variant "
             f"(default: {m.conv_blocks} conv blocks, {m.linear_layers} linear layers, ReLU {'on' if m.relu else 'off'})"]
    for r in rows:
        ch = "" if r["energy_change"] is None else f" ({r['energy_change'] * 100:+.0f} % vs default)"
        e = "n/a" if r["energy_j"] is None else f"{r['energy_j']:.1f} J"
        lines.append(f"  {r['variant']:<10} {e}{ch}, accuracy {fmt_pct(r['accuracy'])}")
    for k, v in changes.items():
        lines.append(f"  {k}: {'n/a' if v is None else f'{v * 100:+.0f} %'} here; paper {PAPER[k]}")
    return finish(summary, lines, cfg.verbose)


def analyze(df: Any, study: dict[str, Any]) -> list[Section]:
    """Energy and accuracy per variant and the headline changes beside the paper's."""
    from powertrain.report import Section, Table

    summary = study.get("summary") or {}
    rows = summary.get("variants")
    if not rows:  # half-finished: what the runs so far say
        rows = [{"variant": r["part"], "energy_j": r["total_j"], "accuracy": r["final_accuracy"],
                 "energy_change": None, "conv_blocks": r.get("model.conv_blocks"),
                 "linear_layers": r.get("model.linear_layers"), "relu": r.get("model.relu"), "status": r["status"]}
                for _, r in df.iterrows()]
    per = Table(["variant", "conv blocks", "linear layers", "ReLU", "energy (J)", "change vs default",
                 "final accuracy", "status"],
                [[r["variant"], r.get("conv_blocks"), r.get("linear_layers"), r.get("relu"), r["energy_j"],
                  None if r.get("energy_change") is None else f"{r['energy_change'] * 100:+.1f} %",
                  r["accuracy"], r["status"]] for r in rows],
                "One factor at a time from the default; every variant trains the same number of epochs.")
    changes = summary.get("changes") or {}
    heads = Table(["change", "here", "Yarally et al. 2023 (FashionMNIST / CIFAR-10)"],
                  [[k, "n/a" if changes.get(k) is None else f"{changes[k] * 100:+.0f} %", v]
                   for k, v in PAPER.items()], "Energy change of the whole training.")
    text = "\n".join(summary.get("report", [])[:1]) or "The study has not finished."
    out = [Section("Layer types (Yarally et al. 2023, Table II)", text, [heads, per])]
    layers = _layer_energy(df)
    order = [r["variant"] for r in rows]  # the study's order: default first, then one factor at a time
    layers.sort(key=lambda v: order.index(v[0]) if v[0] in order else len(order))
    if layers:
        out.append(_layer_section(layers))
    return out


def _layer_energy(df: Any) -> list[tuple[str, dict[str, float]]]:
    """(variant, train joules per layer type) of every run with a layer attribution, in run order."""
    out = []
    for _, r in df.iterrows():
        res = r.get("result")
        att = ((res or {}).get("energy") or {}).get("layer_attribution") if isinstance(res, dict) else None
        if att and att.get("energy_j"):
            out.append((str(r["part"]), att["energy_j"]))
    return out


def _layer_section(layers: list[tuple[str, dict[str, float]]]) -> Section:
    """Why a variant costs what it does: its train energy split by layer type, as a table and a figure."""
    from powertrain.energy.layers import ASSUMPTION, TYPES
    from powertrain.report import Section, Table
    from powertrain.report.figures import _plt

    table = Table(["variant", *(f"{t} (J)" for t in TYPES), *(f"{t} (%)" for t in TYPES[:2])],
                  [[v, *(e.get(t, 0.0) for t in TYPES),
                    *(100 * e.get(t, 0.0) / (sum(e.values()) or 1) for t in TYPES[:2])] for v, e in layers],
                  "Train energy per layer type, attributed by profiled operator time.")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(layers) + 2.5), 4.6))
    bottom = [0.0] * len(layers)
    colours = plt.get_cmap("Set2")
    for i, t in enumerate(TYPES):
        vals = [e.get(t, 0.0) for _, e in layers]
        ax.bar(range(len(layers)), vals, bottom=bottom, color=colours(i), edgecolor="#444444", lw=0.4,
               hatch="///", label=t)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(layers)), [v for v, _ in layers], rotation=30, ha="right")
    ax.set_ylabel("train energy (J), attributed")
    ax.set_title("Where the training energy went, by layer type\n(hatched: attributed by profiled time, not measured)")
    ax.legend(fontsize=8, title="layer type", title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    text = ("Each variant's train energy split by the share of operator time each layer type took over a few "
            f"profiled steps after training: {ASSUMPTION}.")
    return Section("Energy by layer type (attribution)", text, [table], [("layer_energy", fig)])
