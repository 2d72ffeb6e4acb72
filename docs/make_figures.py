"""Regenerate the figures of the documentation (PNG files in docs/figures/).

Run from the repository root: ``python docs/make_figures.py``.  Uses the
bundled example cohort, so the figures are reproducible.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pandas as pd

import alliancetrack as at

OUT = Path(__file__).resolve().parent / "figures"
DPI = 110
#: Patients that show typical cases: V-shaped dip and repair, slow repair, a
#: persistent drop, a gap in the ratings.
PATIENTS = [1, 9, 12, 27]


def main(out: Path = OUT) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    ex = at.datasets.load_example()
    data = at.read_alliance(ex.sessions, therapist="therapist", scale="wai-sr")
    written = []

    def save(plot, name: str) -> None:
        path = out / f"{name}.png"
        plot.save(path, dpi=DPI, verbose=False)
        written.append(path)

    episodes = {name: at.detect_episodes(data, rule=name) for name in at.PRESETS}
    episodes["changepoint"] = at.detect_episodes(data, method="changepoint")
    for name, ep in episodes.items():
        save(at.plot_trajectories(data, ep, patients=PATIENTS, ncol=4), f"trajectories-{name}")
    save(at.plot_trajectories(data, episodes["changepoint"], patients=PATIENTS, ncol=4,
                              changepoints=True), "trajectories-changepoint-levels")
    pred = at.episode_predictors(data, episodes["stiles-2sd"])
    save(at.plot_cohort(data, pred), "cohort-stiles-2sd")
    save(at.plot_episode_summary(pd.concat(episodes.values()), data), "episode-summary")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = at.outcome_model(pred, ex.outcomes)
    save(at.plot_coefficients(fit), "coefficients")
    return written


if __name__ == "__main__":
    paths = main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
    for p in paths:
        print(p)
