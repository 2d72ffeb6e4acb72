"""Alliance data: ingestion, validation and the canonical long format.

Every analysis in alliancetrack starts from an :class:`AllianceData`, made by
:func:`read_alliance`.  Validation happens here, once: later steps can rely on
numeric scores, integer sessions and unique patient/session pairs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.files import load_source
from alliancetrack.reading.scales import Scale, get_scale
from alliancetrack.reading.values import (
    MAX_SESSION,
    apply_missing_values,
    as_dates,
    describe,
    keep_id_text,
    missing_hint,
    normalise_missing,
    suspect_codes,
)

__all__ = ["AllianceData", "read_alliance", "as_alliance_data", "add_session_dates", "therapist_of",
           "CANONICAL"]

#: Canonical column names inside the package.
CANONICAL = ("patient", "session", "alliance", "therapist", "rater")

_MAX_LISTED = 10


def _listing(items: Sequence, more_word: str = "more") -> str:
    items = list(items)
    shown = ", ".join(str(i) for i in items[:_MAX_LISTED])
    if len(items) > _MAX_LISTED:
        shown += f" ... ({len(items) - _MAX_LISTED} {more_word})"
    return shown


@dataclass(frozen=True, repr=False)
class AllianceData:
    """Validated alliance ratings in canonical long format.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per rating: ``patient, session, alliance`` (plus ``therapist``
        and ``rater`` when given), sorted by patient then session.  Missing
        ratings are kept as rows with ``alliance`` NaN.
    excluded : pandas.DataFrame
        ``patient, reason`` for patients that cannot be analysed (e.g. fewer
        than ``min_timepoints`` rated sessions).  Their rows stay in ``frame``.
    scale : Scale or None
        The instrument, when known.
    patients : pandas.Index
        Every input patient id, analysed or excluded.
    min_timepoints : int
        Minimum number of rated sessions for a patient to be analysed.

    Examples
    --------
    >>> import pandas as pd, alliancetrack as at
    >>> data = at.read_alliance(pd.DataFrame({"patient": [1, 1, 1, 2], "session": [1, 2, 3, 1],
    ...                                       "alliance": [4.0, 3.0, 4.5, 3.5]}))
    >>> data.patients.tolist(), data.analysed_patients.tolist()
    ([1, 2], [1])
    >>> data.excluded["reason"].tolist()
    ['fewer than 3 rated sessions (1 rated)']
    """

    frame: pd.DataFrame
    excluded: pd.DataFrame
    scale: Scale | None
    patients: pd.Index
    min_timepoints: int = 3
    higher_is_better: bool = True
    _meta: dict = field(default_factory=dict, compare=False)

    @property
    def analysed_patients(self) -> pd.Index:
        """Patient ids that are not excluded."""
        return self.patients[~self.patients.isin(self.excluded["patient"])]

    @property
    def analysed_frame(self) -> pd.DataFrame:
        """``frame`` restricted to analysed patients."""
        if len(self.excluded) == 0:
            return self.frame
        keep = ~self.frame["patient"].isin(self.excluded["patient"])
        return self.frame.loc[keep].reset_index(drop=True)

    @property
    def raters(self) -> list:
        """Distinct raters (empty when there is no rater column)."""
        if "rater" not in self.frame:
            return []
        return sorted(self.frame["rater"].dropna().unique().tolist())

    def select_rater(self, rater) -> AllianceData:
        """Keep the ratings of one rater perspective (e.g. ``"patient"``).

        Examples
        --------
        >>> import pandas as pd, alliancetrack as at
        >>> df = pd.DataFrame({"patient": [1] * 6, "session": [1, 1, 2, 2, 3, 3],
        ...                    "alliance": [4, 3, 4, 3, 5, 4],
        ...                    "rater": ["patient", "therapist"] * 3})
        >>> d = at.read_alliance(df, rater="rater").select_rater("therapist")
        >>> d.frame["alliance"].tolist()
        [3.0, 3.0, 4.0]
        """
        if "rater" not in self.frame:
            raise AllianceDataError("These data have no rater column; nothing to select.")
        if rater not in self.raters:
            raise AllianceDataError(
                f"Unknown rater {rater!r}; the data have raters {self.raters}."
            )
        sub = self.frame.loc[self.frame["rater"] == rater].reset_index(drop=True)
        return _finish(sub, self.scale, self.patients, self.min_timepoints,
                       self.higher_is_better, self._meta)

    def __repr__(self) -> str:
        n_rated = int(self.frame["alliance"].notna().sum())
        scale = self.scale.name if self.scale else "unknown scale"
        return (
            f"<AllianceData: {len(self.patients)} patients ({len(self.excluded)} excluded), "
            f"{n_rated} ratings, {int(self.frame['alliance'].isna().sum())} missing, {scale}>"
        )


def _where(index: pd.Index, from_file: bool) -> list[str]:
    """Human row references: file line numbers or DataFrame index labels."""
    if from_file:
        return [f"line {int(i) + 2}" for i in index]
    return [f"row {i!r}" for i in index]


Locator = Callable[[np.ndarray], list[str]]


def _locator(index: pd.Index, from_file: bool | Locator) -> Locator:
    """A function from a row mask to human row references."""
    if callable(from_file):
        return from_file
    return lambda mask: _where(index[np.asarray(mask, dtype=bool)], bool(from_file))


def _to_numeric(col: pd.Series, name: str | None, from_file: bool | Locator,
                hint: str = "") -> pd.Series:
    where = _locator(col.index, from_file)
    label = f"Column {name!r}" if name is not None else "The rating columns"
    if pd.api.types.is_bool_dtype(col):
        raise AllianceDataError(f"{label} holds true/false values, not numbers.")
    if pd.api.types.is_numeric_dtype(col):
        return col.astype("float64")
    stripped = col.astype("string").str.strip()
    blank = stripped.isna() | (stripped == "")
    num = pd.to_numeric(stripped.mask(blank), errors="coerce")
    bad = num.isna() & ~blank
    if bad.any():
        rows = where(bad.to_numpy())
        vals = col[bad].astype(str).tolist()
        pairs = [f"{r}: {v!r}" for r, v in zip(rows, vals, strict=True)]
        raise AllianceDataError(
            f"{label} has {int(bad.sum())} non-numeric value(s): {_listing(pairs)}. "
            "Recode them as numbers, leave the cell empty for a missing rating, or name "
            f"missing-value codes with missing_values=[...] (command line: --missing).{hint}"
        )
    return num.astype("float64")


_TRAILING = re.compile(r"^(.*?)(\d+)$")


def _wide_sessions(df: pd.DataFrame, patient: str, keep: list[str],
                   session_columns: Sequence[str] | None) -> tuple[list, dict]:
    if session_columns is None:
        matches = {c: _TRAILING.match(str(c)) for c in df.columns if c not in [patient, *keep]}
        cols = [c for c, m in matches.items() if m]
        if not cols:
            raise AllianceDataError(
                "wide=True but no column name ends in a session number (e.g. 'wai_s1', 's2'). "
                f"Columns are: {list(df.columns)}. Pass session_columns=[...]."
            )
        prefixes = sorted({matches[c].group(1) for c in cols})
        if len(prefixes) > 1:
            raise AllianceDataError(
                f"wide=True: session-like columns have several prefixes {prefixes}; "
                "pass session_columns=[...] to say which columns hold the alliance ratings."
            )
        sessions = {c: int(matches[c].group(2)) for c in cols}
    else:
        if isinstance(session_columns, str):
            raise ValueError("session_columns must be a list of column names, not one string.")
        missing = [c for c in session_columns if c not in df.columns]
        if missing:
            raise AllianceDataError(
                f"session_columns not found: {missing}. Columns are: {list(df.columns)}."
            )
        cols = list(session_columns)
        numbered = {c: _TRAILING.match(str(c)) for c in cols}
        if all(numbered.values()):
            sessions = {c: int(m.group(2)) for c, m in numbered.items()}
        else:
            sessions = {c: i + 1 for i, c in enumerate(cols)}
        if len(set(sessions.values())) != len(cols):
            sessions = {c: i + 1 for i, c in enumerate(cols)}
    big = [c for c, s in sessions.items() if s > MAX_SESSION]
    if big:
        raise AllianceDataError(
            f"Session column(s) {big} end in numbers too large for a session; pass "
            "session_columns=[...] in session order."
        )
    return cols, sessions


def _melt_wide(df: pd.DataFrame, patient: str, keep: list[str],
               session_columns: Sequence[str] | None) -> pd.DataFrame:
    cols, sessions = _wide_sessions(df, patient, keep, session_columns)
    long = df.melt(id_vars=[patient, *keep], value_vars=cols, var_name="__col",
                   value_name="__score")
    long["__session"] = long["__col"].map(sessions).astype("int64")
    return long


def _wide_locator(long: pd.DataFrame, patient: str) -> Locator:
    def where(mask: np.ndarray) -> list[str]:
        m = np.asarray(mask, dtype=bool)
        return [f"patient {p!r}, column {c!r}"
                for p, c in zip(long[patient].to_numpy()[m], long["__col"].to_numpy()[m],
                                strict=True)]
    return where


def _sessions(col: pd.Series, name: str, where: Locator, ordinal: bool,
              ) -> tuple[pd.Series | None, pd.Series | None]:
    """Session numbers (bounded, checked) or, for a date column, the dates."""
    dates = as_dates(col)
    if dates is not None:
        return None, dates
    sess = _to_numeric(col, name, where, hint=" Dates must be ISO text (2024-01-31) or "
                       "date/datetime values; they are then numbered 1, 2, ... per patient.")
    v = sess.to_numpy()
    if not np.isfinite(v).all():
        raise AllianceDataError(
            f"Column {name!r} has infinite values in {_listing(where(~np.isfinite(v)))}."
        )
    big = np.abs(v) > MAX_SESSION
    if big.any():
        raise AllianceDataError(
            f"Column {name!r} has session numbers too large to be sessions (above 2^53): "
            f"{_listing(describe(where, v, big))}. Check the column, or name a date column."
        )
    if ordinal:
        bad = (v < 0) | (v != np.floor(v))
        if bad.any():
            raise AllianceDataError(
                f"Column {name!r} must hold session numbers 0, 1, 2, ...; found negative or "
                f"non-integer values: {_listing(describe(where, v, bad))}. Pass "
                "ordinal_sessions=False if these are another time code (e.g. weeks)."
            )
        return sess.astype("int64"), None
    return sess, None


def _check_scores(vals: np.ndarray, score: str | None, where: Locator, scale_obj: Scale | None,
                  codes: list | None) -> None:
    """Out-of-range scores (with a scale) or values that look like missing-value codes."""
    label = f"column {score!r}" if score is not None else "the rating columns"
    if scale_obj is not None:
        oor = (vals < scale_obj.low) | (vals > scale_obj.high)
        if oor.any():
            hint = missing_hint(sorted(set(vals[oor].tolist())))
            raise AllianceDataError(
                f"{int(oor.sum())} score(s) in {label} lie outside the {scale_obj.name} "
                f"range {scale_obj.low:g}-{scale_obj.high:g}: {_listing(describe(where, vals, oor))}. "
                "Check the scoring (sum vs item mean) or pass the right scale. If they are "
                f"missing-value codes, {hint}."
            )
    elif codes is None:
        flag = suspect_codes(vals)
        if flag.any():
            found = sorted(set(vals[flag].tolist()))
            raise AllianceDataError(
                f"{label[0].upper() + label[1:]} holds {int(flag.sum())} value(s) that look like "
                f"missing-value codes, not scores: {_listing(describe(where, vals, flag))}. "
                f"If they are codes, {missing_hint(found)}. If they are real scores, pass "
                "scale= (the instrument, checked against its range) or missing_values=[] "
                "to analyse the values as they are."
            )


def read_alliance(
    source: pd.DataFrame | str | Path,
    *,
    patient: str = "patient",
    session: str = "session",
    score: str = "alliance",
    therapist: str | None = None,
    rater: str | None = None,
    scale: str | Scale | None = None,
    wide: bool = False,
    min_timepoints: int = 3,
    session_columns: Sequence[str] | None = None,
    ordinal_sessions: bool = True,
    higher_is_better: bool | None = None,
    missing_values: Sequence[float | str] | None = None,
    sep: str | None = None,
    encoding: str | None = None,
) -> AllianceData:
    """Read and validate repeated alliance ratings.

    Parameters
    ----------
    source : DataFrame or path
        Long data (one row per rating) or, with ``wide=True``, one row per
        patient and one column per session.  Paths are read by suffix:
        ``.csv``, ``.txt`` (delimiter sniffed), ``.tsv``, ``.parquet``,
        ``.xlsx``, ``.xls``, ``.sav``, ``.dta``.
    patient : str
        Column of the patient id.  Read from a file, ids keep their text
        (``"001"`` and ``"01"`` are two patients) unless every id is a plain
        whole number.
    session : str
        Column of the session number, or of the session date (datetime
        values or ISO text such as ``2024-01-31``): dated ratings are ordered
        by date within patient and numbered 1, 2, ...; the date is kept in a
        ``date`` column.  Not used with ``wide=True``.
    score : str
        Column of the alliance score.  Not used with ``wide=True``.
    therapist : str, optional
        Column of the therapist id.
    rater : str, optional
        Column of the rater perspective (e.g. patient / therapist).
    scale : str or Scale, optional
        An instrument from :data:`alliancetrack.SCALES` (``"wai-sr"``,
        ``"srs"``, ...) or a :class:`Scale`; out-of-range scores are an error.
    wide : bool
        Input is wide.  Session columns are the columns whose names end in a
        number (``wai_s1``, ``s2``), unless ``session_columns`` is given.
    min_timepoints : int
        Patients with fewer rated sessions are excluded (kept in
        ``.excluded`` with the reason), not an error.
    session_columns : list of str, optional
        Wide data: the columns holding the ratings, in session order.
    ordinal_sessions : bool
        Require sessions to be non-negative whole numbers (default).  Set to
        False for other time codes (e.g. weeks since intake, 2.5).
    higher_is_better : bool, optional
        Direction of the scale; by default taken from ``scale`` (True for all
        alliance instruments).
    missing_values : list of numbers or text, optional
        Missing-value codes of the score column (e.g. ``[-99, 999]``); they
        become missing ratings.  Without ``missing_values`` or ``scale``,
        scores that look like codes (negative sentinels, values far outside
        the bulk) are an error naming them; ``missing_values=[]`` says there
        are none.
    sep : str, optional
        Delimiter of a CSV/TXT/TSV file; sniffed by default.
    encoding : str, optional
        Encoding of a CSV/TXT/TSV file (default UTF-8).

    Returns
    -------
    AllianceData

    Raises
    ------
    AllianceDataError
        Missing columns, non-numeric scores, missing or invalid session
        numbers, duplicated patient/session(/rater) pairs, out-of-range scores,
        values that look like missing-value codes, empty input.

    Examples
    --------
    >>> import pandas as pd, alliancetrack as at
    >>> df = pd.DataFrame({"id": [1, 1, 1, 2, 2], "sess": [1, 2, 3, 1, 2],
    ...                    "wai": [4.0, 3.5, 4.2, 3.0, -99]})
    >>> data = at.read_alliance(df, patient="id", session="sess", score="wai", scale="wai-sr",
    ...                         missing_values=[-99])
    >>> data
    <AllianceData: 2 patients (1 excluded), 4 ratings, 1 missing, wai-sr>
    >>> data.excluded
       patient                                   reason
    0        2  fewer than 3 rated sessions (1 rated)
    """
    if not isinstance(min_timepoints, (int, np.integer)) or isinstance(min_timepoints, bool) \
            or min_timepoints < 1:
        raise ValueError(f"min_timepoints must be a positive integer, got {min_timepoints!r}.")
    scale_obj = get_scale(scale)
    codes = normalise_missing(missing_values)
    df, from_file = load_source(source, "read_alliance", text_columns=[patient, therapist, rater],
                                sep=sep, encoding=encoding)
    optional = {"therapist": therapist, "rater": rater}
    keep = [c for c in optional.values() if c is not None]
    needed = [patient, *keep] if wide else [patient, session, score, *keep]
    _require(df, needed, wide, patient)
    if from_file:
        df = df.assign(**{c: keep_id_text(df[c]) for c in {patient, *keep}})
    if wide:
        _one_row_per_patient(df, patient)
        df = _melt_wide(df, patient, keep, session_columns)
        where, session, score, score_name = _wide_locator(df, patient), "__session", "__score", None
    else:
        where, score_name = _locator(df.index, from_file), score
    out = pd.DataFrame(index=df.index)
    _require_keys(df, where, patient, session, rater)
    out["patient"] = df[patient]
    sess, dates = _sessions(df[session], session, where, ordinal_sessions)
    out["session"] = sess if sess is not None else 0
    out["alliance"] = _to_numeric(apply_missing_values(df[score], codes), score_name, where)
    vals = out["alliance"].to_numpy()
    _require_finite(vals, score_name, where)
    if therapist is not None:
        out["therapist"] = df[therapist]
    if rater is not None:
        out["rater"] = df[rater]
    _check_scores(vals, score_name, where, scale_obj, codes)
    if dates is not None:
        out["date"] = dates.to_numpy()
        out["session"] = _number_dates(out, patient)
    keys = ["patient", "session"] + (["rater"] if rater is not None else [])
    out = _sorted(out, keys, patient)
    _duplicates(out, keys, rater is not None)
    if higher_is_better is None:
        higher_is_better = scale_obj.higher_is_better if scale_obj is not None else True
    out = out.reset_index(drop=True)
    patients = pd.Index(out["patient"].unique(), name="patient")
    return _finish(out, scale_obj, patients, int(min_timepoints), bool(higher_is_better), {})


def _one_row_per_patient(df: pd.DataFrame, patient: str) -> None:
    """A wide table must have one row per patient."""
    if df[patient].duplicated().any():
        dups = df.loc[df[patient].duplicated(keep=False), patient].unique().tolist()
        raise AllianceDataError(
            f"wide=True needs one row per patient; patient(s) {_listing(dups)} appear in "
            "several rows."
        )


def _require_keys(df: pd.DataFrame, where, patient: str, session: str, rater: str | None) -> None:
    """Patient id, session and rater must be present on every row."""
    for role, col in (("patient id", patient), ("session", session), ("rater", rater)):
        if col is not None and df[col].isna().any():
            raise AllianceDataError(
                f"Column {col!r} ({role}) is missing in {_listing(where(df[col].isna().to_numpy()))}."
                + (" Every rating needs a session number." if role == "session" else "")
            )


def _require_finite(vals: np.ndarray, score_name: str | None, where) -> None:
    """No infinite ratings."""
    if np.isinf(vals).any():
        raise AllianceDataError(
            f"{'Column ' + repr(score_name) if score_name else 'The rating columns'} has infinite "
            f"values in {_listing(where(np.isinf(vals)))}."
        )


def _require(df: pd.DataFrame, needed: list, wide: bool, patient: str) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        hint = ""
        if not wide and any(_TRAILING.match(str(c)) for c in df.columns if c != patient):
            hint = " If the data are wide (one column per session), pass wide=True."
        raise AllianceDataError(
            f"Column(s) {missing} not found. The input has columns: {list(df.columns)}. "
            f"Name the right ones with patient=, session=, score=, therapist=, rater= (on the command "
            f"line: --patient, --session, --score, --therapist, --rater).{hint}"
        )


def _number_dates(out: pd.DataFrame, patient: str) -> pd.Series:
    """Sessions 1, 2, ... per patient in date order (raters on one date share a session)."""
    try:
        ranks = out.groupby("patient", sort=False)["date"].rank(method="dense")
    except TypeError as exc:
        raise AllianceDataError(
            f"Patient ids in column {patient!r} mix types and cannot be grouped.") from exc
    return ranks.astype("int64")


def _duplicates(out: pd.DataFrame, keys: list[str], has_rater: bool) -> None:
    dup = _adjacent_duplicates(out, keys)
    if not dup.any():
        return
    shown = keys + (["date"] if "date" in out else [])
    d = out.loc[dup, shown].drop_duplicates()
    listed = [
        "(" + ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                        for k, v in zip(shown, row, strict=True)) + ")"
        for row in d.itertuples(index=False)
    ]
    raise AllianceDataError(
        f"{len(d)} duplicated {'/'.join(keys)} combination(s): {_listing(listed)}. "
        "Each patient may have one rating per session"
        + (" and rater" if has_rater else "")
        + "; remove or average the duplicates first."
        + ("" if has_rater else " If several raters rated a session, pass rater=.")
    )


def _sorted(out: pd.DataFrame, keys: list[str], patient: str) -> pd.DataFrame:
    """Sort by patient, session(, rater) unless already sorted (index labels kept)."""
    p = out["patient"].to_numpy()
    s = out["session"].to_numpy()
    try:
        already = bool(out["patient"].is_monotonic_increasing) and (
            len(s) < 2 or bool(np.all((s[1:] >= s[:-1]) | (p[1:] != p[:-1]))))
        if already and len(keys) == 3:
            already = False  # a rater column: let the sort order raters within sessions
        return out if already else out.sort_values(keys, kind="stable")
    except TypeError as exc:
        raise AllianceDataError(
            f"Patient ids in column {patient!r} mix types (e.g. numbers and text) and cannot be "
            "ordered; convert them to one type."
        ) from exc


def _adjacent_duplicates(out: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """Rows whose key equals a neighbour's key in a frame sorted by those keys."""
    same = np.ones(max(len(out) - 1, 0), dtype=bool)
    for k in keys:
        v = out[k].to_numpy()
        same &= v[1:] == v[:-1]
    dup = np.zeros(len(out), dtype=bool)
    dup[1:] |= same
    dup[:-1] |= same
    return dup


