"""Summaries of sudden changes: one change per patient, and suddengains' ``describe_sg``."""

from __future__ import annotations

from typing import Literal

import pandas as pd

__all__ = ["describe_sudden_changes", "select_changes"]

_SELECT_METHODS = ("first", "last", "smallest", "largest")


# --------------------------------------------------------------------------- selection


def select_changes(
    changes: pd.DataFrame,
    method: Literal["first", "last", "smallest", "largest"] = "first",
) -> pd.DataFrame:
    """Keep one sudden change per patient.

    Parameters
    ----------
    changes : DataFrame
        The ``changes`` table of :func:`sudden_changes`.
    method : {"first", "last", "smallest", "largest"}
        Earliest or latest change, or the one with the smallest or largest
        ``magnitude``; ties go to the earliest.

    Returns
    -------
    DataFrame
        The selected rows, in the original order.

    Examples
    --------
    >>> import pandas as pd
    >>> from alliancetrack import select_changes
    >>> ch = pd.DataFrame({"patient": [1, 1, 1, 2], "pre_session": [2, 5, 8, 3],
    ...                    "magnitude": [9.0, 12.0, 12.0, 8.0]})
    >>> select_changes(ch, "largest")
       patient  pre_session  magnitude
    1        1            5       12.0
    3        2            3        8.0
    """
    if method not in _SELECT_METHODS:
        raise ValueError(f"method must be one of {_SELECT_METHODS}, got {method!r}.")
    missing = [c for c in ("patient", "pre_session", "magnitude") if c not in changes]
    if missing:
        raise ValueError(f"changes lacks column(s) {missing}; pass the table from sudden_changes.")
    if method in ("first", "last"):
        order = changes.sort_values("pre_session", ascending=method == "first", kind="stable")
    else:
        order = changes.sort_values(["magnitude", "pre_session"],
                                    ascending=[method == "smallest", True], kind="stable")
    return order.groupby("patient", sort=False, dropna=False).head(1).sort_index()


# --------------------------------------------------------------------------- description


def describe_sudden_changes(
    intervals: pd.DataFrame,
    changes: pd.DataFrame,
    select: Literal["first", "last", "smallest", "largest"] = "first",
) -> pd.DataFrame:
    """Summarise sudden changes per change and per person.

    The ``per_change`` row describes all changes (suddengains' ``describe_sg``
    on ``create_bysg``); the ``per_person`` row one change per patient chosen
    with :func:`select_changes` (``describe_sg`` on ``create_byperson``).
    Percentages are unrounded (suddengains rounds to 2 decimals).

    Parameters
    ----------
    intervals, changes : DataFrame
        The two tables from :func:`sudden_changes`.
    select : {"first", "last", "smallest", "largest"}
        Which change represents a patient with several.

    Returns
    -------
    DataFrame
        Index ``per_change, per_person``; columns ``n_patients``,
        ``n_intervals``, ``n_intervals_testable`` (sudden is not NA),
        ``n_patients_with_change``, ``pct_patients_with_change``,
        ``n_patients_multiple``, ``pct_patients_multiple``, ``n_changes_total``,
        ``n_changes`` (changes summarised on the row), ``pct_changes_in_multiple``
        (share of those from patients with several), ``n_reversed``,
        ``pct_reversed``, ``magnitude_mean``, ``magnitude_sd``.

    Examples
    --------
    >>> import pandas as pd, alliancetrack as at
    >>> df = pd.DataFrame({"patient": [1] * 6 + [2] * 6, "session": list(range(1, 7)) * 2,
    ...                    "alliance": [35, 37, 23, 23, 24, 21, 30, 31, 30, 31, 30, 31]})
    >>> summary = at.describe_sudden_changes(*at.sudden_changes(df))
    >>> summary[["n_patients", "n_changes", "pct_patients_with_change", "magnitude_mean"]]
                n_patients  n_changes  pct_patients_with_change  magnitude_mean
    per_change           2          1                      50.0            14.0
    per_person           2          1                      50.0            14.0
    """
    n_patients = int(intervals["patient"].nunique(dropna=False))
    n_intervals = len(intervals)
    n_testable = int(intervals["sudden"].notna().sum())
    per_patient = changes.groupby("patient", sort=False, dropna=False).size()
    n_with = int(len(per_patient))
    n_multiple = int((per_patient > 1).sum())
    selected = select_changes(changes, select) if len(changes) else changes

    def _pct(a: float, b: float) -> float:
        return float(100.0 * a / b) if b else float("nan")

    def _row(ch: pd.DataFrame) -> dict:
        in_multiple = ch["patient"].map(per_patient).gt(1).sum() if len(ch) else 0
        n_rev = int(ch["reversal"].astype(bool).sum()) if len(ch) else 0
        mag = ch["magnitude"].astype("float64")
        return {
            "n_patients": n_patients,
            "n_intervals": n_intervals,
            "n_intervals_testable": n_testable,
            "n_patients_with_change": n_with,
            "pct_patients_with_change": _pct(n_with, n_patients),
            "n_patients_multiple": n_multiple,
            "pct_patients_multiple": _pct(n_multiple, n_patients),
            "n_changes_total": len(changes),
            "n_changes": len(ch),
            "pct_changes_in_multiple": _pct(in_multiple, len(ch)),
            "n_reversed": n_rev,
            "pct_reversed": _pct(n_rev, len(ch)),
            "magnitude_mean": float(mag.mean()) if len(ch) else float("nan"),
            "magnitude_sd": float(mag.std(ddof=1)) if len(ch) > 1 else float("nan"),
        }

    return pd.DataFrame([_row(changes), _row(selected)], index=["per_change", "per_person"])
