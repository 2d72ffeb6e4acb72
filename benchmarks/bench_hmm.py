"""Benchmark: fitting the cohort HMM to a large cohort.

Simulates ``--patients`` patients x ``--sessions`` sessions (a scenario of
``at.SCENARIOS``, "clean" by default), then times ``HMMDetector.detect`` with
the default settings (3 starts on a 5,000-patient subsample, the whole-cohort
fit, averaging over alternative explanations, episode table) and prints
iterations, convergence, throughput and F1 against the planted truth.  CPU
time is printed beside wall time because other work on the machine inflates
the wall time.

Run with ``python benchmarks/bench_hmm.py [--patients 100000] [--sessions 20]
[--scenario rough] [--n-jobs 2] [--hmm '{"decline": true}']``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import alliancetrack as at
from alliancetrack.detection.hmm import HMMDetector


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--starts", type=int, default=3)
    ap.add_argument("--scenario", choices=sorted(at.SCENARIOS), default="clean")
    ap.add_argument("--n-jobs", type=int, default=2, help="threads (HMMDetector n_jobs)")
    ap.add_argument("--hmm", default="{}",
                    help='other HMMDetector options as JSON, e.g. \'{"decline": true}\'')
    args = ap.parse_args()
    t = time.perf_counter()
    sim = at.simulate_cohort(args.patients, args.sessions, seed=1, n_therapists=500,
                             **at.SCENARIOS[args.scenario])
    data = at.read_alliance(sim.sessions, therapist="therapist", scale=sim.scale)
    print(f"simulate + read: {time.perf_counter() - t:.1f} s "
          f"({len(data.frame):,} rows, {os.cpu_count()} cores, {args.scenario})")
    det = HMMDetector(n_starts=args.starts, n_jobs=args.n_jobs, **json.loads(args.hmm))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t, c = time.perf_counter(), time.process_time()
        ep = det.detect(data)
        dt, cpu = time.perf_counter() - t, time.process_time() - c
    info = ep.attrs["hmm"]
    ev = at.evaluate_detection(ep, sim.truth, patients=data).iloc[0]
    print(f"{det.label} (n_jobs={args.n_jobs}): detect {dt:.1f} s wall, {cpu:.1f} s CPU for "
          f"{args.patients:,} patients x {args.sessions} sessions "
          f"({args.patients / dt:,.0f} patients/s); {info['n_iter']} iterations, "
          f"converged={info['converged']}; bending share {info['bending_share']:.3f}; "
          f"decline p {info['p_decline']:.4f}; "
          f"{len(ep):,} episodes, F1 vs truth {ev['f1']:.3f}")


if __name__ == "__main__":
    main()
