"""Sub-commands of the ``alliancetrack`` command line.

Each module listed in :data:`COMMAND_MODULES` defines ``register(subparsers)``,
which adds its sub-command(s) with ``parser.set_defaults(func=run)``; ``run``
takes the parsed arguments and returns an exit code.
"""

COMMAND_MODULES: list[str] = [
    "alliancetrack.cli.core",
    "alliancetrack.cli.sudden",
    "alliancetrack.cli.report_command",
    "alliancetrack.cli.validate",
    "alliancetrack.cli.strategies",
]
