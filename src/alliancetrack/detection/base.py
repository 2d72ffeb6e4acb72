"""The detector protocol: parameter objects, their labels, and the registry of methods.

Every episode detector is a frozen, comparable dataclass deriving from
:class:`Detector` (:class:`~alliancetrack.DipRecoveryRule`,
:class:`~alliancetrack.ChangepointDetector`,
:class:`~alliancetrack.SuddenChangeDetector`,
:class:`~alliancetrack.SelfReportDetector`,
:class:`~alliancetrack.ObserverDetector`, ...).  A detector

* has a ``method`` name (``"rules"``, ``"changepoint"``, ...) under which it is
  registered (:func:`register_detector`), so :func:`alliancetrack.detect_episodes`
  and :func:`detector_from_label` find it without a chain of ifs;
* checks its parameters declaratively: ``checks`` maps a field to a
  :class:`Check`, run by :meth:`Detector.__post_init__`;
* has a ``label`` naming every parameter that differs from its reference
  definition (``"rules:strauss-1sd[repair_window=1]"``); the label is written
  to the ``method`` column of the episode table, so a table saved to CSV or
  Parquet still says how it was made, and :func:`detector_from_label` turns the
  label back into the detector;
* ``detect(data)`` returns the common episode table and ``exclusions(data)``
  the patients of ``data`` it does not analyse (``patient, reason``), which
  :func:`alliancetrack.episode_predictors` re-derives from ``data`` and the label.

A new method (e.g. a hidden Markov model detector) is a frozen dataclass
deriving from :class:`Detector`, decorated with :func:`register_detector`, whose
module is imported by :mod:`alliancetrack.detection.detect` (one import line);
``detect_episodes``, option checking, labels and ``episode_predictors`` then
work for it without further changes.

Label grammar: ``<method>[:<name>][[<field>=<value>,...]]`` where ``<name>`` is the
value of the detector's ``name_field`` (the rule preset, the change-point cost
model, the PSQ rater, ...) and values are Python literals (``repr``).
"""

from __future__ import annotations

import ast
import math
import numbers
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

import pandas as pd

from alliancetrack.errors import AllianceDataError, OptionError
from alliancetrack.reading.alliance import AllianceData, as_alliance_data

__all__ = [
    "DETECTORS",
    "Check",
    "Detector",
    "detector_from_label",
    "flag",
    "make_detector",
    "number",
    "one_of",
    "positive",
    "register_detector",
    "single_rater",
    "whole",
]

#: Registered detector classes by ``method`` name (see :func:`register_detector`).
DETECTORS: dict[str, type[Detector]] = {}

_LABEL = re.compile(r"^(?P<method>[A-Za-z][\w-]*)(?::(?P<name>[^\[\]]*))?(?:\[(?P<params>.*)\])?$")


# --------------------------------------------------------------------------- checks
@dataclass(frozen=True)
class Check:
    """One declarative parameter check: ``test(value)`` must hold, else ``message``.

    ``message`` completes "<field> must ..."; ``optional`` lets ``None`` pass.

    Examples
    --------
    >>> from alliancetrack.detection.base import whole
    >>> whole(1).test(3), whole(1).test(0)
    (True, False)
    """

    test: Callable[[Any], bool]
    message: str
    optional: bool = False

    def __call__(self, name: str, value: Any, error: type[Exception] = ValueError) -> None:
        """Raise ``error`` naming ``name`` when ``value`` fails the check."""
        if self.optional and value is None:
            return
        try:
            ok = bool(self.test(value))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise error(f"{name} must {self.message}, got {value!r}.")


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def worker_count(n_jobs: int | None) -> int:
    """Workers for ``n_jobs`` as joblib counts them: None or 0 -> 1, -1 all cores, -2 all but one.

    Examples
    --------
    >>> worker_count(None), worker_count(3), worker_count(-1) >= 1
    (1, 3, True)
    """
    if not n_jobs:
        return 1
    if n_jobs < 0:
        return max(1, (os.cpu_count() or 1) + 1 + int(n_jobs))
    return int(n_jobs)


def whole(low: int = 1, *, optional: bool = False) -> Check:
    """A whole number ``>= low`` (``None`` allowed with ``optional``)."""
    return Check(lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool)
                 and v >= low,
                 f"be {'None or ' if optional else ''}a whole number >= {low}", optional)


