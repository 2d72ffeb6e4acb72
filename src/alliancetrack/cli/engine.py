"""``--engine dask`` for ``detect`` and ``predictors``: out-of-core input, Parquet output."""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from typing import Any

import pandas as pd

from alliancetrack.cli.common import parse_overrides
from alliancetrack.errors import AllianceDataError
from alliancetrack.scaling.dask_engine import detect_episodes_dask, episode_predictors_dask

__all__ = ["add_engine_arguments", "run_dask"]


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``--engine``, ``--workers`` and ``--scheduler``."""
    p.add_argument(
        "--engine",
        choices=["pandas", "dask"],
        default="pandas",
        help="pandas (default: in memory) or dask (out of core: INPUT may be a glob "
        "of Parquet or CSV files or a Parquet folder; --out is a Parquet folder)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="dask: worker processes of the local cluster (default: one per core)",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="dask: address of an existing scheduler (e.g. tcp://scheduler-host:8786) "
        "instead of a local cluster",
    )


def _read(args: argparse.Namespace) -> Any:
    import dask.dataframe as dd  # noqa: PLC0415

    src = str(args.input)
    if args.wide or args.session_columns is not None:
        raise AllianceDataError("--engine dask reads long data only (one row per rating).")
    names = {args.patient: "patient", args.session: "session", args.score: "alliance"}
    if args.therapist:
        names[args.therapist] = "therapist"
    if args.rater:
        names[args.rater] = "rater"
    low = src.lower()
    if low.endswith((".csv", ".tsv", ".txt")):
        ddf = dd.read_csv(
            src,
            sep="\t" if low.endswith(".tsv") else ",",
            dtype={args.session: "float64", args.score: "float64"},
            blocksize="64MB",
        )
    else:  # Parquet files, a glob of them, or a Parquet folder
        ddf = dd.read_parquet(src, columns=list(names))
    missing = [c for c in names if c not in ddf.columns]
    if missing:
        raise AllianceDataError(
            f"Column(s) {missing} not found in {src}; it has columns {list(ddf.columns)}. "
            "Name the right ones with --patient, --session, --score, --therapist, --rater."
        )
    ddf = ddf[list(names)].rename(columns=names)
    if args.select_rater is not None:
        if "rater" not in ddf.columns:
            raise AllianceDataError("--select-rater needs --rater.")
        ddf = ddf[ddf["rater"] == args.select_rater]
    return ddf


def run_dask(args: argparse.Namespace, what: str) -> int:
    """Run ``detect`` or ``predictors`` with the Dask engine; writes a Parquet folder."""
    from distributed import Client, LocalCluster  # noqa: PLC0415


    if args.out is None or args.out == "-":
        raise AllianceDataError("--engine dask writes a Parquet folder: give --out DIR.")
    if args.method not in ("rules", "changepoint"):
        raise AllianceDataError(
            f"--engine dask runs --method rules or changepoint, not {args.method!r} "
            "(run it with the default pandas engine).")
    if args.method == "changepoint" and args.overrides:
        raise AllianceDataError("--set applies to --method rules only.")
    opts = {} if args.method == "changepoint" else parse_overrides(args.overrides)
    with ExitStack() as stack:
        if args.scheduler:
            client = stack.enter_context(Client(args.scheduler))
        else:
            cluster = stack.enter_context(
                LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=":0")
            )
            client = stack.enter_context(Client(cluster))
        ddf = _read(args)
        kw = {"scale": args.scale, "data_min_timepoints": args.min_timepoints}
        if args.method == "changepoint":
            table = detect_episodes_dask(ddf, method="changepoint", **kw)
        else:
            table = detect_episodes_dask(ddf, method="rules", rule=args.rule, **kw, **opts)
        if what == "predictors":
            table = episode_predictors_dask(ddf, table)
        # text columns hold missing values (pd.NA): store them as Arrow strings
        text = [c for c, t in table.dtypes.items() if pd.api.types.is_object_dtype(t)]
        table = table.astype(dict.fromkeys(text, "string"))
        table.to_parquet(args.out, write_index=False)
        n_workers = len(client.scheduler_info().get("workers", {}))
    print(f"wrote {what} to {args.out} (Parquet; dask, {n_workers} workers)", file=sys.stderr)
    return 0