def patient_codes(patient: pd.Series | np.ndarray) -> np.ndarray:
    """Codes 0, 1, ... of the patients of a frame sorted by patient (one pass, no hashing).

    Examples
    --------
    >>> from alliancetrack.reading.alliance import patient_codes
    >>> patient_codes(["a", "a", "b", "c", "c"]).tolist()
    [0, 0, 1, 2, 2]
    """
    p = np.asarray(patient)
    if len(p) == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.empty(len(p), dtype=bool)
    change[0] = True
    change[1:] = p[1:] != p[:-1]
    return np.cumsum(change) - 1


def _finish(frame: pd.DataFrame, scale: Scale | None, patients: pd.Index, min_timepoints: int,
            higher_is_better: bool, meta: dict) -> AllianceData:
    codes = patient_codes(frame["patient"])
    if len(codes) and codes[-1] + 1 == len(patients):  # every patient has rows: fast path
        counts = np.bincount(codes, weights=frame["alliance"].notna().to_numpy(),
                             minlength=len(patients)).astype(np.int64)
        rated = pd.Series(counts, index=patients)
    else:
        rated = frame["alliance"].notna().groupby(frame["patient"], sort=False).sum()
        rated = rated.reindex(patients, fill_value=0)
    few = rated[rated < min_timepoints]
    reasons = [
        "no rated sessions" if n == 0 else f"fewer than {min_timepoints} rated sessions "
        f"({int(n)} rated)"
        for n in few.to_numpy()
    ]
    excluded = pd.DataFrame({"patient": few.index.to_numpy(), "reason": reasons})
    if len(excluded):
        excluded["patient"] = excluded["patient"].astype(patients.dtype)
    else:
        excluded = pd.DataFrame({"patient": pd.Series([], dtype=patients.dtype),
                                 "reason": pd.Series([], dtype=object)})
    return AllianceData(frame=frame, excluded=excluded, scale=scale, patients=patients,
                        min_timepoints=min_timepoints, higher_is_better=higher_is_better,
                        _meta=dict(meta))


