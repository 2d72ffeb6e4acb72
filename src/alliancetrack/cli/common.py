"""Options shared by the sub-commands that read alliance data, and safe output paths.

Outputs never overwrite an input file; an existing output file or a non-empty
output folder is refused unless ``--force`` is given, and then only the files
the command itself writes are replaced.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.alliance import AllianceData, read_alliance

__all__ = ["RULE_FIELDS", "add_data_arguments", "input_paths", "load_data", "parse_overrides",
           "prepare_output_dir", "prepare_output_file", "write_table"]


def _code(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """Add INPUT, the column options (``--patient --session --score`` ...) and ``--force``."""
    p.add_argument("input", help="data file (.csv, .txt, .tsv, .parquet, .xlsx, .xls, .sav, .dta)")
    p.add_argument("--patient", default="patient", help="patient id column (default: patient)")
    p.add_argument("--session", default="session",
                   help="session column: numbers or dates (default: session)")
    p.add_argument("--score", default="alliance", help="alliance score column (default: alliance)")
    p.add_argument("--therapist", default=None, help="therapist id column")
    p.add_argument("--rater", default=None, help="rater column (then give --select-rater)")
    p.add_argument("--select-rater", default=None, help="rater perspective to analyse")
    p.add_argument("--scale", default=None,
                   help="instrument (wai-sr, wai-s, srs, arm-12, calpas, haq-ii): range check "
                   "and reliability")
    p.add_argument("--wide", action="store_true", help="one row per patient, a column per session")
    p.add_argument("--session-columns", nargs="+", default=None, metavar="COL",
                   help="wide data: the score columns, in session order (implies --wide)")
    p.add_argument("--min-timepoints", type=int, default=3,
                   help="patients with fewer rated sessions are excluded (default 3)")
    p.add_argument("--missing", nargs="*", type=_code, default=None, metavar="CODE",
                   help="missing-value codes of the score column, e.g. --missing -99 999 "
                   "(--missing alone: there are none, analyse extreme scores as they are)")
    p.add_argument("--sep", default=None,
                   help="delimiter of a CSV/TXT file (default: sniffed from the file)")
    p.add_argument("--encoding", default=None, help="text encoding of a CSV/TXT file "
                   "(default utf-8; e.g. latin-1)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing output file, or this command's files in a "
                   "non-empty output folder")


def load_data(args: argparse.Namespace) -> AllianceData:
    """Read and validate the input; keep a summary line (analysed/excluded) for stderr.

    Raises an :class:`AllianceDataError` when every patient is excluded.
    """
    sep = args.sep.encode().decode("unicode_escape") if args.sep else None
    data = read_alliance(
        args.input, patient=args.patient, session=args.session, score=args.score,
        therapist=args.therapist, rater=args.rater, scale=args.scale,
        wide=args.wide or args.session_columns is not None,
        session_columns=args.session_columns, min_timepoints=args.min_timepoints,
        missing_values=args.missing, sep=sep, encoding=args.encoding,
    )
    if args.select_rater is not None:
        data = data.select_rater(args.select_rater)
    n_all, n_ex = len(data.patients), len(data.excluded)
    reasons = data.excluded["reason"].value_counts()
    why = "; ".join(f"{r}: {n}" for r, n in reasons.items())
    if n_all and n_ex == n_all:
        raise AllianceDataError(
            f"every patient ({n_all}) was excluded ({why}); nothing to analyse. Check the "
            "columns and codes, or lower --min-timepoints."
        )
    # printed by main() once the command has succeeded (an error stays one line)
    args.summary_line = (f"alliancetrack: {n_all - n_ex} patient(s) analysed, {n_ex} excluded"
                         + (f" ({why})" if n_ex else ""))
    return data


def input_paths(args: argparse.Namespace) -> list[Path]:
    """The files a command reads (its input and, for ``report``, the outcomes)."""
    paths = [getattr(args, "input", None), getattr(args, "outcomes", None)]
    return [Path(p) for p in paths if p]


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def prepare_output_file(out: str, force: bool, inputs: Iterable[Path]) -> Path:
    """Check that ``out`` may be written: not an input, not a folder, not existing (unless forced)."""
    path = Path(out)
    for src in inputs:
        if _same(path, src):
            raise AllianceDataError(f"--out {out} is the input file; refusing to overwrite it. "
                                    "Choose another output name.")
    if path.is_dir():
        raise AllianceDataError(f"--out {out} is a folder; give a file name (e.g. "
                                f"{Path(out) / 'episodes.csv'}).")
    if path.exists() and not force:
        raise AllianceDataError(f"--out {out} exists; pass --force to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def prepare_output_dir(out: str | Path, owned: Iterable[str], force: bool,
                       inputs: Iterable[Path] = ()) -> Path:
    """Check an output folder; with ``force`` remove only the files listed in ``owned``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "mine.csv").write_text("x"); _ = (d / "notes.txt").write_text("keep")
    >>> _ = prepare_output_dir(d, ["mine.csv"], force=True)
    >>> sorted(p.name for p in d.iterdir())
    ['notes.txt']
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise AllianceDataError(f"--out {out} is a file; give a folder name.")
    owned = list(owned)
    ins = list(inputs)
    for name in owned:
        if any(_same(path / name, src) for src in ins):
            raise AllianceDataError(f"--out {out} holds the input file {name}; refusing to "
                                    "overwrite it. Choose another output folder.")
    if path.is_dir() and any(path.iterdir()):
        if not force:
            raise AllianceDataError(
                f"--out {out} is not empty; choose a new folder, or pass --force to replace the "
                "files this command writes there.")
        for name in owned:
            f = path / name
            if f.is_file():
                f.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_table(df: pd.DataFrame, out: str | None, force: bool = False,
                inputs: Iterable[Path] = ()) -> None:
    """Write a table as CSV to ``out`` (a file, checked first) or to standard output."""
    if out is None or out == "-":
        df.to_csv(sys.stdout, index=False)
        return
    path = prepare_output_file(out, force, inputs)
    df.to_csv(path, index=False)
    print(f"wrote {len(df)} rows to {path}", file=sys.stderr)


#: Rule fields ``--set FIELD=VALUE`` can override, with their types.
RULE_FIELDS = {
    "reference": str, "reference_sessions": int, "threshold": float, "unit": str,
    "decline_sessions": int, "recovery_fraction": float, "repair_window": int,
    "min_timepoints": int,
}


def parse_overrides(items: list[str] | None) -> dict:
    """``--set FIELD=VALUE`` items as rule field overrides."""
    out: dict = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in RULE_FIELDS:
            raise AllianceDataError(
                f"--set {item!r}: expected FIELD=VALUE with FIELD one of {sorted(RULE_FIELDS)}."
            )
        if key == "repair_window" and value.strip().lower() in ("none", ""):
            out[key] = None
            continue
        try:
            out[key] = RULE_FIELDS[key](value)
        except ValueError:
            raise AllianceDataError(f"--set {item!r}: {value!r} is not a valid {key}.") from None
    return out
