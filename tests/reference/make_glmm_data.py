"""Write the data sets that tests/reference/glmm_lme4.R fits with glmer / glmer.nb.

Deterministic (seeded); run from the project root:
``python tests/reference/make_glmm_data.py`` writes ``tests/reference/glmm_counts.csv``
and ``tests/reference/glmm_repair.csv``.

* counts: 40 therapists x 12 patients; ``n_sessions`` 8-20 attended sessions
  (exposure), ``pd`` (patient has a personality-disorder diagnosis, 0/1),
  ``trained`` (therapist had rupture-repair training, half the therapists),
  ``n_ruptures`` Poisson with a therapist random intercept (SD 0.4) and
  ``n_ruptures_od`` with extra gamma noise per patient (negative binomial,
  theta = 3).
* repair: 30 therapists x 6 patients x 1-4 episodes; ``repaired`` (0/1) on
  episode ``depth`` and ``trained``, with therapist (SD 0.7) and patient
  (SD 0.6) random intercepts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent


def counts(seed: int = 1501) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_t, per = 40, 12
    ther = np.repeat(np.arange(1, n_t + 1), per)
    trained = np.repeat(rng.permutation(np.arange(n_t) % 2), per)
    pd_ = rng.binomial(1, 0.35, n_t * per)
    n_sessions = rng.integers(8, 21, n_t * per)
    u = np.repeat(rng.normal(0, 0.4, n_t), per)
    mu = n_sessions * np.exp(-2.0 + 0.5 * pd_ - 0.4 * trained + u)
    y = rng.poisson(mu)
    g = rng.gamma(3.0, 1 / 3.0, n_t * per)
    y_od = rng.poisson(mu * g)
    return pd.DataFrame({
        "therapist": [f"T{t:02d}" for t in ther],
        "patient": np.arange(1, n_t * per + 1),
        "trained": trained, "pd": pd_, "n_sessions": n_sessions,
        "n_ruptures": y, "n_ruptures_od": y_od,
    })


def repair(seed: int = 1502) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_t, per = 30, 6
    rows = []
    u_t = rng.normal(0, 0.7, n_t)
    trained = rng.permutation(np.arange(n_t) % 2)
    pid = 0
    for t in range(n_t):  # data generation only
        for _ in range(per):
            pid += 1
            u_p = rng.normal(0, 0.6)
            for _ in range(rng.integers(1, 5)):
                depth = rng.gamma(4, 0.25)
                eta = 0.8 - 0.9 * depth + 0.6 * trained[t] + u_t[t] + u_p
                rows.append({
                    "therapist": f"T{t + 1:02d}", "patient": pid, "trained": trained[t],
                    "depth": round(depth, 4), "repaired": int(rng.random() < 1 / (1 + np.exp(-eta))),
                })
    return pd.DataFrame(rows)


if __name__ == "__main__":
    counts().to_csv(HERE / "glmm_counts.csv", index=False)
    repair().to_csv(HERE / "glmm_repair.csv", index=False)