def _check_range(frame: pd.DataFrame, scale: Scale | None) -> None:
    """Refuse ratings outside ``scale``'s range, naming patient and session."""
    if scale is None:
        return
    vals = frame["alliance"].to_numpy(dtype="float64")
    oor = (vals < scale.low) | (vals > scale.high)
    if oor.any():
        bad = frame.loc[oor]
        pairs = [f"patient {p!r} session {s}: {v:g}" for p, s, v in
                 zip(bad["patient"], bad["session"], bad["alliance"], strict=True)]
        raise AllianceDataError(
            f"{int(oor.sum())} score(s) lie outside the {scale.name} range "
            f"{scale.low:g}-{scale.high:g}: {_listing(pairs)}. Check the scoring (sum vs item "
            "mean) or pass the right scale."
        )


def as_alliance_data(data, *, scale: str | Scale | None = None) -> AllianceData:
    """Accept an :class:`AllianceData` or a long DataFrame with canonical columns.

    A DataFrame is validated with :func:`read_alliance` (columns ``patient``,
    ``session``, ``alliance`` and, if present, ``therapist`` and ``rater``).
    Giving ``scale`` for an :class:`AllianceData` swaps its scale after the
    same range check as :func:`read_alliance`.

    Examples
    --------
    >>> import pandas as pd
    >>> from alliancetrack.reading.alliance import as_alliance_data
    >>> df = pd.DataFrame({"patient": [1, 1, 1], "session": [1, 2, 3],
    ...                    "alliance": [4.0, 3.0, 4.0]})
    >>> as_alliance_data(df).patients.tolist()
    [1]
    >>> as_alliance_data(as_alliance_data(df), scale="wai-sr").scale.name
    'wai-sr'
    """
    if isinstance(data, AllianceData):
        if scale is None:
            return data
        scale_obj = get_scale(scale)
        _check_range(data.frame, scale_obj)
        return replace(data, scale=scale_obj)
    if isinstance(data, pd.DataFrame):
        return read_alliance(
            data,
            therapist="therapist" if "therapist" in data.columns else None,
            rater="rater" if "rater" in data.columns else None,
            scale=scale,
        )
    raise TypeError(
        "Expected an AllianceData (from alliancetrack.read_alliance) or a long DataFrame with "
        f"columns patient, session, alliance; got {type(data).__name__}."
    )


