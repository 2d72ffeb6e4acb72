"""Options shared by the sub-commands that read alliance data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.alliance import AllianceData, read_alliance

__all__ = ["RULE_FIELDS", "add_data_arguments", "load_data", "parse_overrides", "write_table"]


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """Add INPUT and the column options (``--patient --session --score`` ...)."""
    p.add_argument("input", help="data file (.csv, .tsv, .parquet, .xlsx, .sav, .dta)")
    p.add_argument("--patient", default="patient", help="patient id column (default: patient)")
    p.add_argument("--session", default="session", help="session column (default: session)")
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


def load_data(args: argparse.Namespace) -> AllianceData:
    """Read and validate the input named on the command line."""
    data = read_alliance(
        args.input, patient=args.patient, session=args.session, score=args.score,
        therapist=args.therapist, rater=args.rater, scale=args.scale,
        wide=args.wide or args.session_columns is not None,
        session_columns=args.session_columns, min_timepoints=args.min_timepoints,
    )
    if args.select_rater is not None:
        data = data.select_rater(args.select_rater)
    return data


def write_table(df: pd.DataFrame, out: str | None) -> None:
    """Write a table as CSV to ``out`` (a file) or to standard output."""
    if out is None or out == "-":
        df.to_csv(sys.stdout, index=False)
        return
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
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
