"""Simulation: false-positive rate of a therapist-level predictor's test with 8 therapists.

Null model (seed 8): 8 therapists x 7 patients, ``bdi_post ~ bdi_pre + trained +
(1 | therapist)`` with ``trained`` for 4 therapists and no training effect
(therapist SD 2.5, residual SD 5).  For each of ``--reps`` datasets (default 1,000)
the test of ``trained`` is done with Wald z, Satterthwaite and Kenward-Roger df;
prints the rejection rate at 5% (with its binomial standard error) and the mean
CI width relative to Kenward-Roger's.  Run ``python benchmarks/sim_few_clusters.py``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

import alliancetrack as at


def dataset(rng: np.random.Generator) -> pd.DataFrame:
    therapist = np.repeat(np.arange(8), 7)
    trained = (therapist < 4).astype(float)
    pre = rng.normal(25, 6, len(therapist))
    post = 5 + 0.5 * pre + rng.normal(0, 2.5, 8)[therapist] + rng.normal(0, 5, len(pre))
    return pd.DataFrame({"therapist": therapist, "trained": trained, "bdi_pre": pre,
                         "bdi_post": post})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=1000)
    a = ap.parse_args()
    rng = np.random.default_rng(8)
    rej = {"wald": 0, "satterthwaite": 0, "kenward-roger": 0}
    width = {k: [] for k in rej}
    t0 = time.perf_counter()
    n = 0
    for _ in range(a.reps):
        d = dataset(rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = {}
            for ddf in rej:
                fit = at.fit_mixed("bdi_post ~ bdi_pre + trained + (1 | therapist)", d, ddf=ddf)
                rows[ddf] = fit.coefs.set_index("term").loc["trained"]
        n += 1
        for ddf, r in rows.items():
            rej[ddf] += bool(r["p_value"] < 0.05)
            width[ddf].append((r["ci_high"] - r["ci_low"])
                              / (rows["kenward-roger"]["ci_high"] - rows["kenward-roger"]["ci_low"]))
    print(f"{n} null datasets, 8 therapists x 7 patients, {time.perf_counter() - t0:.0f} s")
    for ddf in rej:
        p = rej[ddf] / n
        print(f"  {ddf:14s} false-positive rate {100 * p:5.1f}% (SE {100 * np.sqrt(p * (1 - p) / n):.1f}%)"
              f"   CI width / Kenward-Roger {np.mean(width[ddf]):.3f}")


if __name__ == "__main__":
    main()
