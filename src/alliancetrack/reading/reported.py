"""Self-reported (PSQ) and observer-coded (3RS) ruptures.

Score dips are one way to find alliance ruptures; the field also asks patient
and therapist after each session (the Post-Session Questionnaire, PSQ; Muran et
al. 2009; Eubanks, Muran & Safran 2018) and has
observers code session recordings with the Rupture Resolution Rating System
(3RS; Eubanks-Carter, Muran & Safran 2015).  :func:`read_psq` and
:func:`read_3rs` validate such data; :mod:`alliancetrack.detection.reported` (called
by :func:`alliancetrack.detect_episodes` with ``method="self-report"`` or
``method="observer"``) turns them into the same episode table as the
score-based detectors.

Self-report and observer episodes are *within-session* events: the rupture
session is the session reported or coded, and a rupture resolved in that
session has ``repair_session == rupture_session`` and
``sessions_to_repair == 0``.  ``repaired`` is a nullable boolean: missing
when the resolution item was not answered (PSQ) or no resolution rating was
coded (3RS).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.alliance import AllianceData, _listing, _where
from alliancetrack.reading.reported_checks import (
    _all_patients,
    _coverage_alliance,
    _duplicates,
    _excluded,
    _ids,
    _load,
    _no_missing,
    _pairs,
    _rating,
    _require_columns,
    _sort,
    _tension_format,
    _yes_no,
)
from alliancetrack.reading.strategies import drop_strategy_only, strategy_rows, strategy_table

__all__ = ["PSQData", "ObserverData", "read_psq", "read_3rs", "PSQ_ITEMS"]

_TYPES = {"withdrawal": "withdrawal", "w": "withdrawal", "confrontation": "confrontation",
          "c": "confrontation"}


PSQ_ITEMS = ("tension", "tension_intensity", "withdrawal", "withdrawal_intensity", "addressed",
              "resolved")


@dataclass(frozen=True, repr=False)
class PSQData:
    """Validated Post-Session Questionnaire rupture items (from :func:`read_psq`).

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per answered questionnaire: ``patient, session`` (``rater``,
        ``therapist`` when given), the items ``tension, tension_intensity,
        withdrawal, withdrawal_intensity, addressed, resolved`` (float; NaN
        when not answered or not asked; yes/no tension as 1.0/0.0) and
        ``answered`` (the tension or withdrawal item was answered: the
        session is *covered*).  Sorted by patient, session(, rater).
    excluded : pandas.DataFrame
        ``patient, reason`` for patients without any answered questionnaire.
    patients : pandas.Index
        Every patient id (from the data and ``patients=``).
    tension_format : str
        ``"yes/no"`` or ``"rating"``.
    """

    frame: pd.DataFrame
    excluded: pd.DataFrame
    patients: pd.Index
    tension_format: str = "yes/no"

    @property
    def raters(self) -> list:
        """Distinct raters (empty without a rater column)."""
        if "rater" not in self.frame:
            return []
        return sorted(self.frame["rater"].unique().tolist())

    @property
    def coverage(self) -> pd.DataFrame:
        """Sessions with an answered questionnaire: ``patient, session`` (``rater``)."""
        keys = ["patient", "session"] + (["rater"] if "rater" in self.frame else [])
        return self.frame.loc[self.frame["answered"], keys].reset_index(drop=True)

    def select_rater(self, rater) -> PSQData:
        """The answers of one rater (e.g. ``"patient"``).

        Examples
        --------
        >>> import pandas as pd, alliancetrack as at
        >>> df = pd.DataFrame({"patient": 1, "session": [1, 1], "rater": ["patient", "therapist"],
        ...                    "tension": ["no", "yes"], "resolved": [None, 2]})
        >>> at.read_psq(df, rater="rater").select_rater("therapist").frame["tension"].tolist()
        [1.0]
        """
        if rater not in self.raters:
            raise AllianceDataError(
                f"Unknown rater {rater!r}; the data have raters {self.raters}."
            )
        frame = self.frame.loc[self.frame["rater"] == rater].reset_index(drop=True)
        excluded = _excluded(self.patients, frame.loc[frame["answered"], "patient"],
                             f"no PSQ answered by the {rater}")
        return PSQData(frame=frame, excluded=excluded, patients=self.patients,
                       tension_format=self.tension_format)

    def coverage_data(self, rater=None) -> AllianceData:
        """The covered sessions as an :class:`AllianceData` (for per-patient counts).

        Each answered questionnaire (of ``rater``, if given) is a "rating";
        patients without one are excluded.
        """
        data = self.select_rater(rater) if rater is not None else self
        return _coverage_alliance(data.patients, data.coverage, data.excluded)

    def __repr__(self) -> str:
        n = int(self.frame["answered"].sum())
        raters = f", raters {self.raters}" if self.raters else ""
        return (f"<PSQData: {len(self.patients)} patients ({len(self.excluded)} excluded), "
                f"{n} answered questionnaires{raters}, tension {self.tension_format}>")


def read_psq(
    source: pd.DataFrame | str | Path,
    *,
    patient: str = "patient",
    session: str = "session",
    rater: str | None = None,
    tension: str | None = "tension",
    tension_intensity: str | None = None,
    withdrawal: str | None = None,
    withdrawal_intensity: str | None = None,
    addressed: str | None = None,
    resolved: str | None = "resolved",
    therapist: str | None = None,
    tension_format: str | None = None,
    patients: Sequence | AllianceData | None = None,
    missing_values: Sequence[float | str] | None = None,
) -> PSQData:
    """Read and validate Post-Session Questionnaire (PSQ) rupture items.

    One row per questionnaire: patient and session (and rater, e.g. patient /
    therapist, when both answered).  The PSQ rupture items (Muran et al.
    2009; Eubanks, Muran & Safran 2018) are

    * ``tension``: "Did you experience any tension or problem, any
      misunderstanding, conflict, or disagreement, in your relationship with
      your therapist/patient during the session?" -- yes/no (bool, 0/1,
      yes/no or true/false in any case) or a 1-5 rating;
    * ``tension_intensity``: how tense or upset (1-5);
    * ``withdrawal``: overly accommodating, smoothing things over, holding
      back (1-5), with ``withdrawal_intensity`` (1-5);
    * ``addressed``: "To what extent was this problem addressed in this
      session?" (1-5);
    * ``resolved``: "To what degree do you feel this problem was resolved by
      the end of the session?" (1-5).

    Pass ``None`` for an item that was not asked (``tension`` or
    ``withdrawal`` must be given).

    Parameters
    ----------
    source : DataFrame or path
        Read by suffix like :func:`alliancetrack.read_alliance`.
    patient : str
        Column names (``rater`` and ``therapist`` optional).
    session : str
        Column names (``rater`` and ``therapist`` optional).
    rater : str
        Column names (``rater`` and ``therapist`` optional).
    therapist : str
        Column names (``rater`` and ``therapist`` optional).
    tension : str or None
        Column names of the items.
    tension_intensity : str or None
        Column names of the items.
    withdrawal : str or None
        Column names of the items.
    withdrawal_intensity : str or None
        Column names of the items.
    addressed : str or None
        Column names of the items.
    resolved : str or None
        Column names of the items.
    tension_format : str, optional
        How the tension item was answered, ``"yes/no"`` or ``"rating"``; guessed from the values by default
        (bool, yes/no words or 0/1 with some 0s mean yes/no; 1-5 values a
        rating; a column of only 1s is ambiguous and must be named).
    missing_values : list of numbers or text, optional
        Missing-value codes of the item columns (e.g. ``[-9, 99]``); they
        become missing answers.
    patients : list or AllianceData, optional
        Every patient of the study.  Patients without any answered
        questionnaire are listed in ``.excluded`` (reason ``"no PSQ
        answered"``) and stay in per-patient outputs.

    Returns
    -------
    PSQData

    Raises
    ------
    AllianceDataError
        Missing columns, missing ids or sessions, unknown yes/no values (named),
        ratings outside 1-5, duplicated patient/session(/rater) rows -- naming
        the rows and values.

    Examples
    --------
    >>> import pandas as pd, alliancetrack as at
    >>> df = pd.DataFrame({"patient": [1, 1, 1, 2], "session": [1, 2, 3, 1],
    ...                    "tension": ["No", "YES", True, None], "resolved": [None, 4, 2, None]})
    >>> psq = at.read_psq(df)
    >>> psq
    <PSQData: 2 patients (1 excluded), 3 answered questionnaires, tension yes/no>
    >>> psq.frame[["patient", "session", "tension", "resolved"]]
       patient  session  tension  resolved
    0        1        1      0.0       NaN
    1        1        2      1.0       4.0
    2        1        3      1.0       2.0
    3        2        1      NaN       NaN
    >>> psq.excluded
       patient          reason
    0        2  no PSQ answered
    """
    if tension is None and withdrawal is None:
        raise AllianceDataError("read_psq needs the tension or the withdrawal item (or both).")
    if tension_format not in (None, "yes/no", "rating"):
        raise ValueError(f"tension_format must be 'yes/no' or 'rating', got {tension_format!r}.")
    items = dict(zip(PSQ_ITEMS, (tension, tension_intensity, withdrawal, withdrawal_intensity,
                                  addressed, resolved), strict=True))
    df, from_file = _load(source, "read_psq", (patient, rater, therapist), list(items.values()),
                          missing_values)
    _require_columns(df, {"patient": patient, "session": session, "rater": rater,
                          "therapist": therapist, **items}, "read_psq")
    out = _ids(df, patient, session, from_file)
    if rater is not None:
        _no_missing(df, rater, "rater", from_file)
        out["rater"] = df[rater]
    if therapist is not None:
        out["therapist"] = df[therapist]
    fmt = _psq_items(out, df, items, tension_format, from_file)
    out["answered"] = (out["tension"].notna() | out["withdrawal"].notna()).to_numpy()
    keys = ["patient", "session"] + (["rater"] if rater is not None else [])
    _duplicates(out, keys, from_file,
                "Each patient may have one questionnaire per session"
                + (" and rater." if rater is not None else
                   "; if patient and therapist both answered, pass rater=."))
    out = _sort(out, keys).reset_index(drop=True)
    pats = _all_patients(out["patient"], patients)
    excluded = _excluded(pats, out.loc[out["answered"], "patient"], "no PSQ answered")
    return PSQData(frame=out, excluded=excluded, patients=pats, tension_format=fmt)


def _psq_items(out: pd.DataFrame, df: pd.DataFrame, items: dict[str, str | None],
               tension_format: str | None, from_file: bool) -> str:
    """Check the PSQ items into ``out`` (NaN for those not given); the tension item's format."""
    fmt = "rating"
    for item, col in items.items():
        if col is None:
            out[item] = np.nan
        elif item == "tension":
            fmt = tension_format or _tension_format(df[col], col)
            out[item] = (_yes_no(df[col], col, from_file) if fmt == "yes/no"
                         else _rating(df[col], col, from_file))
        else:
            out[item] = _rating(df[col], col, from_file)
    return fmt


# --------------------------------------------------------------------------- 3RS

@dataclass(frozen=True, repr=False)
class ObserverData:
    """Validated 3RS codes (from :func:`read_3rs`).

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per coded segment and marker: ``patient, session, segment,
        type`` (``"withdrawal"``, ``"confrontation"`` or missing for a segment
        coded with no marker), ``marker`` (name or missing), ``significance``
        (1-5, NaN without a marker), ``resolution`` (the session's resolution
        rating, 1-5 or NaN).
    sessions : pandas.DataFrame
        One row per coded session (these are the sessions *covered*):
        ``patient, session, n_segments, n_markers, resolution``.  A coded
        session without markers is "coded, no rupture"; a session absent here
        was not coded.
    excluded : pandas.DataFrame
        ``patient, reason`` for patients without a coded session (only those
        named by ``patients=`` can have none).
    patients : pandas.Index
        Every patient id.
    strategies : pandas.DataFrame or None
        With ``read_3rs(..., strategy=...)``: one row per resolution strategy
        used, ``patient, session, segment, strategy`` (short name of
        :data:`alliancetrack.STRATEGIES`), ``number``, ``strategy_class``,
        ``strategy_significance`` (and ``therapist``).  Strategy coding covers
        the coded sessions (``sessions``).  None when strategies were not read.
    """

    frame: pd.DataFrame
    sessions: pd.DataFrame
    excluded: pd.DataFrame
    patients: pd.Index
    strategies: pd.DataFrame | None = None

    @property
    def raters(self) -> list:
        """Always empty: one set of codes per session."""
        return []

    @property
    def coverage(self) -> pd.DataFrame:
        """The coded sessions: ``patient, session``."""
        return self.sessions[["patient", "session"]].reset_index(drop=True)

    def coverage_data(self, rater=None) -> AllianceData:
        """The coded sessions as an :class:`AllianceData` (for per-patient counts)."""
        return _coverage_alliance(self.patients, self.coverage, self.excluded)

    def __repr__(self) -> str:
        n_mark = int(self.frame["type"].notna().sum())
        return (f"<ObserverData: {len(self.patients)} patients ({len(self.excluded)} excluded), "
                f"{len(self.sessions)} coded sessions, {len(self.frame)} segment rows, "
                f"{n_mark} markers>")


def read_3rs(
    source: pd.DataFrame | str | Path,
    *,
    patient: str = "patient",
    session: str = "session",
    segment: str | None = "segment",
    marker_type: str = "type",
    marker: str | None = None,
    significance: str = "significance",
    resolution: str | None = None,
    therapist: str | None = None,
    patients: Sequence | AllianceData | None = None,
    strategy: str | None = None,
    strategy_significance: str | None = None,
    missing_values: Sequence[float | str] | None = None,
) -> ObserverData:
    """Read and validate Rupture Resolution Rating System (3RS) codes.

    The 3RS (Eubanks-Carter, Muran & Safran 2015) codes withdrawal and
    confrontation rupture markers in segments of a session (typically 5
    minutes), each with a significance rating (1-5), and rates how well
    ruptures were resolved.  Input: one row per coded segment and marker --
    patient, session, segment, marker type (``withdrawal`` / ``confrontation``,
    also ``W`` / ``C``, any case; *empty for a segment coded with no marker*),
    optional marker name (e.g. denial, minimal response, deferential and
    appeasing, complaints about the therapist, efforts to control),
    significance, and an optional session-level resolution rating (1-5; it may
    be repeated on every row of the session or given on one).  A session that
    appears only with empty marker cells was *coded, no rupture*; a session
    that does not appear was *not coded*.  A segment may have several rows
    when it holds several markers (different type or name).

    With ``strategy=`` the therapist's resolution strategies are read too
    (:data:`alliancetrack.STRATEGIES`): a short name, the manual's number or
    its wording, any case, several in one cell separated by ``;`` (or rows of
    their own, with an empty marker type); a row may hold a marker and
    strategies.  ``strategy_significance`` optionally names a 1-5 rating of
    each strategy row.  Unknown strategies are an error naming them.

    Parameters
    ----------
    source : DataFrame or path
    patient : str
        Column names (``segment``, ``marker``, ``resolution``, ``therapist``
        optional).
    session : str
        Column names (``segment``, ``marker``, ``resolution``, ``therapist``
        optional).
    segment : str
        Column names (``segment``, ``marker``, ``resolution``, ``therapist``
        optional).
    marker_type : str
        Column names (``segment``, ``marker``, ``resolution``, ``therapist``
        optional).
    marker : str
        Column names (``segment``, ``marker``, ``resolution``, ``therapist``
        optional).
    significance : str
        Column names (``segment``, ``marker``, ``resolution``, ``therapist``
        optional).
    resolution : str
        Column names (``segment``, ``marker``, ``resolution``, ``therapist``
        optional).
    therapist : str
        Column names (``segment``, ``marker``, ``resolution``, ``therapist``
        optional).
    patients : list or AllianceData, optional
        Every patient of the study; those without a coded session go to
        ``.excluded`` (reason ``"no coded session"``).
    strategy, strategy_significance : str, optional
        Columns of the resolution strategies and their rating (``.strategies``).
    missing_values : list of numbers or text, optional
        Missing-value codes of ``significance`` and ``resolution`` (e.g.
        ``[-9]``); they become missing ratings.

    Returns
    -------
    ObserverData

    Raises
    ------
    AllianceDataError
        Missing columns, unknown marker types, significance or resolution
        outside 1-5, a marker without significance (or a significance without
        a marker), conflicting resolution ratings within a session, duplicated
        rows -- naming the rows and values.

    Examples
    --------
    >>> import pandas as pd, alliancetrack as at
    >>> codes = pd.DataFrame({"patient": 1, "session": [2, 2, 2, 5],
    ...                       "segment": [1, 2, 2, 1], "type": ["W", "c", "W", None],
    ...                       "significance": [2, 4, 1, None], "resolution": [3, None, None, None]})
    >>> obs = at.read_3rs(codes, resolution="resolution", patients=[1, 2])
    >>> obs
    <ObserverData: 2 patients (1 excluded), 2 coded sessions, 4 segment rows, 3 markers>
    >>> obs.sessions
       patient  session  n_segments  n_markers  resolution
    0        1        2           2          3         3.0
    1        1        5           1          0         NaN
    """
    df, from_file = _load(source, "read_3rs", (patient, therapist),
                          (significance, resolution), missing_values)
    _require_columns(df, {"patient": patient, "session": session, "segment": segment,
                          "marker_type": marker_type, "marker": marker,
                          "significance": significance, "resolution": resolution,
                          "therapist": therapist, "strategy": strategy,
                          "strategy_significance": strategy_significance}, "read_3rs")
    out = _ids(df, patient, session, from_file)
    only = np.zeros(len(df), dtype=bool)
    if strategy is not None:  # rows with strategies but no marker (reading/strategies.py)
        names, strat_sig, only = strategy_rows(
            df, strategy=strategy, strategy_significance=strategy_significance,
            marker_type=marker_type, from_file=from_file, rating=_rating)
    out["segment"] = _segments(df, segment, from_file)
    blank, out["type"] = _marker_types(df, marker_type, from_file)
    out["marker"] = _marker_names(df, marker)
    sig = _significance(df, significance, marker_type, blank, from_file)
    out["significance"] = sig
    out["resolution"] = (_rating(df[resolution], resolution, from_file) if resolution is not None
                         else np.nan)
    if therapist is not None:
        out["therapist"] = df[therapist]
    keys = ["patient", "session", "segment"]
    out = _check_segments(out, keys, blank, only, df.index, from_file)
    _check_resolution(out, df, resolution, from_file)
    strategies = None if strategy is None else strategy_table(names, strat_sig, out, from_file)
    out["_only"] = only
    out = _sort(out, ["patient", "session"]).reset_index(drop=True)
    out, sessions = _session_table(out)
    out = drop_strategy_only(out, out.pop("_only").to_numpy(dtype=bool))
    pats = _all_patients(out["patient"], patients)
    excluded = _excluded(pats, sessions["patient"], "no coded session")
    return ObserverData(frame=out, sessions=sessions, excluded=excluded, patients=pats,
                        strategies=strategies)


def _segments(df: pd.DataFrame, segment: str | None, from_file: bool):
    """The segment numbers (required on every row when the column is given), else NA."""
    if segment is None:
        return pd.NA
    _no_missing(df, segment, "segment", from_file,
                " A segment coded with no marker still needs its segment number.")
    return df[segment]


def _marker_names(df: pd.DataFrame, marker: str | None) -> pd.Series | None:
    """The coded markers' names (None where blank or not given)."""
    if marker is None:
        return None
    name = df[marker].astype("string").str.strip()
    return name.mask(name == "").astype(object).where(name.notna(), None)


def _session_table(out: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per coded session: segments, markers and resolution; the resolution on every row."""
    g = out.groupby(["patient", "session"], sort=True)
    sessions = pd.DataFrame({
        "n_segments": g["segment"].nunique(dropna=False),
        "n_markers": g["type"].count(),
        "resolution": g["resolution"].max(),
    }).reset_index()
    sessions["n_segments"] = sessions["n_segments"].astype("int64")
    sessions["n_markers"] = sessions["n_markers"].astype("int64")
    out["resolution"] = g["resolution"].transform("max")
    return out, sessions


def _marker_types(df: pd.DataFrame, marker_type: str, from_file: bool) -> tuple[np.ndarray, pd.Series]:
    """Rows with no marker, and each row's marker type (withdrawal / confrontation / None)."""
    raw = df[marker_type].astype("string").str.strip().str.lower()
    blank = (raw.isna() | (raw == "")).to_numpy()
    mapped = raw.map(_TYPES)
    bad = ~blank & mapped.isna().to_numpy()
    if bad.any():
        vals = sorted({str(v) for v in df[marker_type][bad].tolist()})
        raise AllianceDataError(
            f"Column {marker_type!r} (marker type) has {int(bad.sum())} unknown value(s) "
            f"{_listing([repr(v) for v in vals])} in {_pairs(df[marker_type], bad, from_file)}. "
            "Use withdrawal / confrontation (or W / C), or leave the cell empty for a segment "
            "coded with no marker."
        )
    return blank, pd.Series(np.where(blank, None, mapped.to_numpy(dtype=object)),
                            index=df.index, dtype=object)


def _significance(df: pd.DataFrame, significance: str, marker_type: str, blank: np.ndarray,
                  from_file: bool) -> pd.Series:
    """The 1-5 significance ratings: one for every marker and none on rows without one."""
    sig = _rating(df[significance], significance, from_file)
    has_marker = ~blank
    no_sig = has_marker & sig.isna().to_numpy()
    if no_sig.any():
        raise AllianceDataError(
            f"{int(no_sig.sum())} marker(s) without a significance rating in column "
            f"{significance!r}: {_listing(_where(df.index[no_sig], from_file))}. Rate each "
            "marker 1-5."
        )
    stray = ~has_marker & sig.notna().to_numpy()
    if stray.any():
        raise AllianceDataError(
            f"{int(stray.sum())} significance rating(s) in column {significance!r} on rows "
            f"without a marker type: {_pairs(df[significance], stray, from_file)}. Give the "
            f"marker type in column {marker_type!r} or clear the rating."
        )
    return sig


def _check_segments(out: pd.DataFrame, keys: list[str], blank: np.ndarray, only: np.ndarray,
                    index: pd.Index, from_file: bool) -> pd.DataFrame:
    """A segment with no marker stands alone; each marker is coded once per segment."""
    # a segment coded with no marker must be the only row of that segment
    seg_rows = out.assign(_n=~only).groupby(keys, sort=False, dropna=False)["_n"].transform("sum")
    lonely = (seg_rows.to_numpy() > 1) & blank & ~only
    if lonely.any():
        raise AllianceDataError(
            f"Segment(s) coded both with and without a marker (duplicated "
            f"{'/'.join(keys)} rows): {_listing(_where(index[lonely], from_file))}. Drop the "
            "empty row of a segment that has markers."
        )
    out["_name"] = out["marker"].fillna("").where(~only, "\x1f" + out.index.astype(str))
    _duplicates(out, [*keys, "type", "_name"], from_file,
                "Each marker may be coded once per segment; remove the duplicates.")
    out = out.drop(columns="_name")
    return out


def _check_resolution(out: pd.DataFrame, df: pd.DataFrame, resolution: str | None,
                      from_file: bool) -> None:
    """At most one resolution rating per session (repeated on its rows or given once)."""
    res = out.groupby(["patient", "session"], sort=False)["resolution"]
    lo, hi = res.transform("min"), res.transform("max")
    conflict = (lo.notna() & (lo != hi) & out["resolution"].notna()).to_numpy()
    if conflict.any():
        raise AllianceDataError(
            f"Conflicting resolution ratings within a session in column {resolution!r}: "
            f"{_pairs(df[resolution], conflict, from_file)}. Give one session-level rating "
            "(repeated or on one row)."
        )
