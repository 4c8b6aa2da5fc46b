"""``write_report(root)``: report.html (one self-contained file), report.md, figures/*.png|svg and
emissions.csv at the root of a sweep or study directory, plus a W&B copy when the runs tracked to W&B."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

from powertrain.report import analysis, codecarbon
from powertrain.report.load import FROM_HISTORY, factor_name
from powertrain.report.sections import Section, Table
from powertrain.results import RESULT_FILE, STUDY_FILE

CSS = """body{font-family:sans-serif;max-width:1150px;margin:2em auto;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:.6em 0 1.4em;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;
text-align:right}th{background:#f1f1f1}td:first-child,th:first-child{text-align:left}caption{caption-side:top;
text-align:left;font-style:italic;padding:3px 0}img{max-width:100%;border:1px solid #eee}
.warn{background:#fff3cd;border:1px solid #e0c36b;padding:.6em}figure{margin:1em 0}"""


# what each generic figure shows, as its caption (a study's figures are captioned by their own titles)
CAPTIONS = {
    "accuracy_vs_energy": "Final accuracy against total energy (train + eval) for every run; the black line is "
                          "the Pareto front (no run is both more accurate and cheaper).",
    "convergence": "Accuracy after each epoch against the energy spent so far: one line per run, or, where "
                   "settings ran more than once, one median line per setting with the spread of its repeats; "
                   "the dashed line is the target accuracy.",
    "energy_to_target_heatmap": "Energy to reach the target accuracy over the two factors with the most levels "
                                "(median over seeds and the other factors); hatched cells never reached it.",
    "search_progress": "Best accuracy so far against the round and against the energy the search has spent.",
    "energy_components": "Energy of each run by component, measured parts solid and estimated parts hatched; "
                         "the total is written above each bar.",
}


def caption(name: str, fig: Any) -> str:
    """A figure's caption: what it shows (generic figures), else its title, else its name in words."""
    if name in CAPTIONS:
        return CAPTIONS[name]
    title = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) is not None else ""
    title = title or next((ax.get_title() for ax in fig.axes if ax.get_title()), "")
    return " ".join(title.split()) or name.replace("_", " ").capitalize()


def default_title(root: Path) -> str:
    """``powertrain report: <study preset or sweep> of <date> <time>`` from the directory (Hydra names it
    ``<date>/<time>``), instead of the bare time."""
    root = Path(root).resolve()
    what = "run" if (root / RESULT_FILE).is_file() else "sweep"
    study = root / STUDY_FILE
    if study.is_file():
        try:
            what = f"study {json.loads(study.read_text()).get('driver') or root.name}"
        except (OSError, ValueError, AttributeError):
            what = "study"
    name, parent = root.name, root.parent.name
    dated = len(parent) == 10 and parent[4] == "-" and len(name) == 8 and name.count("-") == 2
    when = f"{parent} {name.replace('-', ':')}" if dated else name
    return f"powertrain report: {what}, {when}"


def fmt(v: Any) -> str:
    """A table cell as text: 4 significant digits for floats, '-' for missing values."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (tuple, list)):
        return " ".join(map(str, v))
    return str(v)


def generic_sections(df: Any) -> list[Section]:
    """The sections every report has: overview, figures, the tables and provenance."""
    from powertrain.report import figures

    counts = df["status"].value_counts()
    overview = (f"{len(df)} runs ({', '.join(f'{n} {s}' for s, n in counts.items())}). "
                f"Swept factors: {', '.join(map(factor_name, analysis.factors(df))) or 'none'}"
                + (f"; {df['seed'].nunique()} seeds per cell." if df["seed"].nunique() > 1 else "."))
    lines, commands = analysis.provenance(df)
    if lines[0].startswith("Every"):  # said up front, not only in the provenance at the end
        overview += "\n" + lines[0]
    out = [Section("Overview", overview, [analysis.campaign_table(df)])]
    if df["energy_to_target_j"].notna().any() or df["target_accuracy"].notna().any():
        out.append(Section("Worst against best", "Among the cells that reached the target accuracy, the most "
                           "expensive costs this many times the energy of the cheapest for the same accuracy.",
                           [analysis.worst_best_table(df)]))
    effects = analysis.factor_effects(df)
    if effects is not None:
        out.append(Section("Per-factor effects", "", [effects]))
    noise = analysis.noise_section(df)  # repeats: the noise floor and which factors stand out of it
    if noise is not None:
        out.append(Section("Repeats and noise", noise[0], [noise[1]]))
    figs = figures.all_figures(df)
    pair = figures.heatmap_pair(df)
    drawn = any(name == "energy_to_target_heatmap" for name, _ in figs)
    text = "" if pair is None or not drawn else \
        f"The heatmap shows the two factors with the most levels: {factor_name(pair[0])} and {factor_name(pair[1])}."
    if any(df["to_target_source"].astype(str).str.startswith("derived")):
        text += f" Some energy-to-target values are {FROM_HISTORY} (column to_target_source)."
    out.append(Section("Figures", text.strip(), [], figs))
    carbon, why = analysis.carbon_table(df)
    out.append(Section("Carbon", why, [carbon] if carbon else []))
    out.append(Section("Runs", "", [analysis.runs_table(df)]))
    out.append(Section("Provenance", "\n".join(lines), [commands]))
    return out


Analyzer = Callable[[str], Callable[[Any, dict[str, Any]], list[Section]]]  # driver name -> its analyze()


def study_sections(root: Path, df: Any, analyzer: Optional[Analyzer] = None) -> list[Section]:
    """Extra sections from the study driver named in ``root/study.json`` (none without a driver).

    ``analyzer`` looks a driver's ``analyze`` up; the caller passes it (the studies sit above the report,
    so the report never imports them).
    """
    path = Path(root) / STUDY_FILE
    if not path.is_file():
        return []
    study = json.loads(path.read_text())
    driver = study.get("driver") if isinstance(study, dict) else None
    if not driver:
        return []
    try:
        analyze = analyzer(driver) if analyzer is not None else None
    except (KeyError, AttributeError):
        analyze = None
    if analyze is None:
        print(f"powertrain report: no analysis for study driver {driver!r}; generic report only", file=sys.stderr)
        return []
    if df.empty:  # refused before its first part (study.json says why): no runs for the driver to analyse
        return []
    return list(analyze(df, study))


def _png_svg(fig: Any) -> tuple[bytes, str]:
    png, svg = io.BytesIO(), io.StringIO()
    fig.savefig(png, format="png", dpi=130, bbox_inches="tight")
    fig.savefig(svg, format="svg", bbox_inches="tight")
    return png.getvalue(), svg.getvalue()


def _table_html(t: Table) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in t.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in r) + "</tr>" for r in t.rows)
    cap = f"<caption>{html.escape(t.caption)}</caption>" if t.caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _table_md(t: Table) -> str:
    def cell(v: Any) -> str:
        return fmt(v).replace("|", "\\|").replace("\n", " ")

    lines = [f"*{t.caption}*", ""] if t.caption else []
    lines += ["| " + " | ".join(map(cell, t.columns)) + " |", "|" + "---|" * len(t.columns)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in t.rows]
    return "\n".join(lines) + "\n"


def _text_html(text: str) -> str:
    return "".join(f'<p class="warn">{html.escape(p)}</p>' if "ESTIMATE" in p else f"<p>{html.escape(p)}</p>"
                   for p in text.split("\n") if p.strip())


def _slug(name: str, used: set[str]) -> str:
    base = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "figure"
    slug, n = base, 2
    while slug in used:
        slug, n = f"{base}_{n}", n + 1
    used.add(slug)
    return slug


def write_report(root: Any, *, title: Optional[str] = None, sections: Sequence[Section] = (),
                 df: Any = None) -> Path:
    """Write report.html, report.md, figures/ and emissions.csv under ``root``; return the html path.

    ``sections`` (e.g. a study's headline) come first, then the generic parts. ``df`` saves a second
    ``load_sweep`` when the caller already has the frame.
    """
    import matplotlib.pyplot as plt

    from powertrain.report.load import load_sweep

    root = Path(root)
    df = load_sweep(root) if df is None else df
    title = title or default_title(root)
    # a generic section whose tables a study section already shows (geissler's worst/best) is left out
    shown = {repr(t) for sec in sections for t in sec.tables}
    all_sections = [*sections, *(g for g in generic_sections(df)
                                 if not (g.tables and not g.figures and all(repr(t) in shown for t in g.tables)))]
    fig_dir = root / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    h = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
         f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    md = [f"# {title}", ""]
    uploads: list[tuple[str, Any]] = []
    for s in all_sections:
        h.append(f"<h2>{html.escape(s.title)}</h2>{_text_html(s.text)}")
        md += [f"## {s.title}", "", *(s.text.split("\n") if s.text else []), ""]
        for t in s.tables:
            h.append(_table_html(t))
            md.append(_table_md(t))
            uploads.append((f"{s.title}: {t.caption or 'table'}", t))
        for name, fig in s.figures:
            slug = _slug(name, used)
            png, svg = _png_svg(fig)
            (fig_dir / f"{slug}.png").write_bytes(png)
            (fig_dir / f"{slug}.svg").write_text(svg)
            plt.close(fig)
            text = caption(name, fig)
            # a data: URI keeps the html one file; inline SVG would carry the SVG namespace URLs
            h.append(f"<figure id='{html.escape(slug)}'><img alt='{html.escape(text)}' src='data:image/png;base64,"
                     f"{base64.b64encode(png).decode()}'><figcaption>{html.escape(text)}</figcaption></figure>")
            md += [f"![{text}](figures/{slug}.png)", "", f"*{text}*", ""]
            uploads.append((slug, fig_dir / f"{slug}.png"))
    h.append("</body></html>")
    for old in [*fig_dir.glob("*.png"), *fig_dir.glob("*.svg")]:
        if old.stem not in used:  # a figure an earlier report drew and this one does not (e.g. fewer runs)
            old.unlink()
    html_path = root / "report.html"
    html_path.write_text("\n".join(h), encoding="utf-8")
    (root / "report.md").write_text("\n".join(md), encoding="utf-8")
    codecarbon.write(root / "emissions.csv", df)
    from powertrain.report.wandb_upload import upload_if_tracked

    upload_if_tracked(df, root, title, uploads)
    return html_path


def report_dir(root: Any, title: Optional[str] = None, analyzer: Optional[Analyzer] = None) -> Path:
    """Load ``root``, add the study driver's sections if ``analyzer`` knows it, and write the report."""
    from powertrain.report.load import load_sweep
    from powertrain.report.predicted import predicted_sections

    df = load_sweep(root)
    sections = [*study_sections(Path(root), df, analyzer), *predicted_sections(Path(root), df)]
    return write_report(root, title=title, sections=sections, df=df)
