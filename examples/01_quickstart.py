"""Quick start: from a CSV file to episodes and per-patient predictors.

Usage: python examples/01_quickstart.py [OUTPUT_DIR]   (default: a temporary folder)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import alliancetrack as at


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # 1. read the ratings: one row per session (here the bundled example CSV)
    csv = at.datasets.example_path("sessions")
    data = at.read_alliance(csv, patient="patient", session="session", score="alliance",
                            therapist="therapist", scale="wai-sr")
    print(data)
    print("excluded:\n", data.excluded.to_string(index=False))

    # 2. detect rupture-repair episodes with a literature rule
    episodes = at.detect_episodes(data, rule="stiles-2sd")
    print(f"\n{len(episodes)} episodes in {episodes['patient'].nunique()} patients; "
          f"{int(episodes['repaired'].sum())} repaired")
    episodes.to_csv(out / "episodes.csv", index=False)

    # 3. one row per patient: counts, depth, timing, group
    pred = at.episode_predictors(data, episodes)
    print(pred["group"].value_counts(dropna=False).to_string())
    pred.to_csv(out / "predictors.csv", index=False)

    # 4. look at some trajectories
    p = at.plot_trajectories(data, episodes, group="unrepaired", sample=8, seed=1)
    p.save(out / "trajectories.png", dpi=150, verbose=False)
    print(f"\nwrote episodes.csv, predictors.csv and trajectories.png to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
