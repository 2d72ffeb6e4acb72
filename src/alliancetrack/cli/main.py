"""The ``alliancetrack`` command line.

Sub-commands are listed in :mod:`alliancetrack.cli.commands`.  Errors in the
input print one line (``alliancetrack: error: ...``) and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from alliancetrack._version import __version__
from alliancetrack.cli.commands import COMMAND_MODULES
from alliancetrack.errors import AllianceDataError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered.

    Examples
    --------
    >>> from alliancetrack.cli import build_parser
    >>> args = build_parser().parse_args(["detect", "ratings.csv", "--rule", "rci"])
    >>> args.rule, args.method
    ('rci', 'rules')
    """
    parser = argparse.ArgumentParser(
        prog="alliancetrack",
        description="Detect therapeutic-alliance rupture-repair episodes in repeated alliance "
        "ratings and relate them to outcome.",
    )
    parser.add_argument("--version", action="version", version=f"alliancetrack {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Examples
    --------
    >>> from alliancetrack.cli import main
    >>> main(["presets"])  # doctest: +ELLIPSIS
    stiles-2sd
    ...
    0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except (AllianceDataError, ValueError, TypeError, FileNotFoundError, KeyError) as exc:
        message = str(exc).strip().strip("'\"") or type(exc).__name__
        print(f"alliancetrack: error: {' '.join(message.split())}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `alliancetrack detect ... | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
