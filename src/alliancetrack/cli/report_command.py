"""``alliancetrack report``: the whole analysis as one self-contained HTML page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from alliancetrack.cli.common import add_data_arguments, input_paths, load_data, prepare_output_dir
from alliancetrack.detection.rules import PRESETS
from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.files import read_table
from alliancetrack.reading.values import keep_id_text

__all__ = ["register", "run", "read_outcomes"]


def read_outcomes(path: str, patient: str = "patient", therapist: str | None = None,
                  sep: str | None = None, encoding: str | None = None) -> pd.DataFrame:
    """Read the outcomes file (any format of :func:`read_alliance`); ids keep their text."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"outcomes file not found: {path}")
    df = read_table(p, text_columns=[c for c in (patient, therapist) if c], sep=sep,
                    encoding=encoding)
    if patient not in df:
        raise AllianceDataError(
            f"The outcomes file {p.name} has no patient column {patient!r} (columns: "
            f"{', '.join(map(str, df.columns))}).")
    df = df.assign(**{c: keep_id_text(df[c]) for c in (patient, therapist) if c and c in df})
    df = df.rename(columns={patient: "patient"})
    if therapist is not None and therapist in df and therapist != "therapist":
        df = df.rename(columns={therapist: "therapist"})
    return df


def run(args: argparse.Namespace) -> int:
    from alliancetrack.report.html import REPORT_FILES, write_report  # noqa: PLC0415 - plotting imports only when used

    if args.outcomes is None and (args.outcome or args.baseline):
        raise AllianceDataError("--outcome/--baseline need --outcomes FILE.")
    outcomes = None
    if args.outcomes is not None:
        outcomes = read_outcomes(args.outcomes, args.patient, args.therapist)
        for col in (args.outcome or "bdi_post", args.baseline):
            if col and col not in outcomes:
                raise AllianceDataError(
                    f"The outcomes file has no column {col!r} (columns: "
                    f"{', '.join(map(str, outcomes.columns))}).")
    prepare_output_dir(args.out, REPORT_FILES, args.force, input_paths(args))
    data = load_data(args)
    paths = write_report(
        data, args.out, outcomes=outcomes, outcome=args.outcome or "bdi_post",
        baseline=args.baseline, methods=args.methods, primary=args.primary,
        tolerance=args.tolerance, progress=not args.quiet,
    )
    if not args.quiet:
        print(f"wrote {paths['report']} and {len(paths) - 1} tables and figures to {args.out}",
              file=sys.stderr)
    return 0


def register(subparsers) -> None:
    """Add ``report``."""
    p = subparsers.add_parser(
        "report", help="write a self-contained HTML report of the whole analysis",
        description="Detect episodes with every rule preset and change points, compare them, "
        "compute per-patient predictors, fit the outcome model (with --outcomes) and write "
        "report.html (figures embedded) plus the CSV tables it shows to --out.")
    add_data_arguments(p)
    p.add_argument("--outcomes", default=None, metavar="FILE",
                   help="one row per patient: patient id (same column name as --patient), "
                   "outcome, baseline and optionally therapist")
    p.add_argument("--outcome", default=None, help="outcome column (default bdi_post)")
    p.add_argument("--baseline", default=None, help="baseline column of the outcome")
    p.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                   choices=sorted(PRESETS) + ["changepoint", "hmm"],
                   help="methods to run (default: every preset, changepoint and hmm; hmm "
                        "is not run on fewer than 10 patients)")
    p.add_argument("--primary", default="stiles-2sd",
                   help="method whose predictors feed the model and figures (default "
                   "stiles-2sd)")
    p.add_argument("--tolerance", type=float, default=1,
                   help="sessions two methods' ruptures may differ by and match (default 1)")
    p.add_argument("--out", default="alliancetrack-report", help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    p.set_defaults(func=run)
