"""Benchmark: random-slope alliance trajectory model at 2,000 patients.

Simulates (seed 2024) 2,000 patients with 8-16 sessions each (about 25,000
rows, 5% of ratings missing) from ``alliance ~ session + (session | patient)``
and times

* ``alliancetrack.fit_mixed`` (robust fitting, the package default),
* statsmodels ``MixedLM.fit()`` with its default optimiser list, and
* statsmodels ``MixedLM.fit(method="cg")``,

printing the wall time, the log-likelihood reached and the ratio to lme4's
0.57 s on the same size of problem (measured by the issue author).

Run with ``python benchmarks/bench_mixed.py`` (``--quick`` skips statsmodels).
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

import alliancetrack as at

LME4_SECONDS = 0.57


def simulate(n_patients: int = 2000, seed: int = 2024) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_sess = rng.integers(8, 17, size=n_patients)
    cov = np.array([[0.45**2, 0.1 * 0.45 * 0.04], [0.1 * 0.45 * 0.04, 0.04**2]])
    re = rng.multivariate_normal([0.0, 0.0], cov, size=n_patients)
    patient = np.repeat(np.arange(1, n_patients + 1), n_sess)
    session = np.concatenate([np.arange(1, k + 1) for k in n_sess])
    b0 = 3.5 + re[patient - 1, 0]
    b1 = 0.017 + re[patient - 1, 1]
    alliance = b0 + b1 * session + rng.normal(0, 0.27, size=patient.size)
    alliance[rng.random(patient.size) < 0.05] = np.nan
    return pd.DataFrame({"patient": patient, "session": session, "alliance": alliance})


def main() -> None:
    d = simulate()
    obs = d.dropna(subset=["alliance"])
    print(f"rows: {len(d)} ({len(obs)} non-missing), patients: {d['patient'].nunique()}")

    t0 = time.perf_counter()
    fit = at.fit_mixed("alliance ~ session", d, groups="patient", re_formula="~session")
    t_at = time.perf_counter() - t0
    print(
        f"alliancetrack.fit_mixed: {t_at:6.2f} s  llf {fit.llf:.4f}  optimizer {fit.optimizer}  "
        f"attempts {len(fit.attempts)}  ratio to lme4 {t_at / LME4_SECONDS:.1f}x"
    )
    if "--quick" in sys.argv:
        return
    for label, kw in [("statsmodels default", {}), ('statsmodels method="cg"', {"method": "cg"})]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            res = smf.mixedlm(
                "alliance ~ session", obs, groups=obs["patient"], re_formula="~session"
            ).fit(**kw)
            t = time.perf_counter() - t0
        print(f"{label:<26} {t:6.2f} s  llf {res.llf:.4f}  ratio to lme4 {t / LME4_SECONDS:.1f}x")


if __name__ == "__main__":
    main()
