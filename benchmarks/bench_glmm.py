"""Benchmark: Poisson GLMM, 1,000 therapists x 50 patients, alliancetrack vs glmer.

Simulates (seed 15) rupture counts ``n_ruptures ~ pd + trained +
offset(log(n_sessions)) + (1 | therapist)`` for 50,000 patients, fits it with
``alliancetrack.fit_glmm`` (Laplace) and, when ``Rscript`` with lme4 is on the
PATH, with ``glmer`` (bobyqa, Laplace, default settings incl. derivatives) on the same data in
the same run, and prints wall times (model fitting only: after imports in Python, after reading the data in R), log-likelihoods and the largest
difference in estimates (in SE units).

Run: ``PYTHONPATH=src python benchmarks/bench_glmm.py [--therapists 1000 --patients 50]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import alliancetrack as at

R_CODE = """
suppressPackageStartupMessages(library(lme4))
d <- read.csv(commandArgs(TRUE)[1])
t0 <- proc.time()[["elapsed"]]
f <- glmer(n_ruptures ~ pd + trained + offset(log(n_sessions)) + (1 | therapist), data = d,
           family = poisson, control = glmerControl(optimizer = "bobyqa"))
el <- proc.time()[["elapsed"]] - t0
cat(sprintf("%.10f", c(el, as.numeric(logLik(f)), fixef(f), sqrt(diag(as.matrix(vcov(f)))))), "\\n")
"""


def simulate(n_ther: int, per: int, seed: int = 15) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_ther * per
    ther = np.repeat(np.arange(n_ther), per)
    trained = np.repeat(rng.integers(0, 2, n_ther), per)
    pd_ = rng.binomial(1, 0.35, n)
    n_sessions = rng.integers(8, 21, n)
    u = rng.normal(0, 0.4, n_ther)[ther]
    y = rng.poisson(n_sessions * np.exp(-2.0 + 0.5 * pd_ - 0.4 * trained + u))
    return pd.DataFrame({"therapist": ther, "pd": pd_, "trained": trained,
                         "n_sessions": n_sessions, "n_ruptures": y})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--therapists", type=int, default=1000)
    ap.add_argument("--patients", type=int, default=50)
    args = ap.parse_args()
    d = simulate(args.therapists, args.patients)
    formula = "n_ruptures ~ pd + trained + offset(np.log(n_sessions)) + (1 | therapist)"
    at.fit_glmm(formula, simulate(20, 10), family="poisson")  # imports (scipy.stats etc.) first
    t0 = time.perf_counter()
    fit = at.fit_glmm(formula, d, family="poisson")
    t_py = time.perf_counter() - t0
    print(f"{len(d):,} patients, {args.therapists:,} therapists")
    print(f"alliancetrack fit_glmm: {t_py:.2f} s  logLik {fit.llf:.4f}  converged {fit.converged}")
    if shutil.which("Rscript") is None:
        print("Rscript not found: glmer skipped")
        return
    with tempfile.TemporaryDirectory() as tmp:
        csv, script = Path(tmp) / "d.csv", Path(tmp) / "b.R"
        d.to_csv(csv, index=False)
        script.write_text(R_CODE)
        out = subprocess.run(["Rscript", str(script), str(csv)], capture_output=True, text=True,
                             check=True).stdout.split()
    vals = np.array(out, dtype=float)
    p = len(fit.coefs)
    t_r, ll_r, est_r, se_r = vals[0], vals[1], vals[2:2 + p], vals[2 + p:2 + 2 * p]
    diff = np.max(np.abs(fit.coefs["estimate"].to_numpy() - est_r) / se_r)
    print(f"lme4 glmer (bobyqa):    {t_r:.2f} s  logLik {ll_r:.4f}")
    print(f"speed-up {t_r / t_py:.2f}x; logLik difference {fit.llf - ll_r:+.6f}; "
          f"largest estimate difference {diff:.4f} SE")


if __name__ == "__main__":
    main()
