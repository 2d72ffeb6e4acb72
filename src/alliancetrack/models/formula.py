"""Parser for lme4-style mixed-model formulas.

``parse_mixed_formula("alliance ~ session + (session | patient) + (1 | therapist)")``
splits a formula into its response, its fixed part (a patsy right-hand side)
and its random-effect terms, as lme4's ``findbars``/``nobars`` do (Bates,
Maechler, Bolker & Walker, 2015, section 2.1):

* ``(x | g)``: correlated random intercept and slope of ``x`` within ``g``;
* ``(0 + x | g)``: slope only; ``(1 | g)``: intercept only;
* ``(x || g)``: uncorrelated, expanded to ``(1 | g) + (0 + x | g)``;
* ``(1 | g1/g2)``: nested, expanded to ``(1 | g2:g1) + (1 | g1)`` (lme4 names
  the inner factor ``g2:g1``, e.g. ``cask:batch`` in the Pastes example);
* ``(1 | g1:g2)``: the interaction of two grouping columns.

A ``|`` outside such a parenthesised term is a :class:`ValueError`, never a
bitwise operation on the data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MixedFormula", "RandomTerm", "parse_mixed_formula"]


@dataclass(frozen=True)
class RandomTerm:
    """One random-effect term ``(expr | group)``.

    Attributes
    ----------
    expr : str
        The term's model formula, e.g. ``"1"``, ``"session"``, ``"0 + session"``.
    group : str
        Grouping factor: a column name, or columns joined by ``":"``
        (their interaction, e.g. ``"cask:batch"``).
    correlated : bool
        False when the term came from a ``||`` expansion.
    """

    expr: str
    group: str
    correlated: bool = True

    @property
    def group_columns(self) -> tuple[str, ...]:
        """The data columns whose combination defines the groups."""
        return tuple(g.strip() for g in self.group.split(":"))

    def __str__(self) -> str:
        return f"({self.expr} | {self.group})"


@dataclass(frozen=True)
class MixedFormula:
    """A mixed-model formula split into response, fixed part and random terms.

    Attributes
    ----------
    response : str
        Left-hand side (``""`` for a one-sided formula).
    fixed : str
        Right-hand side of the fixed part (patsy syntax; ``"1"`` if empty).
    random : tuple of RandomTerm
        The random-effect terms after expanding ``/`` and ``||``, in formula order.
    """

    response: str
    fixed: str
    random: tuple[RandomTerm, ...]

    @property
    def fixed_formula(self) -> str:
        """``"response ~ fixed"``: the fixed part as a patsy formula."""
        return f"{self.response} ~ {self.fixed}" if self.response else f"~ {self.fixed}"

    def __str__(self) -> str:
        parts = [self.fixed] + [str(t) for t in self.random]
        return f"{self.response} ~ " + " + ".join(parts)


def _top_level_split(text: str, sep: str) -> list[str]:
    """Split ``text`` at ``sep`` outside parentheses."""
    out, depth, cur, i = [], 0, [], 0
    while i < len(text):
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if depth == 0 and text.startswith(sep, i):
            out.append("".join(cur))
            cur = []
            i += len(sep)
            continue
        cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def _bar_terms(rhs: str) -> tuple[list[tuple[int, int]], list[str]]:
    """Spans of top-level parenthesised groups that contain a top-level ``|``."""
    spans, bodies = [], []
    depth, start = 0, -1
    for i, ch in enumerate(rhs):
        if ch == "(":
            if depth == 0:
                start = i
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced parentheses in formula right-hand side {rhs!r}.")
            if depth == 0:
                body = rhs[start + 1 : i]
                if len(_top_level_split(body, "|")) > 1:
                    # a call like f(x | y) is not a bar term: require '(' not preceded by a name
                    before = rhs[:start].rstrip()
                    if before and (before[-1].isalnum() or before[-1] in "._"):
                        continue
                    spans.append((start, i + 1))
                    bodies.append(body)
    if depth != 0:
        raise ValueError(f"unbalanced parentheses in formula right-hand side {rhs!r}.")
    return spans, bodies


_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")


def _expand_group(group: str, formula: str) -> list[str]:
    """``g1/g2/g3`` -> ``["g3:g2:g1", "g2:g1", "g1"]`` (lme4's order and naming)."""
    group = group.strip()
    if not group:
        raise ValueError(f"a random-effect term in {formula!r} has no grouping factor.")
    parts = [p.strip() for p in group.split("/")]
    for p in parts:
        for name in p.split(":"):
            if not _NAME.match(name.strip()):
                raise ValueError(
                    f"grouping factor {name.strip()!r} in {formula!r} is not a column name; "
                    "write (expr | group), (expr | g1/g2) or (expr | g1:g2)."
                )
    parts = [":".join(n.strip() for n in p.split(":")) for p in parts]
    out = []
    for k in range(len(parts), 0, -1):
        out.append(":".join(reversed(parts[:k])))
    return out


def _uncorrelated(expr: str) -> list[str]:
    """``x + z`` -> ``["1", "0 + x", "0 + z"]`` (lme4's ``||`` expansion)."""
    items = [t.strip() for t in _top_level_split(expr, "+")]
    items = [t for t in items if t]
    no_int = any(t in ("0", "-1") for t in items) or any(t.startswith("-") and t[1:].strip() == "1"
                                                          for t in items)
    terms = [t for t in items if t not in ("0", "1", "-1")]
    out = [] if no_int else ["1"]
    out += [f"0 + {t}" for t in terms]
    return out


def parse_mixed_formula(formula: str) -> MixedFormula:
    """Split an lme4-style formula into fixed part and random-effect terms.

    Parameters
    ----------
    formula : str
        E.g. ``"alliance ~ session * trained + (session | patient) + (1 | therapist)"``.

    Returns
    -------
    MixedFormula
        Response, fixed right-hand side and the expanded random terms.

    Raises
    ------
    ValueError
        On a ``|`` outside a parenthesised random-effect term (which patsy would
        otherwise evaluate as a bitwise OR), an empty term, or unbalanced parentheses.

    References
    ----------
    Bates, D., Maechler, M., Bolker, B., & Walker, S. (2015). Fitting linear
    mixed-effects models using lme4. Journal of Statistical Software, 67(1), 1-48.

    Examples
    --------
    >>> f = parse_mixed_formula("y ~ x + (x | patient) + (1 | therapist)")
    >>> f.response, f.fixed
    ('y', 'x')
    >>> [(t.expr, t.group, t.correlated) for t in f.random]
    [('x', 'patient', True), ('1', 'therapist', True)]
    >>> [t.group for t in parse_mixed_formula("y ~ 1 + (1 | batch/cask)").random]
    ['cask:batch', 'batch']
    >>> [t.expr for t in parse_mixed_formula("y ~ x + (x || g)").random]
    ['1', '0 + x']
    """
    if not isinstance(formula, str):
        raise ValueError(f"formula must be a string, got {type(formula).__name__}.")
    sides = _top_level_split(formula, "~")
    if len(sides) == 1:
        lhs, rhs = "", sides[0]
    elif len(sides) == 2:
        lhs, rhs = sides
    else:
        raise ValueError(f"formula {formula!r} has more than one '~'.")
    lhs = lhs.strip()
    if "|" in lhs:
        raise ValueError(f"the response of {formula!r} contains '|'.")
    spans, bodies = _bar_terms(rhs)
    random: list[RandomTerm] = []
    for body in bodies:
        if "||" in body and len(_top_level_split(body, "||")) == 2:
            expr, group = _top_level_split(body, "||")
            correlated = False
        else:
            pieces = _top_level_split(body, "|")
            if len(pieces) != 2:
                raise ValueError(
                    f"random-effect term ({body}) in {formula!r} must have exactly one '|' "
                    "(or '||')."
                )
            expr, group = pieces
            correlated = True
        expr = " ".join(expr.split())
        if not expr:
            raise ValueError(
                f"random-effect term ({body}) in {formula!r} has no effects left of '|'; "
                "write (1 | group) for a random intercept."
            )
        exprs = [expr] if correlated else _uncorrelated(expr)
        for g in _expand_group(group, formula):
            for e in exprs:
                random.append(RandomTerm(e, g, correlated))
    fixed = rhs
    for a, b in reversed(spans):
        fixed = fixed[:a] + " " * (b - a) + fixed[b:]
    items = [t.strip() for t in _top_level_split(fixed, "+")]
    items = [t for t in items if t]
    fixed = " + ".join(" ".join(t.split()) for t in items)
    bad = fixed.replace("||", "|")
    if "|" in bad:
        raise ValueError(
            f"'|' outside a random-effect term in {formula!r}: write random effects in "
            "parentheses, e.g. (session | patient); a bare '|' would be a bitwise OR."
        )
    if not fixed:
        fixed = "1"
    return MixedFormula(lhs, fixed, tuple(random))