def positive(*, optional: bool = False, upper: float | None = None) -> Check:
    """A finite number ``> 0`` (and ``<= upper``)."""
    bound = "" if upper is None else f" and at most {upper:g}"
    return Check(lambda v: _is_number(v) and v > 0 and (upper is None or v <= upper),
                 f"be {'None or ' if optional else ''}a positive number{bound}", optional)


def number(*, optional: bool = False) -> Check:
    """Any finite number."""
    return Check(_is_number, f"be {'None or ' if optional else ''}a number", optional)


def one_of(*choices: Any) -> Check:
    """One of ``choices``."""
    return Check(lambda v: v in choices, f"be one of {', '.join(map(repr, choices))}")


def flag(*, optional: bool = False) -> Check:
    """True or False."""
    return Check(lambda v: isinstance(v, bool), "be True or False", optional)


# --------------------------------------------------------------------------- protocol
class Detector:
    """Base class of the detector parameter objects (frozen dataclasses).

    Subclasses set ``method`` (the registry key and the label's prefix),
    ``name_field`` (the field shown after ``method:`` in the label, or None),
    ``checks`` (field -> :class:`Check`) and implement :meth:`detect`; they
    may override :meth:`label_reference` (what the label is relative to) and
    :meth:`exclusions`.  Fields declared with ``compare=False`` (``n_jobs``,
    citations) do not change the episodes and are not part of the label.
    """

    method: ClassVar[str] = ""
    name_field: ClassVar[str | None] = None
    checks: ClassVar[dict[str, Check]] = {}
    #: exception type of failed checks (ValueError; kept as it was for older detectors)
    error: ClassVar[type[Exception]] = ValueError
    #: what an option is called in messages
    option_word: ClassVar[str] = "option"

    def __post_init__(self) -> None:
        for name, check in self.checks.items():
            check(name, getattr(self, name), self.error)
        self._check_combination()

    def _check_combination(self) -> None:
        """Checks that involve several fields (none by default)."""

    # -- options
    @classmethod
    def default(cls) -> Detector:
        """The detector ``detect_episodes(method=cls.method)`` uses without options."""
        return cls()

    @classmethod
    def option_names(cls) -> list[str]:
        """The fields :func:`alliancetrack.detect_episodes` accepts as options."""
        return [f.name for f in fields(cls) if f.init]  # type: ignore[arg-type]

    def replace(self, **changes: Any) -> Detector:
        """A copy with some fields changed; unknown names raise :class:`OptionError`."""
        known = self.option_names()
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise OptionError(
                f"Unknown {self.option_word}(s) {unknown} for method={self.method!r}; valid "
                f"options: {', '.join(sorted(known))}."
            )
        return replace(self, **changes)  # type: ignore[type-var]

    # -- labels
    def label_reference(self) -> Detector | None:
        """The definition the label is relative to (the defaults; None: name all fields)."""
        return type(self)()

    def label_fields(self) -> list[str]:
        """Fields that define the episodes (those compared), in declaration order."""
        return [f.name for f in fields(self) if f.compare and f.name != self.name_field]  # type: ignore[arg-type]

    @property
    def label(self) -> str:
        """``method[:name][[field=value,...]]``, naming every non-reference parameter."""
        head = self.method
        if self.name_field is not None and getattr(self, self.name_field) is not None:
            head += f":{getattr(self, self.name_field)}"
        ref = self.label_reference()
        changed = [
            f"{k}={_literal(getattr(self, k))!r}" for k in self.label_fields()
            if ref is None or getattr(self, k) != getattr(ref, k)
        ]
        return head + (f"[{','.join(changed)}]" if changed else "")

    @classmethod
    def from_label_parts(cls, name: str | None, params: dict[str, Any]) -> Detector:
        """The detector a label's name and parameters describe."""
        base = cls()
        if cls.name_field is not None and name is not None:
            base = base.replace(**{cls.name_field: name})
        return base.replace(**params)

    # -- detection
    def detect(self, data: Any) -> pd.DataFrame:
        """The episode table (:data:`alliancetrack.EPISODE_COLUMNS`) of ``data``."""
        raise NotImplementedError

    def counting_data(self, data: Any) -> AllianceData:
        """The :class:`~alliancetrack.AllianceData` whose ratings per-patient counts use.

        For score-based detectors the data themselves; the self-report and
        observer detectors give the sessions their source covers.
        """
        return as_alliance_data(data)

    def exclusions(self, data: Any) -> pd.DataFrame:
        """Patients of ``data`` not analysed beyond ``data.excluded`` (``patient, reason``)."""
        return pd.DataFrame({"patient": pd.Series([], dtype=data.patients.dtype),
                             "reason": pd.Series([], dtype=object)})


