"""Bundled example data and the simulator: deterministic, documented, truth consistent."""

from __future__ import annotations

import filecmp

import numpy as np
import pandas as pd

import alliancetrack as at
from alliancetrack.datasets import EXAMPLE_FILES, example_path
from alliancetrack.datasets.generate import write_example


def test_bundled_example_regenerates_identically(tmp_path):
    write_example(tmp_path)
    for name in EXAMPLE_FILES.values():
        assert filecmp.cmp(tmp_path / name, example_path(name.split("_")[1][:-4]), shallow=False)


def test_example_is_small_and_valid():
    total = sum(example_path(k).stat().st_size for k in EXAMPLE_FILES)
    assert total < 1_000_000
    ex = at.datasets.load_example()
    data = at.read_alliance(ex.sessions, therapist="therapist", scale="wai-sr")
    grid = data.frame["alliance"].dropna() * 12
    assert np.allclose(grid, grid.round())  # WAI-SR item means: steps of 1/12
    assert set(ex.truth["patient"]) <= set(data.patients)


def test_simulation_is_deterministic_given_the_seed():
    a = at.simulate_cohort(40, (6, 12), seed=7)
    b = at.simulate_cohort(40, (6, 12), seed=7)
    c = at.simulate_cohort(40, (6, 12), seed=8)
    pd.testing.assert_frame_equal(a.sessions, b.sessions)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    assert not a.sessions["alliance"].equals(c.sessions["alliance"])


def test_noiseless_episodes_are_found_exactly_by_the_matching_rule():
    sim = at.simulate_cohort(300, (8, 16), noise_sd=0, growth=0, missing_rate=0, grid=0,
                             patient_sd=0.2, therapist_sd=0.1, depth=(0.8, 1.4),
                             duration=(1, 3), rupture_rate=0.08, seed=3)
    data = at.read_alliance(sim.sessions, therapist="therapist", scale="wai-sr")
    found = at.detect_episodes(data, rule="strauss-1sd", unit="points", threshold=0.5)
    cols = ["patient", "rupture_session", "repair_session", "repaired"]
    assert len(sim.truth) > 50
    pd.testing.assert_frame_equal(found[cols].reset_index(drop=True),
                                  sim.truth[cols].reset_index(drop=True), check_dtype=False)
    np.testing.assert_allclose(found["depth"], sim.truth["depth"], atol=1e-9)


def test_outcomes_follow_the_true_counts():
    sim = at.simulate_cohort(2000, (8, 16), outcome_effects={"n_repaired": -4, "n_unrepaired": 5},
                             outcome_sd=1.0, seed=11)
    o = sim.outcomes
    X = np.column_stack([np.ones(len(o)), o["bdi_pre"], o["n_repaired"], o["n_unrepaired"]])
    beta = np.linalg.lstsq(X, o["bdi_post"], rcond=None)[0]
    assert abs(beta[2] + 4) < 0.3 and abs(beta[3] - 5) < 0.3
    counts = sim.truth.groupby("patient")["repaired"].sum()
    assert (o.set_index("patient")["n_repaired"].reindex(counts.index) == counts).all()
