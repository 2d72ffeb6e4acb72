"""Benchmark: registry scale with the Dask engine, and change-point throughput.

1. Writes a synthetic registry of ``--patients`` patients x 20 sessions (default
   10 million patients, 200 million ratings; WAI-SR item means in steps of
   1/12, 5% missing, planted dips) as Parquet, ``--chunk`` patients per file,
   generated chunk by chunk so that generation itself needs little memory.
2. Reads it out of core with Dask on a local cluster of ``--workers`` worker
   processes (default: all cores) and runs rules detection (``--rule``,
   default ``gumz-2012``: a sample-SD unit, so the cohort-wide SD pass is
   included) and the per-patient predictors, writing both as Parquet.
3. Change-point throughput (fast exact PELT path) on ``--cp-patients``
   patients x 20 sessions: in memory in one process, and with Dask over all
   workers.

The peak resident memory of the whole process tree (this process, the
workers, and anything they start) is sampled every 0.2 s and reported; the
issue requires it to stay under 8 GB for 10 million patients.

Run with ``python benchmarks/bench_scale.py`` (``--patients 1000000`` for a
quicker run; ``--workdir DIR`` to keep the files; ``--skip-registry`` or
``--skip-changepoint`` to run one part).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

import alliancetrack as at

SESSIONS = 20


class PeakRSS:
    """Peak resident set size of this process and all its descendants."""

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        me = psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def simulate_chunk(first_id: int, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` patients x 20 sessions, sorted by patient then session."""
    level = rng.normal(3.8, 0.45, n)[:, None]
    slope = rng.normal(0.015, 0.02, n)[:, None]
    t = np.arange(1, SESSIONS + 1)[None, :]
    y = level + slope * t + rng.normal(0, 0.2, (n, SESSIONS))
    # planted dips: a drop of 0.8-1.5 lasting 1-3 sessions in about 6% of sessions
    start = rng.random((n, SESSIONS)) < 0.06
    depth = rng.uniform(0.8, 1.5, (n, SESSIONS)) * start
    dip = depth.copy()
    for lag in (1, 2):
        keep = rng.random((n, SESSIONS)) < 0.5
        dip[:, lag:] += depth[:, :-lag] * keep[:, lag:]
    y = np.clip(np.round((y - dip) * 12) / 12, 1.0, 5.0)
    y[rng.random((n, SESSIONS)) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "patient": np.repeat(np.arange(first_id, first_id + n, dtype=np.int64), SESSIONS),
            "session": np.tile(np.arange(1, SESSIONS + 1, dtype=np.int64), n),
            "alliance": y.ravel(),
        }
    )


def write_registry(folder: Path, patients: int, chunk: int, seed: int = 7) -> float:
    """Write the registry chunk by chunk; returns the seconds taken."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for i, first in enumerate(range(0, patients, chunk)):
        n = min(chunk, patients - first)
        df = simulate_chunk(first + 1, n, rng)
        # one row group per file: no patient straddles a partition boundary
        df.to_parquet(folder / f"part-{i:05d}.parquet", index=False, row_group_size=len(df))
    return time.perf_counter() - t0


def _text_as_string(table):
    """Object (text) columns as strings, which Parquet can store with missing values."""
    text = [c for c, t in table.dtypes.items() if pd.api.types.is_object_dtype(t)]
    return table.astype(dict.fromkeys(text, "string"))


def run_registry(args, workdir: Path, client) -> None:
    import dask
    import dask.dataframe as dd

    data_dir = workdir / "registry"
    if not (data_dir.exists() and any(data_dir.iterdir())):
        with PeakRSS() as mem:
            secs = write_registry(data_dir, args.patients, args.chunk)
        print(
            f"generated {args.patients:,} patients x {SESSIONS} sessions "
            f"({args.patients * SESSIONS:,} rows) in {secs:.1f} s; "
            f"peak RSS {mem.peak / 2**30:.2f} GiB"
        )
    out = workdir / "out"
    shutil.rmtree(out, ignore_errors=True)
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        ddf = dd.read_parquet(data_dir)
        ep = at.detect_episodes(ddf, rule=args.rule, scale="wai-sr")
        pred = at.episode_predictors(ddf, ep)
        t_graph = time.perf_counter() - t0
        dask.compute(
            _text_as_string(ep).to_parquet(out / "episodes", write_index=False, compute=False),
            _text_as_string(pred).to_parquet(out / "predictors", write_index=False, compute=False),
        )
        secs = time.perf_counter() - t0
    n_ep = dd.read_parquet(out / "episodes", columns=["patient"]).shape[0].compute()
    pr = dd.read_parquet(out / "predictors", columns=["status", "group"])
    n_pat = pr.shape[0].compute()
    groups = pr["group"].value_counts().compute().to_dict()
    print(
        f"Dask rules ({args.rule}) + predictors, {args.workers} workers, "
        f"{ddf.npartitions} partitions: {secs:.1f} s "
        f"(of which statistics passes / graph {t_graph:.1f} s), "
        f"{args.patients / secs:,.0f} patients/s; peak RSS of the process tree "
        f"{mem.peak / 2**30:.2f} GiB"
    )
    print(f"  {n_ep:,} episodes, {n_pat:,} patients, groups {groups}")


def run_changepoint(args, workdir: Path) -> None:
    import dask.dataframe as dd

    n = args.cp_patients
    folder = workdir / "changepoint"
    shutil.rmtree(folder, ignore_errors=True)
    write_registry(folder, n, max(1, -(-n // (4 * args.workers))), seed=11)
    df = pd.read_parquet(folder)
    t0 = time.perf_counter()
    expected = at.detect_episodes(df, method="changepoint")
    t_mem = time.perf_counter() - t0
    print(
        f"change points in memory, one process (fast PELT): {n:,} patients "
        f"in {t_mem:.1f} s = {n / t_mem:,.0f} patients/s"
    )
    ddf = dd.read_parquet(folder)
    t0 = time.perf_counter()
    got = at.detect_episodes(ddf, method="changepoint").compute()
    t_dask = time.perf_counter() - t0
    keys = ["patient", "episode"]
    pd.testing.assert_frame_equal(
        got.sort_values(keys).reset_index(drop=True),
        expected.sort_values(keys).reset_index(drop=True),
    )
    print(
        f"change points with Dask, {args.workers} workers, {ddf.npartitions} partitions: "
        f"{n:,} patients in {t_dask:.1f} s = {n / t_dask:,.0f} patients/s "
        f"({len(got):,} episodes, equal to in memory)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=10_000_000)
    ap.add_argument("--chunk", type=int, default=200_000, help="patients per Parquet file")
    ap.add_argument("--rule", default="gumz-2012")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--cp-patients", type=int, default=200_000)
    ap.add_argument("--workdir", default=None, help="keep the data here (default: a temp dir)")
    ap.add_argument("--skip-registry", action="store_true")
    ap.add_argument("--skip-changepoint", action="store_true")
    args = ap.parse_args()

    from distributed import Client, LocalCluster

    tmp = None
    if args.workdir is None:
        tmp = tempfile.mkdtemp(prefix="alliancetrack-scale-")
        workdir = Path(tmp)
    else:
        workdir = Path(args.workdir)
    try:
        with (
            LocalCluster(
                n_workers=args.workers, threads_per_worker=1, dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
        ):
            if not args.skip_registry:
                run_registry(args, workdir, client)
            if not args.skip_changepoint:
                run_changepoint(args, workdir)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