def _literal(value: Any) -> Any:
    """``value`` with numpy scalars as Python ones, so its repr is a Python literal."""
    if isinstance(value, dict):
        return {k: _literal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_literal(v) for v in value)
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return value.item()
    return value


def register_detector(cls: type[Detector]) -> type[Detector]:
    """Class decorator: make ``cls`` available as ``detect_episodes(method=cls.method)``.

    Examples
    --------
    >>> from alliancetrack.detection.base import DETECTORS
    >>> {"rules", "changepoint", "sudden", "self-report", "observer"} <= set(DETECTORS)
    True
    """
    if not cls.method:
        raise ValueError(f"{cls.__name__} has no method name.")
    DETECTORS[cls.method] = cls
    return cls


def _parse_params(text: str, label: str) -> dict[str, Any]:
    try:
        call = ast.parse(f"f({text})", mode="eval").body
        if not isinstance(call, ast.Call) or call.args:
            raise ValueError
        return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    except (SyntaxError, ValueError) as exc:
        raise ValueError(
            f"Cannot read the parameters of label {label!r}: expected "
            "'[field=value,...]' with Python literals."
        ) from exc


def detector_from_label(label: str) -> Detector:
    """The detector a ``method`` label names (the inverse of ``detector.label``).

    Parameters
    ----------
    label : str
        A value of an episode table's ``method`` column, e.g.
        ``"rules:strauss-1sd[repair_window=1]"`` or ``"changepoint:l2"``.

    Returns
    -------
    Detector

    Examples
    --------
    >>> import alliancetrack as at
    >>> rule = at.detector_from_label("rules:strauss-1sd[repair_window=1]")
    >>> rule == at.PRESETS["strauss-1sd"].replace(repair_window=1)
    True
    >>> at.detector_from_label("changepoint:l1[min_size=2]").label
    'changepoint:l1[min_size=2]'
    """
    if not isinstance(label, str):
        raise ValueError(f"A detector label is a string, got {label!r}.")
    m = _LABEL.match(label.strip())
    if m is None or m["method"] not in DETECTORS:
        raise ValueError(
            f"Unknown detector label {label!r}; labels start with a method: "
            f"{', '.join(sorted(DETECTORS))}."
        )
    params = _parse_params(m["params"], label) if m["params"] else {}
    return DETECTORS[m["method"]].from_label_parts(m["name"], params)


def make_detector(method: str, rule: Any = None, **options: Any) -> Detector:
    """The detector ``detect_episodes(data, method=, rule=, **options)`` runs.

    ``rule`` is a preset name or a detector object; ``options`` replace its
    fields.  Options the method does not take raise :class:`OptionError`
    naming them and listing the valid ones.

    Examples
    --------
    >>> from alliancetrack.detection.base import make_detector
    >>> make_detector("changepoint", min_size=2).label
    'changepoint:l2[min_size=2]'
    """
    if isinstance(rule, Detector) and method is None:
        method = rule.method
    cls = DETECTORS.get(method)  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"Unknown method {method!r}; choose one of {tuple(DETECTORS)}.")
    if rule is None:
        base = cls.default()  # type: ignore[attr-defined]
    elif isinstance(rule, Detector):
        if rule.method != method:
            raise OptionError(f"rule= is a {rule.method!r} detector but method={method!r}.")
        base = rule
    elif hasattr(cls, "from_name"):
        base = cls.from_name(rule)  # type: ignore[attr-defined]
    else:
        raise OptionError(
            f"rule= applies to method='rules' only; method={method!r} takes the options "
            f"{', '.join(cls.option_names())}."
        )
    return base.replace(**options) if options else base


def single_rater(data: Any, what: str = "episodes are detected") -> None:
    """Refuse data holding several rater perspectives."""
    if len(getattr(data, "raters", [])) > 1:
        raise AllianceDataError(
            f"The data hold ratings from several raters {data.raters}; {what} "
            "in one perspective at a time. Use data.select_rater('patient') (or another rater) "
            "first."
        )
