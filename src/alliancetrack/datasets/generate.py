"""Regenerate the bundled example data: ``python -m alliancetrack.datasets.generate [DIR]``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..simulate import simulate_cohort
from . import EXAMPLE_FILES

#: The exact arguments the bundled files were made with.
EXAMPLE_ARGS = dict(n_patients=150, n_sessions=(8, 20), n_therapists=15, scale="wai-sr",
                    rupture_rate=0.06, repair_rate=0.7, depth=(0.8, 1.5), duration=(1, 3),
                    noise_sd=0.15, missing_rate=0.05, seed=2018)


def write_example(folder: Path) -> None:
    """Write the example CSVs into ``folder``."""
    sim = simulate_cohort(**EXAMPLE_ARGS)
    rng = np.random.default_rng(EXAMPLE_ARGS["seed"] + 1)
    # four early drop-outs with two rated sessions (excluded from episode detection); the
    # last two also lack a post-treatment BDI
    ids = np.arange(151, 155)
    dropouts = pd.DataFrame({
        "patient": np.repeat(ids, 2),
        "therapist": np.repeat([f"T{j:02d}" for j in (1, 4, 7, 10)], 2),
        "session": np.tile([1, 2], 4),
        "alliance": np.round(rng.normal(3.2, 0.4, 8) * 12) / 12,
    })
    outcomes = sim.outcomes[["patient", "therapist", "bdi_pre", "bdi_post"]]
    extra = pd.DataFrame({"patient": ids, "therapist": dropouts["therapist"].iloc[::2].to_numpy(),
                          "bdi_pre": np.round(rng.normal(26, 6, 4), 1),
                          "bdi_post": [round(rng.normal(22, 6), 1), round(rng.normal(22, 6), 1),
                                       np.nan, np.nan]})
    tables = {"sessions": pd.concat([sim.sessions, dropouts], ignore_index=True),
              "outcomes": pd.concat([outcomes, extra], ignore_index=True), "truth": sim.truth}
    folder.mkdir(parents=True, exist_ok=True)
    for key, df in tables.items():
        df.to_csv(folder / EXAMPLE_FILES[key], index=False)


if __name__ == "__main__":  # pragma: no cover
    write_example(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
