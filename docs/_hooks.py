"""mkdocs hook: run the worked examples of the docs during the build and insert their output.

A fenced ``python`` block preceded by the line ``<!-- run -->`` is executed (blocks of
one page share a namespace, in order) and the line ``<!-- output -->`` after it is
replaced by what the block printed, plus any warnings it raised.  An exception
fails the build, so the examples on the page always run against the current code.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings

_BLOCK = re.compile(r"<!-- run -->\n```python\n(.*?)```\n(.*?)<!-- output -->", re.S)


def _run(code: str, namespace: dict) -> str:
    out = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out):
        warnings.simplefilter("always")
        exec(compile(code, "<docs example>", "exec"), namespace)  # noqa: S102 - our own docs
    text = out.getvalue().rstrip()
    for w in caught:
        text += f"\n{w.category.__name__}: {w.message}"
    return text


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - mkdocs API
    if "<!-- run -->" not in markdown:
        return markdown
    namespace: dict = {}

    def replace(m: re.Match) -> str:
        result = _run(m.group(1), namespace)
        return (f"```python\n{m.group(1)}```\n{m.group(2)}Output (computed when these pages "
                f"were built):\n\n```text\n{result}\n```\n")

    return _BLOCK.sub(replace, markdown)
