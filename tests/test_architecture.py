"""The layout holds its shape: layers import downwards only, no cycle, short modules and functions, a
small top level, and docs/ARCHITECTURE.md cites only code that exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "powertrain"

# top to bottom: a module may import its own layer and those below it, never one above
# (docs/ARCHITECTURE.md, "Layers"; each package's __init__ says the same)
LAYERS = [
    {"__main__", "experiments", "__init__"},
    {"launch"},
    {"compose"},
    {"studies"},
    {"report"},
    {"run", "meter"},
    {"tracking"},
    {"paradigms"},
    {"train"},
    {"data", "models"},
    {"carbon", "hardware"},
    {"energy"},
    {"results", "console"},
    {"config"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, package: str) -> set[str]:
    """Every powertrain module ``path`` imports, at module level or inside functions."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("powertrain")}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        is_package = path.name == "__init__.py"
        # a package importing its own plug-in submodules to register them (data -> data.sources) is the
        # registry pattern, not a cycle between concerns: the submodule always needs its package first
        graph[name] = {m for m in _imports(path, package) if m in modules and m != name
                       and not (is_package and m.startswith(name + "."))}
    return graph


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module}: its top-level name {top!r} is in no layer; add it to LAYERS and the docs")


def test_src_has_no_import_cycle() -> None:
    """Function-level imports count: a cycle through a lazy import is still a cycle."""
    graph = _graph()
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_layers_import_downwards_only() -> None:
    # ``powertrain`` itself (``from powertrain import carbon``, ``__version__``) is imported by every import
    # of a submodule anyway; its __init__ stays light (lazy attributes) so that costs nothing
    upward = sorted(f"{a} -> {b}" for a, deps in _graph().items() for b in deps
                    if b != "powertrain" and _layer(b) < _layer(a))
    assert upward == []


def test_the_top_level_is_a_few_modules_beside_the_packages() -> None:
    flat = sorted(p.name for p in SRC.glob("*.py"))
    assert flat == ["__init__.py", "__main__.py", "console.py", "experiments.py", "meter.py"]
    for pkg in (p for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        doc = ast.get_docstring(ast.parse((pkg / "__init__.py").read_text())) or ""
        assert len(doc) > 80, f"{pkg.name}/__init__.py must say what the package owns"


def test_no_module_is_over_about_450_lines() -> None:
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 450}
    assert long == {}


def test_no_function_is_over_80_lines() -> None:
    long = {}
    for p in SRC.parent.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long[f"{p.relative_to(SRC.parent)}:{node.name}"] = node.end_lineno - node.lineno + 1
    assert long == {}


def _definitions(path: Path) -> set[str]:
    """``name`` for top-level functions and classes, ``Class.method`` for methods."""
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        if isinstance(node, ast.ClassDef):
            out |= {f"{node.name}.{m.name}" for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return out


def test_every_file_function_the_architecture_doc_cites_exists() -> None:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    cited = set(re.findall(r"([\w/]+\.py):([A-Za-z_][\w.]*(?:/[A-Za-z_][\w.]*)*)", text))
    assert len(cited) >= 25, "the doc should cite where each step lives"
    missing = []
    for file, names in sorted(cited):
        path = next((base / file for base in (SRC, SRC.parent) if (base / file).is_file()), None)
        if path is None:
            missing.append(f"{file} (no such file)")
            continue
        defs = _definitions(path)
        # `base.py:EnergyMeter.begin_window/end_window` cites two methods of one class
        first, *more = names.split("/")
        owner = first.rsplit(".", 1)[0] + "." if "." in first else ""
        for name in [first, *(owner + m for m in more)]:
            if name not in defs:
                missing.append(f"{file}:{name}")
    assert missing == []
