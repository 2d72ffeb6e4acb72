"""Alliance data: ingestion, validation and the canonical long format.

Every analysis in alliancetrack starts from an :class:`AllianceData`, made by
:func:`read_alliance`.  Validation happens here, once: later steps can rely on
numeric scores, integer sessions and unique patient/session pairs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.files import read_table
from alliancetrack.reading.scales import Scale, get_scale

__all__ = ["AllianceData", "read_alliance", "as_alliance_data", "CANONICAL"]

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


def _to_numeric(col: pd.Series, name: str, from_file: bool) -> pd.Series:
    if pd.api.types.is_bool_dtype(col):
        raise AllianceDataError(f"Column {name!r} holds true/false values, not numbers.")
    if pd.api.types.is_numeric_dtype(col):
        return col.astype("float64")
    stripped = col.astype("string").str.strip()
    blank = stripped.isna() | (stripped == "")
    num = pd.to_numeric(stripped.mask(blank), errors="coerce")
    bad = num.isna() & ~blank
    if bad.any():
        rows = _where(col.index[bad.to_numpy()], from_file)
        vals = col[bad].astype(str).tolist()
        pairs = [f"{r}: {v!r}" for r, v in zip(rows, vals, strict=True)]
        raise AllianceDataError(
            f"Column {name!r} has {int(bad.sum())} non-numeric value(s): {_listing(pairs)}. "
            "Recode them as numbers, or leave the cell empty for a missing rating."
        )
    return num.astype("float64")


_TRAILING = re.compile(r"^(.*?)(\d+)$")


def _melt_wide(df: pd.DataFrame, patient: str, keep: list[str],
               session_columns: Sequence[str] | None) -> pd.DataFrame:
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
    long = df.melt(id_vars=[patient, *keep], value_vars=cols, var_name="__col",
                   value_name="__score")
    long["__session"] = long["__col"].map(sessions).astype("int64")
    return long.drop(columns="__col")


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
) -> AllianceData:
    """Read and validate repeated alliance ratings.

    Parameters
    ----------
    source : DataFrame or path
        Long data (one row per rating) or, with ``wide=True``, one row per
        patient and one column per session.  Paths are read by suffix:
        ``.csv``, ``.tsv``, ``.parquet``, ``.xlsx``, ``.sav``, ``.dta``.
    patient, session, score : str
        Column names of patient id, session number and alliance score.  In
        wide data ``session`` and ``score`` are not used.
    therapist, rater : str, optional
        Column names of therapist id and rater perspective.
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

    Returns
    -------
    AllianceData

    Raises
    ------
    AllianceDataError
        Missing columns, non-numeric scores, missing or invalid session
        numbers, duplicated patient/session(/rater) pairs, out-of-range scores,
        empty input.

    Examples
    --------
    >>> import pandas as pd, alliancetrack as at
    >>> df = pd.DataFrame({"id": [1, 1, 1, 2, 2], "sess": [1, 2, 3, 1, 2],
    ...                    "wai": [4.0, 3.5, 4.2, 3.0, None]})
    >>> data = at.read_alliance(df, patient="id", session="sess", score="wai", scale="wai-sr")
    >>> data
    <AllianceData: 2 patients (1 excluded), 4 ratings, 1 missing, wai-sr>
    >>> data.excluded
       patient                                   reason
    0        2  fewer than 3 rated sessions (1 rated)
    """
    if not isinstance(min_timepoints, (int, np.integer)) or min_timepoints < 1:
        raise ValueError(f"min_timepoints must be a positive integer, got {min_timepoints!r}.")
    scale_obj = get_scale(scale)
    from_file = not isinstance(source, pd.DataFrame)
    if from_file:
        df = read_table(source)
    else:
        df = source
    if len(df) == 0 or len(df.columns) == 0:
        raise AllianceDataError("The input has no rows; there is nothing to analyse.")
    optional = {"therapist": therapist, "rater": rater}
    keep = [c for c in optional.values() if c is not None]
    needed = [patient, *keep] if wide else [patient, session, score, *keep]
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
    if wide:
        if df[patient].duplicated().any():
            dups = df.loc[df[patient].duplicated(keep=False), patient].unique().tolist()
            raise AllianceDataError(
                f"wide=True needs one row per patient; patient(s) {_listing(dups)} appear in "
                "several rows."
            )
        df = _melt_wide(df, patient, keep, session_columns)
        session, score = "__session", "__score"
        from_file = False
    out = pd.DataFrame(index=df.index)
    pid = df[patient]
    if pid.isna().any():
        raise AllianceDataError(
            f"Column {patient!r} (patient id) is missing in "
            f"{_listing(_where(df.index[pid.isna().to_numpy()], from_file))}."
        )
    out["patient"] = pid
    sess = df[session]
    if sess.isna().any():
        raise AllianceDataError(
            f"Column {session!r} (session) is missing in "
            f"{_listing(_where(df.index[sess.isna().to_numpy()], from_file))}. Every rating "
            "needs a session number."
        )
    sess = _to_numeric(sess, session, from_file)
    if not np.isfinite(sess.to_numpy()).all():
        bad = ~np.isfinite(sess.to_numpy())
        raise AllianceDataError(
            f"Column {session!r} has infinite values in {_listing(_where(df.index[bad], from_file))}."
        )
    if ordinal_sessions:
        bad = (sess < 0) | (sess != np.floor(sess))
        if bad.any():
            pairs = [f"{r}: {v:g}" for r, v in zip(_where(df.index[bad.to_numpy()], from_file),
                                                  sess[bad], strict=True)]
            raise AllianceDataError(
                f"Column {session!r} must hold session numbers 0, 1, 2, ...; found negative or "
                f"non-integer values: {_listing(pairs)}. Pass ordinal_sessions=False if these "
                "are another time code (e.g. weeks)."
            )
    out["session"] = sess.astype("int64") if ordinal_sessions else sess
    out["alliance"] = _to_numeric(df[score], score, from_file)
    vals = out["alliance"].to_numpy()
    infinite = np.isinf(vals)
    if infinite.any():
        raise AllianceDataError(
            f"Column {score!r} has infinite values in "
            f"{_listing(_where(df.index[infinite], from_file))}."
        )
    if therapist is not None:
        out["therapist"] = df[therapist]
    if rater is not None:
        if df[rater].isna().any():
            raise AllianceDataError(
                f"Column {rater!r} (rater) is missing in "
                f"{_listing(_where(df.index[df[rater].isna().to_numpy()], from_file))}."
            )
        out["rater"] = df[rater]
    if scale_obj is not None:
        oor = (vals < scale_obj.low) | (vals > scale_obj.high)
        if oor.any():
            pairs = [f"{r}: {v:g}" for r, v in zip(_where(df.index[oor], from_file), vals[oor],
                                                  strict=True)]
            raise AllianceDataError(
                f"{int(oor.sum())} score(s) in column {score!r} lie outside the {scale_obj.name} "
                f"range {scale_obj.low:g}-{scale_obj.high:g}: {_listing(pairs)}. Check the "
                "scoring (sum vs item mean) or pass the right scale."
            )
    keys = ["patient", "session"] + (["rater"] if rater is not None else [])
    out = _sorted(out, keys, patient)
    dup = _adjacent_duplicates(out, keys)
    if dup.any():
        d = out.loc[dup, keys].drop_duplicates()
        listed = [
            "(" + ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                            for k, v in zip(keys, row, strict=True)) + ")"
            for row in d.itertuples(index=False)
        ]
        raise AllianceDataError(
            f"{len(d)} duplicated {'/'.join(keys)} combination(s): {_listing(listed)}. "
            "Each patient may have one rating per session"
            + (" and rater" if rater is not None else "")
            + "; remove or average the duplicates first."
            + ("" if rater is not None else " If several raters rated a session, pass rater=.")
        )
    if higher_is_better is None:
        higher_is_better = scale_obj.higher_is_better if scale_obj is not None else True
    out = out.reset_index(drop=True)
    patients = pd.Index(out["patient"].unique(), name="patient")
    return _finish(out, scale_obj, patients, int(min_timepoints), bool(higher_is_better), {})


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
