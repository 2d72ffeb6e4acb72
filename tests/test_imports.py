"""The package's import graph: every module imports, no cycles, imports flow one way.

The graph is read from the source with ``ast``: every ``import alliancetrack...`` /
``from alliancetrack... import`` anywhere in a module (also inside functions, so an
import deferred to dodge a cycle still counts; only ``if TYPE_CHECKING:`` blocks are
left out).  The layers are those of the README: reading -> detection -> predictors ->
models / agreement / scaling -> plotting -> simulation -> datasets / report -> cli.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "alliancetrack"

#: Layer of each top-level module or subpackage; imports may only go to lower layers
#: (or stay inside the same subpackage).
LAYERS = {
    "errors": 0, "_version": 0,
    "reading": 1,
    "detection": 2,
    "predictors": 3,
    "models": 4, "agreement": 4, "scaling": 4,
    "plotting": 5,
    "simulation": 6,
    "datasets": 7, "report": 7,
    "cli": 8,
}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(path: Path, mods: dict[str, Path]) -> set[str]:
    """Package modules imported by the module at ``path`` (resolved to modules)."""
    out: set[str] = set()
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = parts[:-1]  # the package a relative import starts from (also for __init__)

    def absolute(node: ast.ImportFrom) -> str | None:
        if node.level == 0:
            return node.module
        base = package[: len(package) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.ImportFrom):
                module = absolute(child)
                if module and module.split(".")[0] == "alliancetrack":
                    for alias in child.names:
                        full = f"{module}.{alias.name}"
                        out.add(full if full in mods else module)
            elif isinstance(child, ast.Import):
                out.update(a.name for a in child.names if a.name.split(".")[0] == "alliancetrack")
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(p, mods) - {m} for m, p in mods.items()}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_every_module_imports():
    for name in sorted(_modules()):
        if name.endswith("__main__"):
            continue
        importlib.import_module(name)


def test_import_graph_has_no_cycles():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                walk(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node, [node])


def test_imports_flow_one_way():
    graph = _graph()
    unknown = sorted({m.split(".")[1] for m in graph if "." in m} - set(LAYERS))
    assert not unknown, f"new top-level modules without a layer: {unknown}"
    wrong = []
    for src, targets in graph.items():
        if src == "alliancetrack":
            continue  # the package root re-exports everything
        for dst in targets:
            if dst == "alliancetrack":
                wrong.append(f"{src} imports the package root")
                continue
            same_package = src.split(".")[:2] == dst.split(".")[:2]
            if not same_package and _layer(dst) >= _layer(src):
                wrong.append(f"{src} (layer {_layer(src)}) -> {dst} (layer {_layer(dst)})")
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_the_checker_sees_a_cycle(tmp_path, monkeypatch):
    """The cycle check fails on a cycle hidden in a function (so it can fail)."""
    pkg = tmp_path / "alliancetrack"
    (pkg / "reading").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""root"""\n')
    (pkg / "reading" / "__init__.py").write_text("")
    (pkg / "reading" / "a.py").write_text("from alliancetrack.reading.b import f\n")
    (pkg / "reading" / "b.py").write_text(
        "def f():\n    from alliancetrack.reading.a import g  # noqa\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    with pytest.raises(pytest.fail.Exception, match="import cycle"):
        test_import_graph_has_no_cycles()


def test_every_public_name_resolves_and_import_stays_light():
    import subprocess
    import sys

    code = ("import sys, alliancetrack as at\n"
            "heavy = sorted(m for m in ('statsmodels', 'plotnine', 'dask', 'ruptures') "
            "if m in sys.modules)\n"
            "print(','.join(heavy))\n"
            "[getattr(at, n) for n in at.__all__]\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=PACKAGE.parent, check=True)
    assert res.stdout.strip() == "", f"import alliancetrack pulls in {res.stdout.strip()}"


def test_lazy_names_are_visible_to_static_analysis():
    """The root's TYPE_CHECKING imports (read by the API docs) match its lazy table."""
    import alliancetrack as at

    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    seen = {}
    for node in tree.body:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for imp in node.body:
                if isinstance(imp, ast.ImportFrom):
                    for alias in imp.names:
                        seen[alias.name] = imp.module.removeprefix("alliancetrack.")
    assert seen == at._LAZY_NAMES
