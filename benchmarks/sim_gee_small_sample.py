"""Null simulation: false-positive rates of logistic GEE tests with few therapists.

8 therapists x 20 patients, a therapist-level binary predictor (``trained``,
half the therapists) and a patient-level predictor (``pd``), neither related to
the outcome; outcome probability varies between therapists (random intercept
SD 0.5 on the logit scale, baseline probability 0.3).  Each data set is fitted
once by :func:`alliancetrack.fit_gee_logistic` with the plain robust SEs and z
tests (``small_sample=False``) and with the default small-sample correction
(Mancl-DeRouen SEs, t(8 - 3) tests); the share of p < .05 is the false-positive
rate, which should be 5%.

Run: ``PYTHONPATH=src python benchmarks/sim_gee_small_sample.py [n_sims]``
(about a minute for 500 data sets).
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pandas as pd

import alliancetrack as at


def one_dataset(rng: np.random.Generator, n_ther: int = 8, per: int = 20) -> pd.DataFrame:
    n = n_ther * per
    ther = np.repeat(np.arange(n_ther), per)
    trained = np.repeat(rng.permutation(np.arange(n_ther) % 2), per)
    pd_ = rng.integers(0, 2, n)
    u = np.repeat(rng.normal(0, 0.5, n_ther), per)
    eta = np.log(0.3 / 0.7) + u
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"therapist": ther, "trained": trained, "pd": pd_, "dropout": y})


def main(n_sims: int = 500, seed: int = 20261129) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(n_sims):
            d = one_dataset(rng)
            for label, ss in (("robust z (before)", False), ("Mancl-DeRouen t(G-p) (after)", True)):
                try:
                    res = at.fit_gee_logistic("dropout ~ trained + pd", d, small_sample=ss)
                except Exception:  # noqa: BLE001 - count failed fits separately
                    rows.append({"method": label, "term": "failed", "reject": np.nan})
                    continue
                c = res.coefs.set_index("term")
                for term in ("trained", "pd"):
                    rows.append({"method": label, "term": term,
                                 "reject": float(c.loc[term, "p_value"] < 0.05)})
    out = pd.DataFrame(rows)
    table = out[out["term"] != "failed"].groupby(["method", "term"])["reject"].agg(["mean", "size"])
    table = table.rename(columns={"mean": "false_positive_rate", "size": "n_fits"})
    print(f"{n_sims} null data sets, 8 therapists x 20 patients, nominal 5%")
    print(table.to_string(float_format=lambda z: f"{z:.3f}"))
    print(f"failed fits: {(out['term'] == 'failed').sum()}")
    return table


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
