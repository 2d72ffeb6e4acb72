"""Throughput of dip-and-recovery detection (issue 2).

Prints, for 10k, 100k and 1M patients × 20 sessions: seconds and
patients/second for validation (``read_alliance``), rule detection
(``detect_episodes``) and predictors, and the peak resident memory of the
process; then the straightforward per-patient ``groupby().apply``
implementation kept in ``tests/reference_rules.py`` on a subsample, for
comparison (extrapolated), with a check that both give identical episodes.

Each size runs in its own process so that peak memory is measured per size.

    python benchmarks/bench_rules.py            # all sizes
    python benchmarks/bench_rules.py 10000      # one size
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

N_SESSIONS = 20
SIZES = [10_000, 100_000, 1_000_000]


def make_data(n: int, seed: int = 0) -> pd.DataFrame:
    """WAI-SR-like item means: patient level + noise + occasional dips, 5% missing."""
    rng = np.random.default_rng(seed)
    level = rng.normal(3.8, 0.4, n)[:, None] + 0.01 * np.arange(N_SESSIONS)[None, :]
    scores = level + rng.normal(0, 0.2, (n, N_SESSIONS))
    dips = rng.random((n, N_SESSIONS)) < 0.05
    scores -= dips * rng.uniform(0.5, 1.5, (n, N_SESSIONS))
    scores = np.clip(np.round(scores * 12) / 12, 1, 5)
    scores[rng.random((n, N_SESSIONS)) < 0.05] = np.nan
    return pd.DataFrame({
        "patient": np.repeat(np.arange(n, dtype=np.int64), N_SESSIONS),
        "session": np.tile(np.arange(1, N_SESSIONS + 1, dtype=np.int64), n),
        "alliance": scores.ravel(),
    })


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kB -> GB


def run_size(n: int) -> None:
    import alliancetrack as at

    df = make_data(n)
    rss_data = peak_rss_gb()
    t0 = time.perf_counter()
    data = at.read_alliance(df, scale="wai-sr")
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    episodes = at.detect_episodes(data, rule="stiles-2sd")
    t_detect = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = at.episode_predictors(data, episodes)
    t_pred = time.perf_counter() - t0
    assert len(pred) == n
    print(f"{n:>9,} patients x {N_SESSIONS}: read_alliance {t_read:6.2f} s | "
          f"detect_episodes {t_detect:6.2f} s ({n / t_detect:>12,.0f} patients/s) | "
          f"episode_predictors {t_pred:6.2f} s | {len(episodes):,} episodes | "
          f"peak RSS {peak_rss_gb():.2f} GB (data alone {rss_data:.2f} GB)", flush=True)

    if n <= 100_000:
        from reference_rules import reference_episodes

        sub = min(n, 2_000)
        frame = data.frame[data.frame["patient"] < sub]
        rule = at.PRESETS["stiles-2sd"]
        t0 = time.perf_counter()
        ref = reference_episodes(frame, rule, data.scale)
        t_ref = time.perf_counter() - t0
        fast = at.detect_episodes(at.read_alliance(frame, scale="wai-sr"), rule=rule)
        same = np.allclose(fast[ref.columns[1:5]].to_numpy(float),
                           ref[ref.columns[1:5]].to_numpy(float), equal_nan=True) \
            and len(fast) == len(ref)
        print(f"{'':>9}   groupby().apply reference on {sub:,} patients: {t_ref:.2f} s "
              f"({sub / t_ref:,.0f} patients/s; {n / (sub / t_ref):,.0f} s extrapolated to "
              f"{n:,}); vectorised speed-up x{(sub / t_ref) ** -1 * n / t_detect:,.0f}; "
              f"identical episodes: {same}", flush=True)


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--child":
        run_size(int(argv[1]))
        return
    sizes = [int(a) for a in argv] or SIZES
    for n in sizes:
        subprocess.run([sys.executable, __file__, "--child", str(n)], check=True)


if __name__ == "__main__":
    main(sys.argv[1:])
