"""Read tabular files by suffix, with a clear message when a format library is missing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from alliancetrack.errors import AllianceDataError

__all__ = ["read_table", "SUPPORTED_SUFFIXES"]

SUPPORTED_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq", ".xlsx", ".xls", ".sav",
                      ".dta")

_EXTRA = {
    ".parquet": ("pyarrow", "parquet"),
    ".pq": ("pyarrow", "parquet"),
    ".xlsx": ("openpyxl", "excel"),
    ".xls": ("openpyxl", "excel"),
    ".sav": ("pyreadstat", "spss"),
}


def _require(module: str, extra: str, suffix: str) -> None:
    try:
        __import__(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise AllianceDataError(
            f"Reading {suffix} files needs the optional package {module!r}: "
            f"pip install 'alliancetrack[{extra}]'"
        ) from exc


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a data file into a DataFrame, choosing the reader by suffix.

    Supported: ``.csv``, ``.tsv``/``.txt`` (tab separated), ``.parquet``,
    ``.xlsx``, ``.sav`` (SPSS), ``.dta`` (Stata).

    Examples
    --------
    >>> import tempfile, os, pandas as pd
    >>> from alliancetrack.reading.files import read_table
    >>> p = os.path.join(tempfile.mkdtemp(), "x.csv")
    >>> pd.DataFrame({"a": [1, 2]}).to_csv(p, index=False)
    >>> read_table(p)["a"].tolist()
    [1, 2]
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise AllianceDataError(
            f"Cannot read {path.name}: unknown suffix {suffix!r}. "
            f"Supported: {', '.join(SUPPORTED_SUFFIXES)}; or read it yourself and pass a DataFrame."
        )
    if not path.exists():
        raise AllianceDataError(f"File not found: {path}")
    if suffix in _EXTRA:
        _require(*_EXTRA[suffix], suffix)
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in (".tsv", ".txt"):
            return pd.read_csv(path, sep="\t")
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".xlsx", ".xls"):
            return pd.read_excel(path)
        if suffix == ".sav":
            return pd.read_spss(path, convert_categoricals=False)
        return pd.read_stata(path, convert_categoricals=False)
    except AllianceDataError:
        raise
    except Exception as exc:  # a parser error: say which file
        raise AllianceDataError(f"Could not read {path}: {exc}") from exc
