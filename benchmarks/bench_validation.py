"""Benchmark: the cost of one power-analysis simulation and of the validation study.

Times, per simulated cohort (default 200 patients, 8-16 sessions):

* simulate_cohort, read_alliance, detection (stiles-2sd, changepoint),
  episode_predictors;
* the outcome test with ``test="ols"`` (the power-analysis default) and with
  ``test="mixed"`` (``outcome_model``, random intercept for therapist);
* a whole ``power_analysis`` run with ``n_jobs=1`` and ``n_jobs=2``.

Run with ``python benchmarks/bench_validation.py [--n 200] [--sims 40]``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import alliancetrack as at
from alliancetrack.simulation.outcome_studies import _ols_test


def best(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--sims", type=int, default=40)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    sim = at.simulate_cohort(args.n, (8, 16), effect_r=0.29, outcome_effects={}, seed=1)
    data = at.read_alliance(sim.sessions, therapist="therapist", scale="wai-sr")
    ep = at.detect_episodes(data, rule="stiles-2sd")
    pred = at.episode_predictors(data, ep)
    o = sim.outcomes
    X = np.column_stack([np.ones(len(o)), o["bdi_pre"], pred["n_repaired"].to_numpy(float)])
    rows = {
        "simulate_cohort": lambda: at.simulate_cohort(args.n, (8, 16), seed=1),
        "read_alliance": lambda: at.read_alliance(sim.sessions, therapist="therapist",
                                                  scale="wai-sr"),
        "detect stiles-2sd": lambda: at.detect_episodes(data, rule="stiles-2sd"),
        "detect changepoint": lambda: at.detect_episodes(data, method="changepoint"),
        "episode_predictors": lambda: at.episode_predictors(data, ep),
        "test='ols'": lambda: _ols_test(o["bdi_post"].to_numpy(), X, 2),
        "test='mixed'": lambda: at.outcome_model(pred, o, predictors=["n_repaired"]),
    }
    print(f"per cohort of {args.n} patients (best of 5):")
    for name, fn in rows.items():
        print(f"  {name:<22} {best(fn) * 1000:8.2f} ms")
    for jobs in (1, 2):
        t = time.perf_counter()
        at.power_analysis([args.n], effect_r=0.29, n_sims=args.sims, seed=3, n_jobs=jobs)
        dt = time.perf_counter() - t
        print(f"power_analysis, {args.sims} simulations, n_jobs={jobs}: {dt:.2f} s "
              f"({dt / args.sims * 1000:.0f} ms per simulation)")


if __name__ == "__main__":
    main()
