"""The documentation: every ```python snippet of docs/*.md and README runs as written, and the
API reference (mkdocstrings + griffe) shows the defaults of the signatures."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
_BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)
_SKIP = "# docs: not run"   # a block that needs a cluster or network says so on its first line


def _blocks(path: Path) -> list[str]:
    return [b for b in _BLOCK.findall(path.read_text(encoding="utf-8"))
            if not b.lstrip().startswith(_SKIP)]


@pytest.mark.parametrize("path", [p for p in DOCS if _blocks(p)], ids=lambda p: p.name)
def test_docs_snippets_run(path, tmp_path, monkeypatch):
    """The snippets of one page run in order in one namespace, in an empty folder."""
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for i, block in enumerate(_blocks(path)):
        code = compile(block, f"{path.name}[block {i + 1}]", "exec")
        exec(code, namespace)  # noqa: S102 - the documentation's own examples
    assert os.getcwd() == str(tmp_path)


def _literal(text):
    try:
        return ast.literal_eval(str(text))
    except (ValueError, SyntaxError):
        return str(text)


def test_api_reference_shows_signature_defaults():
    griffe = pytest.importorskip("griffe")
    pkg = griffe.load("alliancetrack", search_paths=[str(ROOT / "src")],
                      docstring_parser="numpy", resolve_aliases=False)
    wrong = []

    def walk(obj):
        for m in obj.members.values():
            if m.is_alias:
                continue
            if m.is_module or m.is_class:
                walk(m)
            if not (m.is_function or m.is_class) or not m.docstring:
                continue
            try:
                params = {p.name: p.default for p in m.parameters}
            except (AttributeError, ValueError):
                continue
            for sec in m.docstring.parse("numpy"):
                if sec.kind.value != "parameters":
                    continue
                for p in sec.value:
                    doc = p.default
                    if p.name in params and doc is not None and params[p.name] is not None \
                            and _literal(doc) != _literal(params[p.name]):
                        wrong.append(f"{m.path}({p.name}): docs {doc}, signature "
                                     f"{params[p.name]}")

    walk(pkg)
    assert not wrong, "\n".join(wrong)
