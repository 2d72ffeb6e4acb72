"""Benchmark: random-slope alliance trajectory model at 2,000 and 100,000 patients.

Simulates (seed 2024) patients with 8-16 sessions each (at 2,000 patients about
25,000 rows, 5% of ratings missing) from ``alliance ~ session + (session | patient)``
and times

* ``alliancetrack.fit_mixed`` (robust fitting, the package default; the fast
  engine: lme4's profiled deviance vectorised over patients),
* ``fit_mixed(..., engine="statsmodels")`` (the same optimiser on statsmodels'
  likelihood, the fallback engine),
* statsmodels ``MixedLM.fit()`` with its default optimiser list, and
* statsmodels ``MixedLM.fit(method="cg")``,

printing the wall time (best of ``--repeat`` runs, default 3, for the fast
engine), the log-likelihood reached and the ratio to lme4's 0.57 s on the
2,000-patient problem (measured by the issue author).  Then the fast engine at
100,000 patients (``--large N`` to change, ``--large 0`` to skip).

Run with ``python benchmarks/bench_mixed.py`` (``--quick`` skips statsmodels).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

import alliancetrack as at

LME4_SECONDS = 0.57


def simulate(n_patients: int = 2000, seed: int = 2024, sessions: int | None = None) -> pd.DataFrame:
    """8-16 sessions per patient, or exactly ``sessions``."""
    rng = np.random.default_rng(seed)
    n_sess = rng.integers(8, 17, size=n_patients)
    if sessions is not None:
        n_sess[:] = sessions
    cov = np.array([[0.45**2, 0.1 * 0.45 * 0.04], [0.1 * 0.45 * 0.04, 0.04**2]])
    re = rng.multivariate_normal([0.0, 0.0], cov, size=n_patients)
    patient = np.repeat(np.arange(1, n_patients + 1), n_sess)
    session = np.concatenate([np.arange(1, k + 1) for k in n_sess])
    b0 = 3.5 + re[patient - 1, 0]
    b1 = 0.017 + re[patient - 1, 1]
    alliance = b0 + b1 * session + rng.normal(0, 0.27, size=patient.size)
    alliance[rng.random(patient.size) < 0.05] = np.nan
    return pd.DataFrame({"patient": patient, "session": session, "alliance": alliance})


def _time_fast(d: pd.DataFrame, repeat: int) -> tuple[float, float, at.MixedResult]:
    """First-call and best wall time of the default (fast) fit."""
    times, fit = [], None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        fit = at.fit_mixed("alliance ~ session", d, groups="patient", re_formula="~session")
        times.append(time.perf_counter() - t0)
    return times[0], min(times), fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the statsmodels timings")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--large", type=int, default=100_000, help="patients of the large run")
    args = ap.parse_args()

    d = simulate()
    obs = d.dropna(subset=["alliance"])
    print(f"rows: {len(d)} ({len(obs)} non-missing), patients: {d['patient'].nunique()}")

    t_first, t_at, fit = _time_fast(d, args.repeat)
    print(
        f"fit_mixed (engine {fit.engine}): {t_at:6.3f} s (first call {t_first:.3f} s)  "
        f"llf {fit.llf:.4f}  "
        f"optimizer {fit.optimizer}  attempts {len(fit.attempts)}  converged {fit.converged}  "
        f"ratio to lme4 {t_at / LME4_SECONDS:.2f}x"
    )
    if not args.quick:
        t0 = time.perf_counter()
        slow = at.fit_mixed(
            "alliance ~ session", d, groups="patient", re_formula="~session", engine="statsmodels"
        )
        t = time.perf_counter() - t0
        print(
            f"fit_mixed (engine statsmodels): {t:6.2f} s  llf {slow.llf:.4f}  "
            f"ratio to lme4 {t / LME4_SECONDS:.1f}x"
        )
        for label, kw in [
            ("statsmodels default", {}),
            ('statsmodels method="cg"', {"method": "cg"}),
        ]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                res = smf.mixedlm(
                    "alliance ~ session", obs, groups=obs["patient"], re_formula="~session"
                ).fit(**kw)
                t = time.perf_counter() - t0
            print(
                f"{label:<26} {t:6.2f} s  llf {res.llf:.4f}  ratio to lme4 {t / LME4_SECONDS:.1f}x"
            )
    if args.large:
        big = simulate(args.large, sessions=16)
        _, t_big, fit = _time_fast(big, 1)
        print(
            f"{args.large} patients x 16 sessions ({big['alliance'].notna().sum()} ratings): "
            "fit_mixed "
            f"(engine {fit.engine}) {t_big:6.2f} s  llf {fit.llf:.4f}  converged {fit.converged}"
        )


if __name__ == "__main__":
    main()
