"""Benchmark: fitting the cohort HMM to a large cohort.

Simulates ``--patients`` patients x ``--sessions`` sessions (the "clean"
scenario), then times ``HMMDetector.detect`` (fit from ``--starts`` starts,
Viterbi, episode table) and ``rupture_probabilities``, and prints iterations,
convergence and throughput.  CPU time is printed beside wall time because
other work on the machine inflates the wall time.

Run with ``python benchmarks/bench_hmm.py [--patients 100000] [--sessions 20]
[--starts 1]``.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import alliancetrack as at
from alliancetrack.detection.hmm import HMMDetector


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--starts", type=int, default=1)
    ap.add_argument("--decline", choices=["yes", "no", "both"], default="both")
    args = ap.parse_args()
    t = time.perf_counter()
    sim = at.simulate_cohort(args.patients, args.sessions, seed=1, n_therapists=500)
    data = at.read_alliance(sim.sessions, therapist="therapist", scale=sim.scale)
    print(f"simulate + read: {time.perf_counter() - t:.1f} s "
          f"({len(data.frame):,} rows, {os.cpu_count()} cores)")
    variants = {"yes": [True], "no": [False], "both": [True, False]}[args.decline]
    for decline in variants:
        det = HMMDetector(n_starts=args.starts, decline=decline)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t, c = time.perf_counter(), time.process_time()
            ep = det.detect(data)
            dt, cpu = time.perf_counter() - t, time.process_time() - c
        info = ep.attrs["hmm"]
        ev = at.evaluate_detection(ep, sim.truth, patients=data).iloc[0]
        print(f"{det.label}: detect {dt:.1f} s wall, {cpu:.1f} s CPU for "
              f"{args.patients:,} patients x "
              f"{args.sessions} sessions ({args.patients / dt:,.0f} patients/s); "
              f"{info['n_iter']} iterations, converged={info['converged']}; "
              f"{len(ep):,} episodes, F1 vs truth {ev['f1']:.3f}")


if __name__ == "__main__":
    main()
