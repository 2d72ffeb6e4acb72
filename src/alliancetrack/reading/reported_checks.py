"""Cell- and row-level checks shared by the PSQ and 3RS readers.

:func:`alliancetrack.read_psq` and :func:`alliancetrack.read_3rs`
(:mod:`alliancetrack.reading.reported`) load a table, then check ids,
session numbers, 1-5 ratings and yes/no items with the helpers here, which
name the user's columns and rows in every error; they also build the
per-patient coverage both readers return.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.alliance import AllianceData, _listing, _to_numeric, _where
from alliancetrack.reading.files import load_source
from alliancetrack.reading.values import (
    MAX_SESSION,
    apply_missing_values,
    keep_id_text,
    missing_hint,
    normalise_missing,
)

_YES = {"yes", "y", "true", "t", "1", "1.0"}
_NO = {"no", "n", "false", "f", "0", "0.0"}
_YES_NO_WORDS = {"yes", "y", "true", "t", "no", "n", "false", "f"}



def _load(source, what: str = "read_psq", ids: Sequence[str | None] = (),
          items: Sequence[str | None] = (), missing_values=None) -> tuple[pd.DataFrame, bool]:
    """The input as a DataFrame: ids keep their text, named missing-value codes become NaN."""
    codes = normalise_missing(missing_values)
    df, from_file = load_source(source, what, text_columns=ids)
    present = [c for c in ids if c is not None and c in df.columns]
    if from_file and present:
        df = df.assign(**{c: keep_id_text(df[c]) for c in present})
    cols = [c for c in items if c is not None and c in df.columns]
    if codes and cols:
        df = df.assign(**{c: apply_missing_values(df[c], codes) for c in cols})
    return df, from_file


def _require_columns(df: pd.DataFrame, roles: dict[str, str | None], what: str) -> None:
    missing = [f"{col!r} ({role}=)" for role, col in roles.items()
               if col is not None and col not in df.columns]
    if missing:
        raise AllianceDataError(
            f"{what}: column(s) {', '.join(missing)} not found. The input has columns: "
            f"{list(df.columns)}. Name the right ones with the keyword shown in brackets, or "
            "pass None for an optional item that was not asked."
        )


def _pairs(col: pd.Series, mask: np.ndarray, from_file: bool) -> str:
    rows = _where(col.index[mask], from_file)
    return _listing([f"{r}: {v!r}" for r, v in zip(rows, col[mask].tolist(), strict=True)])


def _no_missing(df: pd.DataFrame, col: str, role: str, from_file: bool, hint: str = "") -> None:
    miss = df[col].isna().to_numpy()
    if miss.any():
        raise AllianceDataError(
            f"Column {col!r} ({role}) is missing in "
            f"{_listing(_where(df.index[miss], from_file))}.{hint}"
        )


def _ids(df: pd.DataFrame, patient: str, session: str, from_file: bool) -> pd.DataFrame:
    out = pd.DataFrame(index=df.index)
    _no_missing(df, patient, "patient id", from_file)
    _no_missing(df, session, "session", from_file)
    out["patient"] = df[patient]
    sess = _to_numeric(df[session], session, from_file)
    bad = ~np.isfinite(sess.to_numpy()) | (sess.to_numpy() < 0) | \
        (sess.to_numpy() != np.floor(sess.to_numpy())) | (np.abs(sess.to_numpy()) > MAX_SESSION)
    if bad.any():
        raise AllianceDataError(
            f"Column {session!r} must hold session numbers 0, 1, 2, ...; found "
            f"{_pairs(df[session], bad, from_file)}."
        )
    out["session"] = sess.astype("int64")
    return out


def _rating(col: pd.Series, name: str, from_file: bool, low: float = 1,
            high: float = 5) -> pd.Series:
    """A 1-5 rating column as float (NaN when missing); out-of-range values are an error."""
    num = _to_numeric(col, name, from_file)
    v = num.to_numpy()
    bad = ~np.isnan(v) & ((v < low) | (v > high))
    if bad.any():
        raise AllianceDataError(
            f"Column {name!r} holds {int(bad.sum())} rating(s) outside {low:g}-{high:g}: "
            f"{_pairs(col, bad, from_file)}. If they are missing-value codes, "
            f"{missing_hint(sorted(set(v[bad].tolist())))}."
        )
    return num


def _yes_no(col: pd.Series, name: str, from_file: bool) -> pd.Series:
    """Yes/no answers (bool, 0/1, yes/no/true/false in any case) as 1.0 / 0.0 / NaN."""
    if pd.api.types.is_bool_dtype(col):
        return col.astype("float64")
    text = col.astype("string").str.strip().str.lower()
    blank = (text.isna() | (text == "")).to_numpy()
    yes = text.isin(_YES).fillna(False).to_numpy(dtype=bool)
    no = text.isin(_NO).fillna(False).to_numpy(dtype=bool)
    bad = ~(blank | yes | no)
    if bad.any():
        vals = sorted({str(v) for v in col[bad].tolist()})
        raise AllianceDataError(
            f"Column {name!r} (yes/no) has {int(bad.sum())} unknown value(s) "
            f"{_listing([repr(v) for v in vals])} in {_pairs(col, bad, from_file)}. Use "
            "yes/no, true/false or 1/0 (any case), or leave the cell empty."
        )
    return pd.Series(np.where(yes, 1.0, np.where(no, 0.0, np.nan)), index=col.index)


def _tension_format(col: pd.Series, name: str) -> str:
    """Guess whether the tension item is a yes/no answer or a 1-5 rating."""
    if pd.api.types.is_bool_dtype(col):
        return "yes/no"
    if not pd.api.types.is_numeric_dtype(col):
        text = col.astype("string").str.strip().str.lower()
        if text.isin(_YES_NO_WORDS).fillna(False).any():
            return "yes/no"
        num = pd.to_numeric(text.mask(text == ""), errors="coerce")
        if (num.isna() & text.notna() & (text != "")).any():
            return "yes/no"  # unknown words: the yes/no parser names them
    else:
        num = col
    vals = set(pd.Series(num).dropna().astype("float64").unique().tolist())
    if vals <= {0.0, 1.0} and 0.0 in vals:
        return "yes/no"
    if vals == {1.0}:
        raise AllianceDataError(
            f"Column {name!r} (tension) holds only 1s: that could be 'yes' answers or ratings of "
            "1 ('not at all'). Say which with tension_format='yes/no' or 'rating'."
        )
    return "rating"


def _duplicates(out: pd.DataFrame, keys: list[str], from_file: bool, what: str) -> None:
    dup = out.duplicated(keys, keep=False).to_numpy()
    if dup.any():
        rows = out.loc[dup]
        listed = []
        for _, grp in rows.groupby(keys, sort=False, dropna=False):
            combo = ", ".join(f"{k}={v!r}" for k, v in zip(keys, grp.iloc[0][keys], strict=True))
            listed.append(f"({combo}) in {', '.join(_where(grp.index, from_file))}")
        raise AllianceDataError(
            f"{len(listed)} duplicated {'/'.join(keys)} combination(s): {_listing(listed)}. "
            f"{what}"
        )


def _sort(out: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    try:
        return out.sort_values(keys, kind="stable")
    except TypeError as exc:
        raise AllianceDataError(
            "Patient ids mix types (e.g. numbers and text) and cannot be ordered; convert them "
            "to one type."
        ) from exc


def _all_patients(found: pd.Series, patients) -> pd.Index:
    ids = pd.unique(found)
    if patients is not None:
        if isinstance(patients, AllianceData):
            given = patients.patients
        elif isinstance(patients, str) or not hasattr(patients, "__iter__"):
            raise AllianceDataError(
                f"patients= must be a list of ids or an AllianceData, got {patients!r}."
            )
        else:
            given = pd.Index(list(patients))
        ids = pd.unique(pd.concat([pd.Series(ids), pd.Series(given.to_numpy()
                                                             if hasattr(given, "to_numpy")
                                                             else list(given))]))
    try:
        ids = sorted(ids)
    except TypeError as exc:
        raise AllianceDataError(
            "Patient ids mix types (e.g. numbers and text) and cannot be ordered; convert them "
            "to one type (the data and patients= must agree too)."
        ) from exc
    return pd.Index(ids, name="patient", dtype=found.dtype if len(found) else None)


def _excluded(patients: pd.Index, covered: pd.Series, reason: str) -> pd.DataFrame:
    none = patients[~patients.isin(pd.unique(covered))]
    return pd.DataFrame({"patient": pd.Series(none.to_numpy(), dtype=patients.dtype),
                         "reason": pd.Series([reason] * len(none), dtype=object)})


def _coverage_alliance(patients: pd.Index, covered: pd.DataFrame,
                       excluded: pd.DataFrame) -> AllianceData:
    """An AllianceData whose 'ratings' are the covered sessions (for episode_predictors)."""
    cov = covered[["patient", "session"]].drop_duplicates().assign(alliance=1.0)
    none = patients[~patients.isin(cov["patient"])]
    filler = pd.DataFrame({"patient": none.to_numpy(), "session": np.nan, "alliance": np.nan})
    frame = pd.concat([cov.astype({"session": "float64"}), filler], ignore_index=True)
    frame["patient"] = frame["patient"].astype(patients.dtype)
    frame = _sort(frame, ["patient", "session"]).reset_index(drop=True)
    return AllianceData(frame=frame, excluded=excluded.reset_index(drop=True), scale=None,
                        patients=patients, min_timepoints=1)


# --------------------------------------------------------------------------- PSQ
