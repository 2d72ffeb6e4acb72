"""Cell values of real-world exports: missing-value codes, identifiers, dates, session numbers.

Helpers shared by the readers (:func:`alliancetrack.read_alliance`,
:func:`alliancetrack.read_psq`, :func:`alliancetrack.read_3rs`):

* :func:`apply_missing_values` turns the codes a user names (``-99``, ``999``,
  ``"NA"``) into missing values;
* :func:`suspect_codes` finds values that look like missing-value codes when
  none were named (negative sentinels in non-negative data, scores far outside
  the bulk), so that they are never analysed silently;
* :func:`keep_id_text` keeps identifier text that numbers would change
  (``"001"`` and ``"01"`` are two patients);
* :func:`as_dates` recognises a session column of dates;
* :data:`MAX_SESSION` bounds session numbers before any integer cast.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

__all__ = ["apply_missing_values", "suspect_codes", "keep_id_text", "as_dates", "MAX_SESSION",
           "missing_hint", "normalise_missing"]

#: Largest session number accepted: every whole number up to it is exact in float64 and int64.
MAX_SESSION = 2 ** 53

_CODE_SHAPE = re.compile(r"^(9{2,}|8{2,}|7{2,}|9+[0-8])$")
_NEG_SHAPE = re.compile(r"^(1|9+|8+|7+|9+[0-8])$")


def normalise_missing(missing_values) -> list | None:
    """Validate ``missing_values=`` (None, a number, a string or a list of them).

    Examples
    --------
    >>> normalise_missing(-99), normalise_missing([-99, "NA"]), normalise_missing(None)
    ([-99], [-99, 'NA'], None)
    """
    if missing_values is None:
        return None
    if isinstance(missing_values, (str, int, float, np.integer, np.floating)):
        missing_values = [missing_values]
    if isinstance(missing_values, (dict, set)) or not isinstance(missing_values,
                                                                 (Sequence, np.ndarray, pd.Index)):
        raise ValueError(
            "missing_values must be a list of codes such as [-99, 999] (numbers or text), "
            f"got {type(missing_values).__name__}."
        )
    out = []
    for v in list(missing_values):
        if isinstance(v, (bool, np.bool_)) or not isinstance(
                v, (str, int, float, np.integer, np.floating)):
            raise ValueError(f"missing_values holds {v!r}; use numbers or text such as -99, 'NA'.")
        out.append(v.item() if isinstance(v, np.generic) else v)
    return out


def apply_missing_values(col: pd.Series, missing_values: list | None) -> pd.Series:
    """Replace the named codes in a column by missing values (text compared after stripping).

    Examples
    --------
    >>> import pandas as pd
    >>> apply_missing_values(pd.Series([4, -99, 999, 3]), [-99, 999]).tolist()
    [4.0, nan, nan, 3.0]
    >>> apply_missing_values(pd.Series(["4", " -99", "NA"]), [-99, "NA"]).tolist()
    ['4', nan, nan]
    """
    if not missing_values:
        return col
    numbers = [float(v) for v in missing_values if not isinstance(v, str)]
    texts = {v.strip() for v in missing_values if isinstance(v, str)}
    if pd.api.types.is_bool_dtype(col):
        return col
    if pd.api.types.is_numeric_dtype(col):
        codes = numbers + [float(t) for t in texts if _is_number(t)]
        hit = col.isin(codes).to_numpy()
        return col.astype("float64").mask(hit) if hit.any() else col
    text = col.astype("string").str.strip()
    num = pd.to_numeric(text, errors="coerce")
    hit = (text.isin(texts).fillna(False) | num.isin(numbers).fillna(False)).to_numpy(dtype=bool)
    return col.mask(hit) if hit.any() else col


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def suspect_codes(values: np.ndarray) -> np.ndarray:
    """Mask of values that look like missing-value codes rather than scores.

    Flagged, conservatively (a deep dip of real scores is never flagged):

    * negative whole numbers shaped like codes (``-1``, ``-7``, ``-8``,
      ``-9``, ``-99``, ``-999``, ``-98`` ...) when the lower quartile is
      positive (at least three quarters of the scores are above zero);
    * positive code-shaped whole numbers of two or more digits (``99``,
      ``999``, ``88``, ``98``, ``777``) beyond Tukey's far-out fence (upper
      quartile + 3 interquartile ranges; Tukey 1977) and at least twice the
      upper quartile;
    * any value a hundred times further from the median than the data's
      scale (``max(|median|, IQR, 1)``), e.g. ``5000`` in a 1-7 scale.

    Examples
    --------
    >>> import numpy as np
    >>> v = np.array([4.0, 5, 3.5, 6, -99, 999, 4.5, np.nan])
    >>> v[suspect_codes(v)].tolist()
    [-99.0, 999.0]
    >>> bool(suspect_codes(np.array([-1.2, 0.3, 0.8, -0.4])).any())   # centred scores are fine
    False
    >>> bool(suspect_codes(np.array([4.0, 3.9, 4.0, 3.9, 2.1, 2.0, 4.0])).any())   # a dip
    False
    """
    v = np.asarray(values, dtype="float64")
    ok = np.isfinite(v)
    flag = np.zeros(len(v), dtype=bool)
    if ok.sum() < 2:
        return flag
    x = v[ok]
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    iqr = q3 - q1
    whole = ok & (v == np.round(v))
    digits = np.where(whole, np.abs(np.where(whole, v, 0)), 0)
    neg_shape = np.array([w and bool(_NEG_SHAPE.match(f"{int(t)}")) for t, w in
                          zip(digits, whole, strict=True)], dtype=bool)
    pos_shape = np.array([w and bool(_CODE_SHAPE.match(f"{int(t)}")) for t, w in
                          zip(digits, whole, strict=True)], dtype=bool)
    if q1 > 0:
        flag |= neg_shape & (v < 0)
    flag |= pos_shape & (v > q3 + 3 * iqr) & (v >= 2 * max(q3, 1.0))
    flag |= ok & (np.abs(v - med) >= 100 * max(abs(med), iqr, 1.0))
    return flag


def missing_hint(codes: Sequence, cli_too: bool = True) -> str:
    """The sentence telling the user how to name missing-value codes.

    Examples
    --------
    >>> missing_hint([-99.0, 999.0])
    'pass missing_values=[-99, 999] (command line: --missing -99 999)'
    """
    shown = [f"{c:g}" if isinstance(c, float) else str(c) for c in codes]
    text = f"pass missing_values=[{', '.join(shown)}]"
    if cli_too:
        text += f" (command line: --missing {' '.join(shown)})"
    return text


def keep_id_text(col: pd.Series) -> pd.Series:
    """Identifier text read from a file: numbers only when no text would change.

    ``"1", "2"`` become the integers 1 and 2; ``"001"``, ``"01"``, ``"7a"``
    keep their text (the whole column stays text, so ``"001"`` and ``"1"``
    stay two patients).

    Examples
    --------
    >>> import pandas as pd
    >>> keep_id_text(pd.Series(["1", "2", "10"])).tolist()
    [1, 2, 10]
    >>> keep_id_text(pd.Series(["001", "01", "7"])).tolist()
    ['001', '01', '7']
    """
    if not (pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col)):
        return col
    text = col.astype("string").str.strip()
    present = text.notna() & (text != "")
    canonical = text.str.fullmatch(r"-?(0|[1-9][0-9]{0,17})").fillna(False)
    if bool(present.any()) and bool(canonical[present].all()):
        out = pd.Series(pd.NA, index=col.index, dtype=object)
        out[present] = [int(t) for t in text[present]]
        if bool(present.all()):
            return out.astype("int64")
        return out
    return text.mask(~present).astype(object).where(present, np.nan)


_ISOISH = re.compile(r"^\s*\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*$")


def as_dates(col: pd.Series) -> pd.Series | None:
    """The column as datetimes if it holds dates (datetime values or ISO date text), else None.

    Examples
    --------
    >>> import pandas as pd
    >>> as_dates(pd.Series(["2024-01-05", "2024-01-12"])).dt.day.tolist()
    [5, 12]
    >>> as_dates(pd.Series([1, 2])) is None
    True
    """
    if pd.api.types.is_datetime64_any_dtype(col):
        out = col
    elif pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        return None
    else:
        present = col.dropna()
        if len(present) == 0:
            return None
        if all(hasattr(v, "year") and hasattr(v, "month") for v in present):
            out = pd.to_datetime(col, errors="coerce")
        else:
            text = present.astype(str)
            if not text.str.match(_ISOISH).all():
                return None
            out = pd.to_datetime(col.astype("string").str.strip(), errors="coerce",
                                 format="ISO8601")
            if out[col.notna()].isna().any():
                return None
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_convert(None)
    return out


def describe(where: Callable[[np.ndarray], list[str]], values: np.ndarray,
             mask: np.ndarray) -> list[str]:
    """``"<where>: <value>"`` pairs of the flagged cells."""
    return [f"{w}: {v:g}" for w, v in zip(where(mask), values[mask], strict=True)]
