"""Design matrices and data preparation for :func:`~alliancetrack.fit_mixed`.

The fixed-effects design is built by patsy (as statsmodels builds it); the
random-effects structure by :mod:`alliancetrack.models.random_effects`.  Rows
with a missing value in any model variable are dropped (lme4's ``na.omit``)
and counted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from alliancetrack.errors import AllianceDataError

__all__ = ["fixed_design", "formula_columns", "model_rows"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def formula_columns(formula: str, extra: Sequence[str | None] = ()) -> list[str]:
    """Every name-like token of ``formula`` and ``extra`` (candidates for data columns)."""
    names = set(_NAME.findall(formula))
    for e in extra:
        if e:
            names |= set(_NAME.findall(e))
    return sorted(names)


def model_rows(data: pd.DataFrame, formula: str, extra: Sequence[str | None],
               required: Sequence[str]) -> tuple[pd.DataFrame, int]:
    """The model's columns of ``data`` without rows that miss any of them; and the count dropped."""
    cols = [c for c in formula_columns(formula, extra) if c in data.columns]
    used = list(dict.fromkeys([*cols, *required]))
    rows = data[used].dropna()
    return rows.reset_index(drop=True), len(data) - len(rows)


class Opaque:
    """Holds an object that can be neither copied nor pickled (a patsy DesignInfo)."""

    def __init__(self, obj: Any):
        self.obj = obj

    def __deepcopy__(self, memo: dict) -> Opaque:
        return self

    def __reduce__(self) -> tuple:
        return (Opaque, (None,))


def fixed_design(
    formula: str, data: pd.DataFrame, columns: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, list[str], Any]:
    """``X``, ``y``, fixed-effect names and patsy's DesignInfo for ``response ~ rhs``."""
    import patsy

    try:
        yd, Xd = patsy.dmatrices(formula, data, return_type="matrix", NA_action="raise")
    except patsy.PatsyError as exc:
        raise AllianceDataError(
            f"could not build the model from formula {formula!r}: {exc}. Check that every "
            f"variable is a column of the data (columns: {list(columns)})."
        ) from exc
    if yd.shape[1] != 1:
        raise AllianceDataError(
            f"the outcome of {formula!r} must be one numeric column (got {yd.shape[1]} columns)."
        )
    X = np.asarray(Xd, float)
    rank = np.linalg.matrix_rank(X if len(X) <= 20000 else X.T @ X)
    if rank < X.shape[1]:
        raise AllianceDataError(
            f"the fixed effects of {formula!r} are collinear (design rank "
            f"{rank} < {X.shape[1]} columns: {Xd.design_info.column_names})."
        )
    return X, np.asarray(yd, float)[:, 0], list(Xd.design_info.column_names), Xd.design_info
