"""Reliability table of rupture probabilities (simulation.calibration)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from alliancetrack.simulation.calibration import calibration_table, in_rupture


def _clustered(n_patients=20, n_sessions=10, p=0.55):
    """Every session at probability ``p``; half the patients wholly in a rupture."""
    probs = pd.DataFrame({"patient": np.repeat(np.arange(1, n_patients + 1), n_sessions),
                          "session": np.tile(np.arange(1, n_sessions + 1), n_patients),
                          "p_rupture": p})
    truth = pd.DataFrame({"patient": np.arange(1, n_patients // 2 + 1),
                          "rupture_session": 1.0, "repair_session": np.nan})
    return probs, truth


def test_in_rupture_runs_to_the_end_when_unrepaired():
    s = pd.DataFrame({"patient": [1] * 5 + [2] * 3, "session": [1, 2, 3, 4, 5, 1, 2, 3]})
    t = pd.DataFrame({"patient": [1, 2], "rupture_session": [4.0, 1.0],
                      "repair_session": [np.nan, 2.0]})
    assert in_rupture(s, t).tolist() == [False, False, False, True, True, True, False, False]


def test_table_by_hand():
    p = pd.DataFrame({"patient": [1, 1, 1, 1, 2, 2, 2],
                      "session": [1, 2, 3, 4, 1, 2, 3],
                      "p_rupture": [0.05, 0.15, 0.95, np.nan, 0.92, 0.12, 0.08]})
    t = pd.DataFrame({"patient": [1, 2], "rupture_session": [2.0, 1.0],
                      "repair_session": [4.0, 2.0]})
    tab = calibration_table(p, t, bins=10, n_boot=0)
    assert tab["bin_low"].tolist() == [0.0, 0.1, 0.9]
    assert tab["n"].tolist() == [2, 2, 2]            # the missing probability is left out
    assert tab["n_patients"].tolist() == [2, 2, 2]
    # bin 0.0: sessions (1,1) no, (2,3) no; bin 0.1: (1,2) yes, (2,2) no; bin 0.9: both yes
    assert tab["observed"].tolist() == [0.0, 0.5, 1.0]
    np.testing.assert_allclose(tab["mean_p"], [0.065, 0.135, 0.935])
    np.testing.assert_allclose(tab["gap"], tab["observed"] - tab["mean_p"])
    y = np.array([0, 1, 1, 1, 0, 0])
    pr = np.array([0.05, 0.15, 0.95, 0.92, 0.12, 0.08])
    assert tab.attrs["brier"] == pytest.approx(np.mean((pr - y) ** 2))
    assert tab[["ci_low", "ci_high"]].isna().all().all()  # n_boot=0: no intervals


def test_interval_resamples_patients_not_sessions():
    # 20 patients, 10 sessions each, half of the patients wholly in a rupture: the bin's
    # observed share is a binomial over 20 patients (not 200 sessions), so its 95% interval
    # is [0.3, 0.7] (binomial quantiles), far wider than a session-level interval.
    probs, truth = _clustered()
    tab = calibration_table(probs, truth, bins=10, n_boot=4000, seed=3)
    row = tab.iloc[0]
    assert row["observed"] == 0.5 and row["n"] == 200 and row["n_patients"] == 20
    lo, hi = stats.binom.ppf([0.025, 0.975], 20, 0.5) / 20
    assert row["ci_low"] == pytest.approx(lo, abs=0.05)
    assert row["ci_high"] == pytest.approx(hi, abs=0.05)
    session_level = 1.96 * np.sqrt(0.25 / 200)
    assert row["ci_high"] - row["ci_low"] > 2.5 * (2 * session_level)


def test_interval_is_degenerate_when_every_patient_agrees():
    probs, _ = _clustered()
    truth = pd.DataFrame({"patient": np.arange(1, 21), "rupture_session": 1.0,
                          "repair_session": np.nan})
    row = calibration_table(probs, truth, n_boot=300).iloc[0]
    assert (row["ci_low"], row["observed"], row["ci_high"]) == (1.0, 1.0, 1.0)


def test_deterministic_and_seeded():
    probs, truth = _clustered(n_patients=30)
    rng = np.random.default_rng(0)
    probs["p_rupture"] = rng.uniform(0, 1, len(probs))
    a = calibration_table(probs, truth, n_boot=200, seed=1)
    b = calibration_table(probs, truth, n_boot=200, seed=1)
    c = calibration_table(probs, truth, n_boot=200, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs == b.attrs
    assert not np.allclose(a["ci_low"], c["ci_low"])
    assert a["n"].sum() == len(probs)
    assert (a["ci_low"] <= a["ci_high"]).all()
    lo, hi = a.attrs["brier_ci"]
    assert lo <= a.attrs["brier"] <= hi


@pytest.mark.parametrize("kwargs, message", [
    ({"bins": 0}, "bins"), ({"n_boot": -1}, "n_boot"), ({"level": 1.0}, "level"),
])
def test_bad_arguments(kwargs, message):
    probs, truth = _clustered()
    with pytest.raises(ValueError, match=message):
        calibration_table(probs, truth, **kwargs)


def test_probability_out_of_range_is_named():
    probs, truth = _clustered()
    probs.loc[3, "p_rupture"] = 1.2
    with pytest.raises(ValueError, match=r"rows \[3\]"):
        calibration_table(probs, truth)


def test_missing_columns_are_named():
    probs, truth = _clustered()
    with pytest.raises(ValueError, match=r"probabilities lacks the column\(s\) \['p_rupture'\]"):
        calibration_table(probs.drop(columns="p_rupture"), truth)
    with pytest.raises(ValueError, match=r"truth lacks the column\(s\) \['repair_session'\]"):
        calibration_table(probs, truth.drop(columns="repair_session"))
