"""The command line: ``main`` (entry point), one module per group of sub-commands."""

from alliancetrack.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
