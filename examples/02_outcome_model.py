"""Episodes -> predictors -> outcome model (therapist random intercept) -> forest plot.

Usage: python examples/02_outcome_model.py [OUTPUT_DIR]   (default: a temporary folder)
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import pandas as pd

import alliancetrack as at


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = at.read_alliance(at.datasets.example_path("sessions"), therapist="therapist",
                            scale="wai-sr")
    outcomes = pd.read_csv(at.datasets.example_path("outcomes"))  # patient, therapist, bdi_*

    episodes = at.detect_episodes(data, rule="stiles-2sd")
    pred = at.episode_predictors(data, episodes)

    # post-treatment BDI on baseline BDI and the numbers of repaired and unrepaired ruptures,
    # patients nested in therapists (lme4-compatible REML fit)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", at.DroppedPatientsWarning)
        fit = at.outcome_model(pred, outcomes, outcome="bdi_post", baseline="bdi_pre",
                               predictors=["n_repaired", "n_unrepaired"])
    for w in caught:
        print("note:", w.message)
    print(fit.summary())
    fit.coefs.to_csv(out / "outcome_model.csv", index=False)

    # group contrasts (no rupture vs repaired vs unrepaired), as in Eubanks et al. (2018)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        contrasts = at.group_contrasts(pred, outcomes, outcome="bdi_post", baseline="bdi_pre")
    print(contrasts[["contrast", "comparison", "estimate", "ci_low", "ci_high", "p_value",
                     "d"]].to_string(index=False))
    contrasts.to_csv(out / "group_contrasts.csv", index=False)

    at.plot_coefficients(fit).save(out / "coefficients.png", dpi=150, verbose=False)
    at.plot_coefficients(contrasts, xlabel="Difference in post-treatment BDI (95% CI)").save(
        out / "group_contrasts.png", dpi=150, verbose=False)
    at.plot_cohort(data, pred).save(out / "cohort.png", dpi=150, verbose=False)
    print(f"\nwrote outcome_model.csv, group_contrasts.csv and figures to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
