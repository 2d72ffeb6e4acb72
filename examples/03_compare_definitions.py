"""Several rupture definitions side by side: every preset and change points, their agreement
with each other and with the planted (true) episodes of the example cohort, and figures.

Usage: python examples/03_compare_definitions.py [OUTPUT_DIR]   (default: a temporary folder)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pandas as pd

import alliancetrack as at


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ex = at.datasets.load_example()
    data = at.read_alliance(ex.sessions, therapist="therapist", scale="wai-sr")

    episodes = {f"rules:{name}": at.detect_episodes(data, rule=name) for name in at.PRESETS}
    episodes["changepoint:l2"] = at.detect_episodes(data, method="changepoint")

    rows = []
    names = list(episodes)
    for i, a in enumerate(names):
        # against the truth planted in the simulated data
        truth = at.compare_episodes(episodes[a], ex.truth, tolerance=1,
                                    patients=data.analysed_patients).overall.iloc[0]
        rows.append({"method_a": a, "method_b": "truth", **truth[["n_episodes_a", "n_matched",
                     "precision", "recall", "kappa"]].to_dict()})
        for b in names[i + 1:]:
            o = at.compare_episodes(episodes[a], episodes[b], tolerance=1,
                                    patients=data.analysed_patients).overall.iloc[0]
            rows.append({"method_a": a, "method_b": b, **o[["n_episodes_a", "n_matched",
                         "precision", "recall", "kappa"]].to_dict()})
    agreement = pd.DataFrame(rows)
    agreement.to_csv(out / "agreement.csv", index=False)
    with pd.option_context("display.width", 120, "display.precision", 2):
        print(agreement.to_string(index=False))

    all_episodes = pd.concat(episodes.values(), ignore_index=True)
    all_episodes.to_csv(out / "episodes.csv", index=False)
    at.plot_episode_summary(all_episodes, data).save(out / "episode_summary.png", dpi=150,
                                                      verbose=False)
    # the same patients under two definitions, with the change-point levels overlaid
    patients = [1, 9, 12, 27]
    for name in ("rules:stiles-2sd", "rules:strauss-1sd", "changepoint:l2"):
        p = at.plot_trajectories(data, episodes[name], patients=patients,
                                 changepoints=name.startswith("changepoint"))
        p.save(out / f"trajectories_{name.replace(':', '_')}.png", dpi=150, verbose=False)
    print(f"\nwrote agreement.csv, episodes.csv and figures to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
