"""Read tabular files by suffix, with a clear message when a format library is missing.

CSV and text files: the delimiter is sniffed (comma, semicolon, tab, bar) unless
``sep`` is given, identifier columns are read as text (so ``"001"`` stays
``"001"``), and a file that does not decode or parse raises one
:class:`~alliancetrack.errors.AllianceDataError` that says which option to use.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from alliancetrack.errors import AllianceDataError

__all__ = ["read_table", "load_source", "SUPPORTED_SUFFIXES"]

SUPPORTED_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq", ".xlsx", ".xls", ".sav",
                      ".dta")

_EXTRA = {
    ".parquet": ("pyarrow", "parquet"),
    ".pq": ("pyarrow", "parquet"),
    ".xlsx": ("openpyxl", "excel"),
    ".xls": ("xlrd", "excel"),
    ".sav": ("pyreadstat", "spss"),
}
_DELIMITERS = ",;\t|"
_SEP_NAMES = {",": "','", ";": "';'", "\t": "'\\t'", "|": "'|'"}


def _require(module: str, extra: str, suffix: str) -> None:
    try:
        __import__(module)
    except ImportError as exc:
        what = "Excel 97-2003 (.xls) files need the reader 'xlrd'" if module == "xlrd" else \
            f"Reading {suffix} files needs the optional package {module!r}"
        also = " (or save the sheet as .xlsx)" if module == "xlrd" else ""
        raise AllianceDataError(
            f"{what}: pip install 'alliancetrack[{extra}]' or pip install 'alliancetrack[io]'"
            f"{also}."
        ) from exc


def _sniff(path: Path, encoding: str, default: str) -> str:
    try:
        with open(path, encoding=encoding, newline="") as fh:
            sample = fh.read(65536)
    except UnicodeDecodeError:
        return default  # the read itself reports the encoding problem
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        return default


def _text_hint() -> str:
    return ("Check the delimiter and encoding: pass sep=';' or encoding='latin-1' "
            "(command line: --sep ';' --encoding latin-1).")


def read_table(path: str | Path, *, text_columns: Sequence[str] = (), sep: str | None = None,
               encoding: str | None = None) -> pd.DataFrame:
    """Read a data file into a DataFrame, choosing the reader by suffix.

    Supported: ``.csv`` and ``.txt`` (delimiter sniffed), ``.tsv`` (tab),
    ``.parquet``, ``.xlsx``, ``.xls``, ``.sav`` (SPSS), ``.dta`` (Stata).

    Parameters
    ----------
    path : str or Path
        The file.
    text_columns : list of str
        Columns read as text in CSV/TXT/TSV and Excel files (identifiers).
    sep : str, optional
        Delimiter of CSV/TXT/TSV files; sniffed by default.
    encoding : str, optional
        Text encoding of CSV/TXT/TSV files (default UTF-8).

    Examples
    --------
    >>> import tempfile, os, pandas as pd
    >>> from alliancetrack.reading.files import read_table
    >>> p = os.path.join(tempfile.mkdtemp(), "x.csv")
    >>> _ = open(p, "w").write("id;score\\n001;2\\n002;3\\n")
    >>> read_table(p, text_columns=["id"])["id"].tolist()
    ['001', '002']
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
    if path.is_dir():
        raise AllianceDataError(f"{path} is a folder, not a data file.")
    if suffix in _EXTRA:
        _require(*_EXTRA[suffix], suffix)
    dtype = dict.fromkeys(text_columns, str) or None
    text = suffix in (".csv", ".tsv", ".txt")
    enc = encoding or "utf-8"
    try:
        if text:
            delim = sep or ("\t" if suffix == ".tsv" else _sniff(path, enc,
                                                               "," if suffix == ".csv" else "\t"))
            df = pd.read_csv(path, sep=delim, encoding=enc, dtype=dtype)
        elif suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        elif suffix in (".xlsx", ".xls"):
            df = pd.read_excel(path, dtype=dtype)
        elif suffix == ".sav":
            df = pd.read_spss(path, convert_categoricals=False)
        else:
            df = pd.read_stata(path, convert_categoricals=False)
    except AllianceDataError:
        raise
    except UnicodeDecodeError as exc:
        raise AllianceDataError(
            f"Could not read {path}: it is not {enc} text ({exc.reason} at byte {exc.start}). "
            "Pass the file's encoding, e.g. encoding='latin-1' (command line: --encoding latin-1)."
        ) from exc
    except LookupError as exc:
        raise AllianceDataError(f"Unknown encoding {encoding!r}: {exc}") from exc
    except Exception as exc:  # a parser error: say which file
        hint = " " + _text_hint() if text else ""
        first = " ".join(str(exc).split())
        raise AllianceDataError(f"Could not read {path}: {first}.{hint}") from exc
    if text and len(df.columns) == 1:
        head = str(df.columns[0])
        found = [_SEP_NAMES[d] for d in _DELIMITERS if d in head]
        if found:
            raise AllianceDataError(
                f"{path.name} was read as one column {head!r}: it seems to be delimited by "
                f"{' or '.join(found)}. Pass sep={found[0]} (command line: --sep {found[0]})."
            )
    return df


def load_source(source, what: str, *, text_columns: Sequence[str | None] = (),
                sep: str | None = None, encoding: str | None = None,
                ) -> tuple[pd.DataFrame, bool]:
    """The input of a reader as a DataFrame, and whether it came from a file.

    A DataFrame is used as it is; a path (str or ``os.PathLike``) is read with
    :func:`read_table`.  Anything else, duplicated column names and an empty
    table are a clear :class:`~alliancetrack.errors.AllianceDataError`.

    Examples
    --------
    >>> from alliancetrack.reading.files import load_source
    >>> try:
    ...     load_source({"patient": [1]}, "read_alliance")
    ... except ValueError as err:
    ...     print(err)
    read_alliance needs a pandas DataFrame or the path of a data file, got a dict. Wrap it: pd.DataFrame(...).
    """
    if isinstance(source, pd.DataFrame):
        df, from_file = source, False
    elif isinstance(source, (str, os.PathLike)):
        texts = [c for c in text_columns if c is not None]
        df, from_file = read_table(source, text_columns=texts, sep=sep, encoding=encoding), True
    else:
        wrap = " Wrap it: pd.DataFrame(...)." if isinstance(
            source, (dict, list, tuple, np.ndarray, pd.Series)) else ""
        raise AllianceDataError(
            f"{what} needs a pandas DataFrame or the path of a data file, got "
            f"{'None' if source is None else 'a ' + type(source).__name__}.{wrap}"
        )
    dup = df.columns[df.columns.duplicated()].unique().tolist()
    if dup:
        raise AllianceDataError(
            f"Column name(s) {dup} appear more than once in the input; rename them so that each "
            "column has its own name."
        )
    if len(df) == 0 or len(df.columns) == 0:
        raise AllianceDataError("The input has no rows; there is nothing to analyse.")
    return df, from_file
