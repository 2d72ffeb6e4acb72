"""Simulated strategy study with a planted effect (tests/test_strategy_effects.py, strategy_glmer.R).

Run ``python tests/reference/make_strategy_data.py`` to rewrite ``strategy_sim.csv``; the test
re-simulates with the same function and checks the file is unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

#: planted log-odds: intercept, immediate, expressive, pd, immediate:pd, expressive:pd
TRUTH = {"(Intercept)": -0.4, "any_immediate": 0.2, "any_expressive": 1.0, "pd": -0.3,
         "any_immediate:pd": 0.0, "any_expressive:pd": -0.8}
SD_THERAPIST, SD_PATIENT = 0.5, 0.4


def simulate(seed: int = 17, n_therapists: int = 40, patients_per_therapist: int = 6,
             episodes_per_patient: int = 4) -> pd.DataFrame:
    """One row per episode (the columns of link_strategies plus ``pd``)."""
    rng = np.random.default_rng(seed)
    n_pat = n_therapists * patients_per_therapist
    therapist = np.repeat(np.arange(n_therapists), patients_per_therapist)
    pd_ = (rng.random(n_pat) < 0.4).astype(int)
    u_t = rng.normal(0, SD_THERAPIST, n_therapists)[therapist]
    u_p = rng.normal(0, SD_PATIENT, n_pat)
    rows = np.repeat(np.arange(n_pat), episodes_per_patient)
    n = len(rows)
    n_imm = rng.poisson(0.9, n)
    n_exp = rng.poisson(0.8, n)
    a_i, a_e, m = (n_imm > 0).astype(float), (n_exp > 0).astype(float), pd_[rows]
    eta = (TRUTH["(Intercept)"] + TRUTH["any_immediate"] * a_i + TRUTH["any_expressive"] * a_e
           + TRUTH["pd"] * m + TRUTH["any_immediate:pd"] * a_i * m
           + TRUTH["any_expressive:pd"] * a_e * m + u_t[rows] + u_p[rows])
    repaired = rng.random(n) < 1 / (1 + np.exp(-eta))
    return pd.DataFrame({
        "patient": rows + 1, "episode": np.tile(np.arange(1, episodes_per_patient + 1), n_pat),
        "therapist": [f"T{t + 1:02d}" for t in therapist[rows]],
        "n_strategies": n_imm + n_exp, "n_immediate": n_imm, "n_expressive": n_exp,
        "repaired": repaired, "pd": m,
    })


if __name__ == "__main__":  # pragma: no cover
    simulate().to_csv(Path(__file__).with_name("strategy_sim.csv"), index=False)
