"""``alliancetrack strategies``: link 3RS resolution strategies to rupture episodes.

Reads 3RS codes with a strategy column (one or more files, concatenated: e.g.
the marker codes and the strategy codes), the episodes (``--episodes``, any
method; default: the observer episodes of the codes), writes
``strategies_linked.csv`` (:func:`alliancetrack.link_strategies`),
``strategy_repair_rates.csv`` and ``strategy_repair_rates.png`` and, with
``--effects``, the binomial GLMM (:func:`alliancetrack.strategy_effects`):
``strategy_effects.csv`` and ``strategy_effects.txt``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pandas as pd

from alliancetrack.detection.detect import detect_episodes
from alliancetrack.detection.strategies import link_strategies, repair_rates
from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.files import read_table
from alliancetrack.reading.reported import read_3rs

__all__ = ["register", "run"]


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``strategies`` sub-command.

    Examples
    --------
    >>> import argparse
    >>> from alliancetrack.cli import strategies
    >>> parser = argparse.ArgumentParser(prog="alliancetrack")
    >>> _ = strategies.register(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["strategies", "codes.csv", "--window", "1", "--out", "o"])
    >>> args.codes, args.window, args.use
    (['codes.csv'], 1, 'any')
    """
    p = subparsers.add_parser(
        "strategies",
        help="link 3RS resolution strategies to rupture episodes; repair by strategy class",
        description="Link the resolution strategies coded with the 3RS to rupture episodes "
        "(from any source) and relate them to repair. See docs/strategies.md.",
    )
    p.add_argument("codes", nargs="+", help="3RS code file(s) with a strategy column; several "
                   "files (e.g. markers and strategies) are concatenated")
    p.add_argument("--episodes", default=None,
                   help="episode table (CSV/Parquet from `alliancetrack detect`); default: the "
                   "observer episodes of the codes")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--window", type=int, default=0,
                   help="sessions after the rupture whose strategies count (default 0)")
    for opt, default in (("patient", "patient"), ("session", "session"), ("segment", "segment"),
                         ("type", "type"), ("significance", "significance"),
                         ("strategy", "strategy")):
        p.add_argument(f"--{opt}", default=default, help=f"{opt} column (default: {default})")
    for opt in ("marker", "resolution", "therapist", "strategy-significance"):
        p.add_argument(f"--{opt}", default=None, help=f"{opt} column (optional)")
    p.add_argument("--patient-data", default=None,
                   help="per-patient file (patient column; therapist, moderators) merged into "
                   "the linked table")
    p.add_argument("--effects", action="store_true",
                   help="fit the binomial GLMM of repair on strategy class")
    p.add_argument("--moderators", nargs="*", default=[], metavar="COL",
                   help="moderator columns (0/1 or numeric) interacting with the classes")
    p.add_argument("--groups", default="therapist",
                   help="therapist column for the random intercept ('none' for none)")
    p.add_argument("--use", choices=["any", "count"], default="any",
                   help="any use of a class, or the number of uses (default any)")
    p.set_defaults(func=run)
    return p


def _codes(args):
    frames = [read_table(f) for f in args.codes]
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    for col in (args.type, args.significance):
        if col not in df.columns:
            df[col] = pd.NA  # a file of strategies only: no markers coded in it
    return read_3rs(df, patient=args.patient, session=args.session, segment=args.segment,
                    marker_type=args.type, marker=args.marker, significance=args.significance,
                    resolution=args.resolution, therapist=args.therapist,
                    strategy=args.strategy, strategy_significance=args.strategy_significance)


def run(args: argparse.Namespace) -> int:
    """Run ``alliancetrack strategies``; returns the exit status."""
    codes = _codes(args)
    if args.episodes is None:
        episodes = detect_episodes(codes, method="observer")
    else:
        episodes = read_table(args.episodes)
    linked = link_strategies(episodes, codes, window=args.window)
    if args.patient_data is not None:
        extra = read_table(args.patient_data)
        if "patient" not in extra.columns:
            raise AllianceDataError(f"{args.patient_data}: no 'patient' column.")
        extra = extra.drop_duplicates("patient")
        clash = [c for c in extra.columns if c != "patient" and c in linked.columns]
        linked = linked.drop(columns=clash).merge(extra, on="patient", how="left")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    linked.to_csv(out / "strategies_linked.csv", index=False)
    by = args.moderators[0] if args.moderators else None
    rates = repair_rates(linked, by=by)
    rates.to_csv(out / "strategy_repair_rates.csv", index=False)
    coded = int(linked["n_strategies"].notna().sum())
    print(f"{len(linked)} episodes, {coded} with a coded rupture session; wrote "
          f"strategies_linked.csv and strategy_repair_rates.csv to {out}", file=sys.stderr)
    if coded:
        from alliancetrack.plotting.strategies import plot_strategy_repair  # noqa: PLC0415 - plotnine only when used

        plot_strategy_repair(linked, by=by).save(out / "strategy_repair_rates.png", dpi=150,
                                                 verbose=False)
    if args.effects:
        from alliancetrack.models.strategies import strategy_effects  # noqa: PLC0415 - heavy imports only when used

        groups = None if args.groups.lower() == "none" else args.groups
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            eff = strategy_effects(linked, moderators=args.moderators, groups=groups,
                                   use=args.use)
        eff.table.to_csv(out / "strategy_effects.csv", index=False)
        notes = [f"warning: {w.message}" for w in caught]
        (out / "strategy_effects.txt").write_text(eff.summary() + "\n" + "\n".join(notes) + "\n")
        print(eff.summary().split("\n\nGeneralised")[0], file=sys.stderr)
        for n in notes:
            print(n, file=sys.stderr)
    return 0
