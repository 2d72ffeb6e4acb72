"""Core sub-commands: ``detect``, ``predictors``, ``presets``, ``demo``."""

from __future__ import annotations

import argparse
from pathlib import Path

from alliancetrack.cli.common import (
    RULE_FIELDS,
    add_data_arguments,
    load_data,
    parse_overrides,
    write_table,
)
from alliancetrack.cli.engine import add_engine_arguments, run_dask
from alliancetrack.detection.detect import detect_episodes
from alliancetrack.detection.rules import PRESETS
from alliancetrack.errors import AllianceDataError
from alliancetrack.predictors import episode_predictors

__all__ = ["register"]



def _add_method_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", choices=["rules", "changepoint"], default="rules",
                   help="dip-and-recovery rules (default) or change-point detection")
    p.add_argument("--rule", default="stiles-2sd", choices=sorted(PRESETS),
                   help="rule preset (default stiles-2sd); see `alliancetrack presets`")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", dest="overrides",
                   help="override a rule field, e.g. --set threshold=1.5 --set repair_window=3")
    p.add_argument("--out", default=None, help="output CSV (default: standard output)")


def _episodes(args, data):
    if args.method == "changepoint":
        if args.overrides:
            raise AllianceDataError("--set applies to --method rules only.")
        return detect_episodes(data, method="changepoint")
    return detect_episodes(data, method="rules", rule=args.rule,
                           **parse_overrides(args.overrides))


def run_detect(args: argparse.Namespace) -> int:
    """``alliancetrack detect``: write the episode table."""
    if args.engine == "dask":
        return run_dask(args, "detect")
    data = load_data(args)
    episodes = _episodes(args, data)
    write_table(episodes, args.out)
    return 0


def run_predictors(args: argparse.Namespace) -> int:
    """``alliancetrack predictors``: write one row per patient."""
    if args.engine == "dask":
        return run_dask(args, "predictors")
    data = load_data(args)
    write_table(episode_predictors(data, _episodes(args, data)), args.out)
    return 0


def run_presets(args: argparse.Namespace) -> int:
    """``alliancetrack presets``: print every preset with its parameters and citation."""
    for name, rule in PRESETS.items():
        print(f"{name}\n  {rule!r}\n  {rule.describe()}\n  {rule.citation}\n")
    print("Override fields with --set FIELD=VALUE (detect, predictors) or "
          f"rule.replace(...) in Python. Fields: {', '.join(RULE_FIELDS)}.")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """``alliancetrack demo``: the whole pipeline on the example data."""
    from alliancetrack.cli.demo import run_demo as demo  # noqa: PLC0415 - heavy imports only when used

    demo(Path(args.out), quiet=args.quiet)
    return 0


def register(subparsers) -> None:
    """Add ``detect``, ``predictors``, ``presets`` and ``demo``."""
    p = subparsers.add_parser("detect", help="detect rupture-repair episodes",
                              description="Detect rupture-repair episodes and write the episode "
                              "table (one row per episode) as CSV.")
    add_data_arguments(p)
    _add_method_arguments(p)
    add_engine_arguments(p)
    p.set_defaults(func=run_detect)

    p = subparsers.add_parser("predictors", help="per-patient episode predictors",
                              description="Detect episodes and write one row per patient: "
                              "counts of repaired and unrepaired ruptures, depth, timing, and "
                              "the reason for any exclusion.")
    add_data_arguments(p)
    _add_method_arguments(p)
    add_engine_arguments(p)
    p.set_defaults(func=run_predictors)

    p = subparsers.add_parser("presets", help="list rule presets with parameters and citations")
    p.set_defaults(func=run_presets)

    p = subparsers.add_parser("demo", help="run the whole pipeline on the bundled example data",
                              description="Run detection (every preset and change points), "
                              "predictors and the outcome model on the bundled example cohort, "
                              "and write tables and figures to a folder.")
    p.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=run_demo)


