"""Core sub-commands: ``detect``, ``predictors``, ``presets``, ``demo``."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

from alliancetrack.cli.common import (
    RULE_FIELDS,
    add_data_arguments,
    input_paths,
    load_data,
    parse_overrides,
    prepare_output_file,
    write_table,
)
from alliancetrack.cli.engine import add_engine_arguments, run_dask
from alliancetrack.detection.detect import detect_episodes
from alliancetrack.detection.rules import PRESETS
from alliancetrack.errors import AllianceDataError
from alliancetrack.predictors import episode_predictors

__all__ = ["register"]



def _add_method_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", choices=list(METHODS), default="rules",
                   help="dip-and-recovery rules (default), change-point detection, sudden "
                        "changes (Tang & DeRubeis) or the cohort hidden Markov model (hmm: "
                        "episodes with a posterior probability; needs at least 10 patients)")
    p.add_argument("--rule", default="stiles-2sd", choices=sorted(PRESETS),
                   help="rule preset (default stiles-2sd); see `alliancetrack presets`")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", dest="overrides",
                   help="override a rule field, e.g. --set threshold=1.5 --set repair_window=3; "
                        "with --method sudden or hmm, a detector parameter, e.g. "
                        "--set n_starts=5 (values are Python literals)")
    p.add_argument("--out", default=None, help="output CSV (default: standard output)")


#: ``--method`` choices: the rules, change points, sudden changes and the cohort HMM.
METHODS = ("rules", "changepoint", "sudden", "hmm")


def _detector_options(items: list[str] | None, method: str) -> dict:
    """``--set FIELD=VALUE`` items as detector parameters (values read as Python literals).

    The detector checks the names and values (a clear error names the bad one).

    Examples
    --------
    >>> _detector_options(["n_starts=5", "dip_unit=noise"], "hmm")
    {'n_starts': 5, 'dip_unit': 'noise'}
    """
    out: dict = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise AllianceDataError(f"--set {item!r}: expected FIELD=VALUE for --method {method}.")
        try:
            out[key] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key] = value.strip()
    return out


def _episodes(args, data):
    if args.method == "changepoint":
        if args.overrides:
            raise AllianceDataError("--set applies to --method rules, sudden or hmm.")
        return detect_episodes(data, method="changepoint")
    if args.method in ("sudden", "hmm"):
        return detect_episodes(data, method=args.method,
                               **_detector_options(args.overrides, args.method))
    return detect_episodes(data, method="rules", rule=args.rule,
                           **parse_overrides(args.overrides))


def _check_out(args: argparse.Namespace) -> None:
    """Refuse a bad ``--out`` before any work is done."""
    if args.out not in (None, "-"):
        prepare_output_file(args.out, args.force, input_paths(args))


def run_detect(args: argparse.Namespace) -> int:
    """``alliancetrack detect``: write the episode table."""
    if args.engine == "dask":
        return run_dask(args, "detect")
    _check_out(args)
    data = load_data(args)
    episodes = _episodes(args, data)
    write_table(episodes, args.out, args.force, input_paths(args))
    return 0


def run_predictors(args: argparse.Namespace) -> int:
    """``alliancetrack predictors``: write one row per patient."""
    if args.engine == "dask":
        return run_dask(args, "predictors")
    _check_out(args)
    data = load_data(args)
    write_table(episode_predictors(data, _episodes(args, data)), args.out, args.force,
                input_paths(args))
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

    demo(Path(args.out), quiet=args.quiet, force=args.force)
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
    p.add_argument("--force", action="store_true",
                   help="replace the demo's files in a non-empty output folder")
    p.set_defaults(func=run_demo)


