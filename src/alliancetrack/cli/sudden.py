"""``alliancetrack sudden``: sudden changes (Tang & DeRubeis criteria, suddengains-compatible).

Reads long data (``--patient --session --score``) or wide data (``--wide``,
optionally ``--session-columns``), runs :func:`alliancetrack.sudden_changes`,
prints a summary and, with ``--out DIR``, writes ``sudden_intervals.csv``,
``sudden_changes.csv`` and ``sudden_summary.csv``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alliancetrack.cli.common import add_data_arguments, load_data

__all__ = ["register", "run"]


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``sudden`` sub-command to an argparse sub-parser collection.

    Examples
    --------
    >>> import argparse
    >>> from alliancetrack.cli import sudden
    >>> parser = argparse.ArgumentParser(prog="alliancetrack")
    >>> _ = sudden.register(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["sudden", "data.csv", "--direction", "increase"])
    >>> args.direction, args.cutoff, args.func is sudden.run
    ('increase', 7.0, True)
    """
    p = subparsers.add_parser(
        "sudden",
        help="sudden changes (Tang & DeRubeis criteria, as R's suddengains)",
        description="Find sudden changes between consecutive sessions with the Tang & DeRubeis "
        "(1999) criteria, reproducing the R package suddengains by default. "
        "See docs/sudden-changes.md.",
    )
    add_data_arguments(p)
    p.add_argument("--direction", choices=["decrease", "increase"], default="decrease",
                   help="decrease = drops (alliance rupture; symptom gain); default decrease")
    p.add_argument("--cutoff", type=float, default=7.0,
                   help="criterion 1: minimum change (default 7; see reliable_change_cutoff)")
    p.add_argument("--no-crit1", action="store_true", help="switch criterion 1 off")
    p.add_argument("--pct", type=float, default=0.25,
                   help="criterion 2: minimum change relative to the pre score (default 0.25)")
    p.add_argument("--no-crit2", action="store_true", help="switch criterion 2 off")
    p.add_argument("--crit2-method", choices=["suddengains", "relative"], default="suddengains",
                   help="criterion 2 for increases (default suddengains)")
    p.add_argument("--no-crit3", action="store_true", help="switch criterion 3 off")
    p.add_argument("--no-adjust", action="store_true",
                   help="criterion 3: use --critical-value instead of the df-adjusted t quantile")
    p.add_argument("--alpha", type=float, default=0.05, help="criterion 3 alpha (default 0.05)")
    p.add_argument("--critical-value", type=float, default=2.776,
                   help="criterion 3 critical value with --no-adjust (default 2.776)")
    p.add_argument("--crit3-method", choices=["suddengains", "t-test"], default="suddengains",
                   help="criterion 3 statistic (default suddengains)")
    p.add_argument("--baseline", action="store_true",
                   help="the first session is a pre-treatment baseline (identify_sg_1to2)")
    p.add_argument("--session-gaps", choices=["missing", "ignore"], default="missing",
                   help="missing session numbers are missing scores (default) or skipped")
    p.add_argument("--select", choices=["first", "last", "smallest", "largest"],
                   default="first", help="change representing a patient in the summary")
    p.add_argument("--out", default=None, metavar="DIR", help="write CSV tables to DIR")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``alliancetrack sudden``; returns the exit code.

    Raises :class:`~alliancetrack.errors.AllianceDataError` for unusable data
    (the main CLI prints it as one line).
    """
    from alliancetrack.detection.sudden import describe_sudden_changes, sudden_changes  # noqa: PLC0415 (scipy)

    data = load_data(args)
    intervals, changes = sudden_changes(
        data,
        direction=args.direction,
        cutoff=None if args.no_crit1 else args.cutoff,
        pct=None if args.no_crit2 else args.pct,
        crit3=not args.no_crit3,
        crit3_adjust=not args.no_adjust,
        alpha=args.alpha,
        critical_value=args.critical_value,
        crit3_method=args.crit3_method,
        first_session_baseline=args.baseline,
        crit2_method=args.crit2_method,
        session_gaps=args.session_gaps,
    )
    summary = describe_sudden_changes(intervals, changes, select=args.select)
    pc = summary.loc["per_change"]
    print(
        f"{len(changes)} sudden {args.direction}(s) in {int(pc['n_patients_with_change'])} of "
        f"{int(pc['n_patients'])} patients ({int(pc['n_intervals_testable'])} of "
        f"{int(pc['n_intervals'])} intervals testable); {int(pc['n_reversed'])} reversed."
    )
    shown = summary.T.astype("float64").map(
        lambda v: f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}")
    print(shown.to_string())
    if args.out is not None:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        intervals.to_csv(out / "sudden_intervals.csv", index=False)
        changes.to_csv(out / "sudden_changes.csv", index=False)
        summary.to_csv(out / "sudden_summary.csv", index_label="level")
        print(f"Wrote sudden_intervals.csv, sudden_changes.csv, sudden_summary.csv to {out}")
    return 0
