"""The 3RS resolution strategies: registry (:data:`STRATEGIES`) and the parser of strategy codes.

The Rupture Resolution Rating System (3RS; Eubanks, Muran & Safran 2015;
Eubanks, Lubitz, Muran & Safran 2019) codes, per session segment, the
rupture markers (read by :func:`alliancetrack.read_3rs`) and the therapist's
*resolution strategies*.  Muran & Eubanks (2020) group repair strategies into

* **immediate** strategies, which address the rupture directly and refocus the
  work (clarifying a misunderstanding, giving a rationale, renegotiating tasks
  or goals, redirecting), and
* **expressive** strategies, which explore the rupture (inviting the patient
  to talk about the experience, the therapist acknowledging their own
  contribution, disclosing their experience, linking the rupture to
  interpersonal patterns: metacommunication).

López-Vásquez et al. (scoping review of rupture repair) use the same two
classes.  The class of each 3RS strategy below follows those descriptions; where
the sources do not name a strategy explicitly the class is a judgement, said
so in the strategy's ``note``.  The wording is a short paraphrase of the
manual's item; check the numbering against the manual version your coders
used.  Both are user-overridable: add or replace entries of
:data:`STRATEGIES` (they are read at call time), or pass ``classes=`` to
:func:`alliancetrack.link_strategies`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.alliance import _listing, _where

__all__ = ["Strategy", "STRATEGIES", "STRATEGY_CLASSES", "strategy_lookup", "parse_strategies",
           "strategy_rows", "strategy_table", "drop_strategy_only"]

#: The two classes of Muran & Eubanks (2020).
STRATEGY_CLASSES: tuple[str, ...] = ("immediate", "expressive")

_MANUAL = ("Eubanks, C. F., Muran, J. C., & Safran, J. D. (2015). Rupture Resolution Rating "
           "System (3RS): Manual. Mount Sinai-Beth Israel Medical Center")
_CLASSES = ("Muran, J. C., & Eubanks, C. F. (2020). Therapist performance under pressure: "
            "Negotiating emotion, difference, and rupture. American Psychological Association")


@dataclass(frozen=True)
class Strategy:
    """One resolution strategy of the registry.

    Attributes
    ----------
    name : str
        Short name used in outputs (``"clarify"``).
    number : int or None
        Item number in the 3RS manual (None for a user-defined strategy).
    wording : str
        The manual's item, paraphrased.
    strategy_class : {"immediate", "expressive"}
        Class after Muran & Eubanks (2020).
    citation : str
        Where the strategy and its class come from.
    note : str
        Why the class was chosen where it is a judgement ("" otherwise).

    Examples
    --------
    >>> import alliancetrack as at
    >>> at.STRATEGIES["invite"].strategy_class
    'expressive'
    >>> at.STRATEGIES["validate"].replace(strategy_class="expressive").strategy_class
    'expressive'
    """

    name: str
    number: int | None
    wording: str
    strategy_class: str
    citation: str = f"{_MANUAL}; class: {_CLASSES}"
    note: str = ""

    def __post_init__(self) -> None:
        if self.strategy_class not in STRATEGY_CLASSES:
            raise ValueError(f"strategy_class must be one of {STRATEGY_CLASSES}, got "
                             f"{self.strategy_class!r} (strategy {self.name!r}).")
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"A strategy needs a non-empty name, got {self.name!r}.")

    def replace(self, **changes) -> Strategy:
        """A copy with fields changed (e.g. ``strategy_class="expressive"``)."""
        return replace(self, **changes)


_JUDGEMENT = "Judgement: not named explicitly by Muran & Eubanks (2020); "

#: The 3RS resolution strategies (short name -> :class:`Strategy`).  A plain
#: dict: add or replace entries to change the mapping for all later calls.
STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("clarify", 1, "Therapist clarifies a misunderstanding", "immediate"),
    Strategy("change_task", 2, "Therapist changes tasks or goals", "immediate"),
    Strategy("rationale", 3, "Therapist illustrates tasks or provides a rationale for treatment",
             "immediate"),
    Strategy("invite", 4, "Therapist invites the patient to discuss thoughts or feelings about "
             "the therapist or some aspect of therapy", "expressive"),
    Strategy("acknowledge", 5, "Therapist acknowledges their own contribution to the rupture",
             "expressive"),
    Strategy("disclose", 6, "Therapist discloses their internal experience of the "
             "patient-therapist interaction", "expressive"),
    Strategy("link_therapy", 7, "Therapist links the rupture to larger interpersonal patterns "
             "between patient and therapist", "expressive",
             note="Metacommunication about the here-and-now relationship; expressive as in "
             "Muran & Eubanks (2020)."),
    Strategy("link_other", 8, "Therapist links the rupture to larger interpersonal patterns in "
             "the patient's other relationships", "expressive"),
    Strategy("validate", 9, "Therapist validates the patient's defensive posture", "immediate",
             note=_JUDGEMENT + "validating the defence ('allying with the resistance') "
             "accepts the patient's position without exploring the rupture, so it is counted "
             "as immediate; some authors treat it as a step towards exploration."),
    Strategy("redirect", 10, "Therapist responds to the rupture by redirecting or refocusing "
             "the patient", "immediate"),
    Strategy("explore_new", 11, "Patient and therapist explore the patient's new experience "
             "(underlying vulnerable feelings or wishes)", "expressive",
             note=_JUDGEMENT + "exploring the experience behind the rupture is the expressive "
             "pathway's aim, so it is counted as expressive."),
)}


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", str(text).lower()).split())


def strategy_lookup(registry: Mapping[str, Strategy] | None = None) -> dict[str, Strategy]:
    """Every accepted spelling (short name, manual number, wording; normalised) -> strategy.

    Examples
    --------
    >>> from alliancetrack.reading.strategies import strategy_lookup
    >>> strategy_lookup()["change task"].number
    2
    """
    registry = STRATEGIES if registry is None else registry
    out: dict[str, Strategy] = {}
    for key, s in registry.items():
        if not isinstance(s, Strategy):
            raise TypeError(f"STRATEGIES[{key!r}] must be a Strategy, got {type(s).__name__}.")
        for spelling in (key, s.name, s.wording, *(() if s.number is None else (str(s.number),))):
            out[_norm(spelling)] = s
    return out


def _known(registry: Mapping[str, Strategy]) -> str:
    return ", ".join(f"{s.number}={s.name}" if s.number is not None else s.name
                     for s in registry.values())


def parse_strategies(col: pd.Series, name: str, from_file: bool,
                     registry: Mapping[str, Strategy] | None = None) -> pd.Series:
    """Each cell's strategies as a tuple of short names (empty tuple for a blank cell).

    A cell holds a short name, a manual number or the wording (any case), or
    several separated by ``;``, ``,`` or ``|``.  Unknown entries are an
    :class:`~alliancetrack.AllianceDataError` naming them, their rows and the
    known strategies.

    Examples
    --------
    >>> import pandas as pd
    >>> from alliancetrack.reading.strategies import parse_strategies
    >>> parse_strategies(pd.Series(["Clarify; 4", None, 10]), "strategy", False).tolist()
    [('clarify', 'invite'), (), ('redirect',)]
    """
    registry = STRATEGIES if registry is None else registry
    lookup = strategy_lookup(registry)
    parsed, bad = [], {}
    for idx, value in col.items():
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            parsed.append(())
            continue
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            tokens = [str(int(value))] if float(value).is_integer() else [str(value)]
        else:
            tokens = [t for t in re.split(r"[;,|]", str(value)) if t.strip()]
        names = []
        for tok in tokens:
            key = _norm(tok)
            if re.fullmatch(r"\d+ 0+", key):  # "3.0"
                key = key.split()[0]
            hit = lookup.get(key)
            if hit is None:
                bad.setdefault(tok.strip(), []).append(idx)
            else:
                names.append(hit.name)
        parsed.append(tuple(names))
    if bad:
        listed = [f"{v!r} ({', '.join(_where(pd.Index(rows), from_file)[:3])}"
                  f"{' ...' if len(rows) > 3 else ''})" for v, rows in bad.items()]
        raise AllianceDataError(
            f"Column {name!r} (strategy) has {len(bad)} unknown strateg"
            f"{'y' if len(bad) == 1 else 'ies'}: {_listing(listed)}. Known strategies (manual "
            f"number=short name; the wording is accepted too, any case): {_known(registry)}. "
            "Register others in alliancetrack.STRATEGIES."
        )
    return pd.Series(parsed, index=col.index, dtype=object)


def strategy_rows(df: pd.DataFrame, *, strategy: str, strategy_significance: str | None,
                  marker_type: str, from_file: bool, rating) -> tuple[pd.Series, pd.Series,
                                                                     np.ndarray]:
    """Parse the strategy columns of 3RS input rows.

    Returns ``(names, significance, only)``: each row's strategies (tuples of
    short names), their significance rating (float, NaN when not rated) and
    whether the row carries strategies but no marker.  ``rating`` is the 1-5
    rating parser of :mod:`alliancetrack.reading.reported`.
    """
    names = parse_strategies(df[strategy], strategy, from_file)
    has = names.map(len).to_numpy() > 0
    if strategy_significance is not None:
        sig = rating(df[strategy_significance], strategy_significance, from_file)
        stray = ~has & sig.notna().to_numpy()
        if stray.any():
            raise AllianceDataError(
                f"{int(stray.sum())} strategy significance rating(s) in column "
                f"{strategy_significance!r} on rows without a strategy: "
                f"{_listing(_where(df.index[stray], from_file))}. Give the strategy in column "
                f"{strategy!r} or clear the rating."
            )
    else:
        sig = pd.Series(np.nan, index=df.index)
    text = df[marker_type].astype("string").str.strip()
    only = has & (text.isna() | (text == "")).to_numpy()
    return names, sig, only


def strategy_table(names: pd.Series, sig: pd.Series, out: pd.DataFrame,
                   from_file: bool) -> pd.DataFrame:
    """One row per strategy use: ``patient, session, segment, strategy, number,
    strategy_class, strategy_significance`` (and ``therapist``); ``out`` holds the
    validated ids on the input's index.  A strategy coded twice in one segment
    is an error naming the rows."""
    by_name = {s.name: s for s in STRATEGIES.values()}
    idx = [i for i, tup in names.items() for _ in tup]
    uses = out.loc[idx, [c for c in ("patient", "session", "segment", "therapist")
                         if c in out.columns]].copy()
    uses["strategy"] = [s for tup in names.to_numpy() for s in tup]
    uses["number"] = pd.array([by_name[s].number for s in uses["strategy"]], dtype="Int64")
    uses["strategy_class"] = [by_name[s].strategy_class for s in uses["strategy"]]
    uses["strategy_significance"] = sig.loc[idx].to_numpy(dtype="float64")
    dup = uses.duplicated(["patient", "session", "segment", "strategy"], keep=False).to_numpy()
    if dup.any():
        listed = [f"{r} ({s})" for r, s in zip(_where(uses.index[dup], from_file),
                                               uses["strategy"][dup], strict=True)]
        raise AllianceDataError(
            f"A strategy may be coded once per segment; duplicated in {_listing(listed)}."
        )
    order = ["therapist"] if "therapist" in uses else []
    return uses.sort_values(["patient", "session", "segment", "number", "strategy", *order],
                            kind="stable", na_position="last").reset_index(drop=True)


def drop_strategy_only(out: pd.DataFrame, only: np.ndarray) -> pd.DataFrame:
    """The marker frame without rows that carried only strategies; a segment with
    nothing else keeps one of them (as "coded, no marker")."""
    key = out[["patient", "session", "segment"]].astype(str).agg("\x1f".join, axis=1)
    other = set(key[~only])
    first = ~key.duplicated(keep="first").to_numpy()
    keep = ~only | (first & ~key.isin(other).to_numpy())
    return out.loc[keep].reset_index(drop=True)
