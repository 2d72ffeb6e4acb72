"""Benchmark: three-level alliance model against lme4 in the same run.

Simulates (seed 14) sessions in patients in therapists,
``alliance ~ session + (session | patient) + (1 | therapist)``, at
150 therapists x 20 patients x 14 sessions (42,000 rows) and, with ``--large``,
2,000 x 50 x 20 (2,000,000 rows), and times

* ``alliancetrack.fit_mixed`` with ``ddf="wald"`` (the fit alone) and with the
  default Satterthwaite df (fit plus df),
* lme4 1.1-31 ``lmer`` (default optimiser) on the same data through ``Rscript``
  (the data are written to a temporary CSV; only the ``lmer`` call is timed),
  and lmerTest's Satterthwaite summary,

printing wall times, the log-likelihoods (same or better optimum) and the ratio.
Run with ``python benchmarks/bench_mixed_lme4.py [--large] [--repeat 1]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import alliancetrack as at

FORMULA = "alliance ~ session + (session | patient) + (1 | therapist)"

R_SCRIPT = r"""
suppressPackageStartupMessages({library(lme4); library(lmerTest)})
d <- read.csv(commandArgs(TRUE)[1])
t0 <- proc.time()[["elapsed"]]
fit <- lme4::lmer(alliance ~ session + (session | patient) + (1 | therapist), data = d, REML = TRUE)
t1 <- proc.time()[["elapsed"]]
fit2 <- as(fit, "lmerModLmerTest")
s <- summary(fit2, ddf = "Satterthwaite")
t2 <- proc.time()[["elapsed"]]
cat(sprintf("%.4f %.4f %.6f\n", t1 - t0, t2 - t1, as.numeric(logLik(fit))))
"""


def simulate(n_t: int, n_p: int, n_s: int, seed: int = 14) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_pat = n_t * n_p
    therapist = np.repeat(np.arange(n_t), n_p * n_s)
    patient = np.repeat(np.arange(n_pat), n_s)
    session = np.tile(np.arange(1, n_s + 1), n_pat).astype(float)
    cov = np.array([[0.5**2, 0.3 * 0.5 * 0.06], [0.3 * 0.5 * 0.06, 0.06**2]])
    b = rng.multivariate_normal([0, 0], cov, size=n_pat)
    u = rng.normal(0, 0.3, n_t)
    y = (4 + 0.05 * session + u[therapist] + b[patient, 0] + b[patient, 1] * session
         + rng.normal(0, 0.45, len(session)))
    return pd.DataFrame({"therapist": therapist, "patient": patient, "session": session,
                         "alliance": y})


def time_ours(d: pd.DataFrame, ddf: str, repeat: int) -> tuple[float, at.MixedResult]:
    best, fit = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = at.fit_mixed(FORMULA, d, ddf=ddf)
        best = min(best, time.perf_counter() - t0)
    return best, fit


def time_lme4(d: pd.DataFrame) -> tuple[float, float, float] | None:
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "d.csv"
        script = Path(tmp) / "b.R"
        d.to_csv(csv, index=False)
        script.write_text(R_SCRIPT)
        out = subprocess.run(["Rscript", str(script), str(csv)], capture_output=True, text=True,
                             check=False)
    if out.returncode != 0:
        print("lme4 failed:", out.stderr[-500:])
        return None
    fit_s, satt_s, ll = (float(v) for v in out.stdout.split()[-3:])
    return fit_s, satt_s, ll


def run(n_t: int, n_p: int, n_s: int, repeat: int, with_r: bool) -> None:
    time_ours(simulate(3, 3, 4), "satterthwaite", 1)  # warm-up: imports are not timed (nor R's)
    d = simulate(n_t, n_p, n_s)
    print(f"\n{n_t} therapists x {n_p} patients x {n_s} sessions = {len(d):,} rows")
    t_fit, fit = time_ours(d, "wald", repeat)
    print(f"  alliancetrack fit (ddf='wald'):        {t_fit:8.2f} s   logLik {fit.llf:.4f}   "
          f"engine {fit.engine}, converged {fit.converged}, evaluations "
          f"{int(fit.attempts['nfev'].sum())}")
    t_sat, fit_s = time_ours(d, "satterthwaite", repeat)
    print(f"  alliancetrack fit + Satterthwaite df:  {t_sat:8.2f} s   "
          f"df(session) {fit_s.coefs['df'].iloc[1]:.1f}")
    if with_r:
        r = time_lme4(d)
        if r is not None:
            fit_r, satt_r, ll_r = r
            print(f"  lme4 lmer:                             {fit_r:8.2f} s   logLik {ll_r:.4f}")
            print(f"  lmerTest Satterthwaite summary:        {satt_r:8.2f} s")
            print(f"  speed-up (fit): {fit_r / t_fit:.2f}x   (fit + df): "
                  f"{(fit_r + satt_r) / t_sat:.2f}x   logLik difference (ours - lme4): "
                  f"{fit.llf - ll_r:+.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--large", action="store_true", help="also 2,000 x 50 x 20")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--no-r", action="store_true", help="skip lme4")
    a = ap.parse_args()
    run(150, 20, 14, a.repeat, not a.no_r)
    if a.large:
        run(2000, 50, 20, 1, not a.no_r)


if __name__ == "__main__":
    main()
