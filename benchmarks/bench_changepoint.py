"""Benchmark of change-point detection: ruptures loop vs the exact vectorised fast path.

Run: ``python benchmarks/bench_changepoint.py [--quick]``

1. Speed, segmentation only: ``ruptures.Pelt(model="l2", min_size=1, jump=1)``
   in a Python loop vs :func:`alliancetrack.detection.pelt.pelt_l2_batch`, on
   10,000 and 100,000 patients x 20 sessions (WAI-like scores on a 1/12 grid,
   some with planted dips), each patient with its own BIC penalty.  The
   ruptures loop is timed on a subsample at 100k (and extrapolated linearly:
   it is a per-patient loop); the breakpoints of the subsample are checked to
   be identical.
2. Speed, end to end: ``detect_changepoint(engine="ruptures")`` vs
   ``engine="fast"`` (noise estimate, penalties, segmentation, episode table).
3. Accuracy: precision / recall / F1 (tolerance 1 session) and kappa on "has a
   rupture" against the planted episodes of the cohort101 reference data and of
   a cohort simulated with ``alliancetrack.simulate_cohort``; for the
   change-point method and, for comparison, the default dip rule.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import ruptures as rpt

import alliancetrack as at
from alliancetrack.agreement.compare import compare_episodes
from alliancetrack.detection.changepoint import detect_changepoint
from alliancetrack.detection.pelt import pelt_l2_batch
from alliancetrack.detection.segmentation import _noise_sd_rows, bic_penalty

REF = Path(__file__).resolve().parents[2] / "shared" / "reference"


def make_series(n_patients: int, n_sessions: int = 20, seed: int = 0) -> np.ndarray:
    """WAI-like series on a 1/12 grid; a third of them with a planted dip."""
    rng = np.random.default_rng(seed)
    level = rng.normal(3.8, 0.35, (n_patients, 1))
    X = level + rng.normal(0, 0.15, (n_patients, n_sessions))
    dip = rng.random(n_patients) < 1 / 3
    start = rng.integers(2, n_sessions - 3, n_patients)
    length = rng.integers(1, 4, n_patients)
    depth = rng.uniform(0.8, 1.5, n_patients)
    cols = np.arange(n_sessions)[None, :]
    inside = dip[:, None] & (cols >= start[:, None]) & (cols < (start + length)[:, None])
    X = X - inside * depth[:, None]
    return np.clip(np.round(X * 12) / 12, 1.0, 5.0)


def penalties(X: np.ndarray) -> np.ndarray:
    sigma, _ = _noise_sd_rows(X)
    sigma = np.where(sigma > 0, sigma, np.median(sigma[sigma > 0]))
    return bic_penalty(sigma, X.shape[1])


def ruptures_loop(X: np.ndarray, pens: np.ndarray) -> list[list[int]]:
    return [rpt.Pelt(model="l2", min_size=1, jump=1).fit(x).predict(pen=float(p))
            for x, p in zip(X, pens, strict=True)]


def bench_segmentation(n: int, subsample: int) -> dict:
    X = make_series(n, seed=n)
    pens = penalties(X)
    t0 = time.perf_counter()
    mask = pelt_l2_batch(X, pens, 1)
    t_fast = time.perf_counter() - t0
    m = min(n, subsample)
    t0 = time.perf_counter()
    slow = ruptures_loop(X[:m], pens[:m])
    t_slow = (time.perf_counter() - t0) * n / m
    fast = [np.flatnonzero(row).tolist() for row in mask[:m]]
    same = fast == slow
    return {"patients": n, "ruptures_timed_on": m, "ruptures_s": t_slow, "fast_s": t_fast,
            "ruptures_pps": n / t_slow, "fast_pps": n / t_fast, "speedup": t_slow / t_fast,
            "identical": same, "series_compared": m}


def to_long(X: np.ndarray) -> pd.DataFrame:
    n, s = X.shape
    return pd.DataFrame({"patient": np.repeat(np.arange(1, n + 1), s),
                         "session": np.tile(np.arange(1, s + 1), n),
                         "alliance": X.ravel()})


def bench_end_to_end(n: int, subsample: int) -> dict:
    X = make_series(n, seed=n + 1)
    data = at.read_alliance(to_long(X))
    t0 = time.perf_counter()
    fast = detect_changepoint(data, engine="fast")
    t_fast = time.perf_counter() - t0
    m = min(n, subsample)
    sub = at.read_alliance(to_long(X[:m]))
    t0 = time.perf_counter()
    slow = detect_changepoint(sub, engine="ruptures")
    t_slow = (time.perf_counter() - t0) * n / m
    # penalties use each patient's own noise SD (all have 20 scores), so the
    # subsample's episodes equal the fast path's for those patients
    fast_sub = fast[fast["patient"] <= m].reset_index(drop=True)
    same = fast_sub.equals(slow)
    return {"patients": n, "ruptures_timed_on": m, "ruptures_pps": n / t_slow,
            "fast_pps": n / t_fast, "speedup": t_slow / t_fast, "identical": same}


def accuracy() -> pd.DataFrame:
    rows = []
    ref = at.read_alliance(REF / "cohort101_sessions.csv", therapist="therapist")
    truth = pd.read_csv(REF / "cohort101_truth.csv")
    sim = at.simulate_cohort(1000, (8, 20), seed=2024)
    simdata = at.read_alliance(sim.sessions, therapist="therapist")
    for name, data, tr in [("cohort101", ref, truth), ("simulated (1000)", simdata, sim.truth)]:
        for method in ("changepoint", "rules"):
            ep = at.detect_episodes(data, method=method)
            o = compare_episodes(ep, tr, tolerance=1, patients=data).overall.iloc[0]
            rows.append({"cohort": name, "method": method, "episodes": int(o["n_episodes_a"]),
                         "truth": int(o["n_episodes_b"]), "matched": int(o["n_matched"]),
                         "precision": o["precision"], "recall": o["recall"], "f1": o["f1"],
                         "kappa_has_rupture": o["kappa"],
                         "repaired_agreement": o["repaired_agreement"]})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k/10k patients, small samples")
    args = parser.parse_args(argv)
    sizes = (1_000, 10_000) if args.quick else (10_000, 100_000)
    sub = 1_000 if args.quick else 10_000
    pd.set_option("display.width", 160)
    print("Segmentation only (20 sessions, per-patient BIC penalty):")
    seg = pd.DataFrame([bench_segmentation(n, sub) for n in sizes])
    print(seg.round(2).to_string(index=False))
    print("\nEnd to end detect_changepoint (engine='ruptures' vs 'fast'):")
    e2e = pd.DataFrame([bench_end_to_end(n, sub // 2) for n in sizes])
    print(e2e.round(2).to_string(index=False))
    print("\nDetection accuracy against planted episodes (tolerance 1 session):")
    print(accuracy().round(3).to_string(index=False))
    ok = bool(seg["identical"].all() and e2e["identical"].all())
    print("\nidentical output:", ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