def therapist_of(frame: pd.DataFrame) -> pd.Series | None:
    """Each patient's therapist (the first one rated), or None without a therapist column.

    Examples
    --------
    >>> import pandas as pd
    >>> f = pd.DataFrame({"patient": [1, 1, 2], "therapist": [None, "t1", "t2"]})
    >>> therapist_of(f).to_dict()
    {1: 't1', 2: 't2'}
    """
    if "therapist" not in frame:
        return None
    first = frame.dropna(subset=["therapist"]).drop_duplicates("patient")
    return first.set_index("patient")["therapist"]


def add_session_dates(episodes: pd.DataFrame, data: AllianceData) -> pd.DataFrame:
    """Add ``date`` (the date of the rupture session) to an episode table of dated data.

    Data read with a date ``session`` column carry a ``date`` column in
    ``.frame``; their episode tables get the date of each rupture session.
    Other tables are returned unchanged.

    Examples
    --------
    >>> import pandas as pd, alliancetrack as at
    >>> df = pd.DataFrame({"patient": 1, "session": ["2024-01-03", "2024-01-10"],
    ...                    "alliance": [4.0, 3.0]})
    >>> d = at.read_alliance(df, min_timepoints=2)
    >>> ep = pd.DataFrame({"patient": [1], "rupture_session": [2]})
    >>> add_session_dates(ep, d)["date"].dt.strftime("%Y-%m-%d").tolist()
    ['2024-01-10']
    """
    if "date" not in data.frame or "rupture_session" not in episodes or "date" in episodes:
        return episodes
    lookup = data.frame.drop_duplicates(["patient", "session"]).set_index(
        ["patient", "session"])["date"]
    keys = pd.MultiIndex.from_arrays([episodes["patient"], episodes["rupture_session"]])
    out = episodes.copy()
    out.insert(out.columns.get_loc("rupture_session") + 1, "date",
               lookup.reindex(keys).to_numpy())
    out.attrs = dict(episodes.attrs)
    return out
