"""Tests for alliancetrack.models.session_level."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import alliancetrack as at

REF = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference"


@pytest.fixture(scope="module")
def sessions():
    return pd.read_csv(REF / "cohort101_sessions.csv")


def test_within_plus_between_is_original(sessions):
    out = at.split_within_between(sessions, "alliance")
    ok = sessions["alliance"].notna()
    np.testing.assert_allclose(
        (out["alliance_between"] + out["alliance_within"])[ok], sessions["alliance"][ok]
    )
    assert out.loc[~ok, "alliance_within"].isna().all()
    # within part averages zero per patient; between part is constant per patient
    assert out.groupby("patient")["alliance_within"].mean().abs().max() < 1e-12
    assert (out.groupby("patient")["alliance_between"].nunique() == 1).all()
    by_hand = sessions.groupby("patient")["alliance"].mean()
    np.testing.assert_allclose(out["alliance_between"], sessions["patient"].map(by_hand))
    assert list(out.columns[:4]) == list(sessions.columns)  # input kept, copy returned
    assert "alliance_within" not in sessions.columns


def test_center_between_and_detrend(sessions):
    c = at.split_within_between(sessions, "alliance", center_between=True)
    assert c.groupby("patient")["alliance_between"].first().mean() == pytest.approx(0, abs=1e-12)
    dt = at.split_within_between(sessions, "alliance", detrend=True)
    one = dt[(dt["patient"] == 1) & dt["alliance"].notna()]
    resid = np.polyval(np.polyfit(one["session"], one["alliance"], 1), one["session"])
    np.testing.assert_allclose(one["alliance_within"], one["alliance"] - resid, atol=1e-12)


def test_lag_by_session_number_by_hand(sessions):
    out = at.lag_within(sessions, "alliance")
    lookup = {
        (p, s): a
        for p, s, a in sessions[["patient", "session", "alliance"]].itertuples(index=False)
    }
    expected = [
        lookup.get((p, s - 1), np.nan)
        for p, s in zip(sessions["patient"], sessions["session"], strict=True)
    ]
    np.testing.assert_array_equal(out["alliance_lag1"].to_numpy(), np.array(expected, float))
    # row order preserved even when the input is shuffled
    shuf = sessions.sample(frac=1, random_state=1)
    out2 = at.lag_within(shuf, "alliance", lag=2, name="prev2")
    exp2 = [
        lookup.get((p, s - 2), np.nan)
        for p, s in zip(shuf["patient"], shuf["session"], strict=True)
    ]
    np.testing.assert_array_equal(out2["prev2"].to_numpy(), np.array(exp2, float))
    assert (out2.index == shuf.index).all()


def test_lag_gap_is_not_bridged():
    d = pd.DataFrame(
        {
            "patient": ["a"] * 3 + ["b"] * 2,
            "session": [1, 2, 4, 1, 2],
            "x": [1.0, 2.0, 4.0, 10.0, 20.0],
        }
    )
    assert at.lag_within(d, "x")["x_lag1"].tolist()[:3] == [
        pytest.approx(np.nan, nan_ok=True),
        1.0,
        pytest.approx(np.nan, nan_ok=True),
    ]
    lead = at.lag_within(d, "x", lag=-1)["x_lead1"]
    np.testing.assert_array_equal(lead.to_numpy(), [2.0, np.nan, np.nan, 20.0, np.nan])


def test_errors():
    d = pd.DataFrame({"patient": [1, 1], "session": [1, 1], "x": [1.0, 2.0]})
    with pytest.raises(at.AllianceDataError, match="more than one row"):
        at.lag_within(d, "x")
    with pytest.raises(at.AllianceDataError, match="non-zero"):
        at.lag_within(d, "x", lag=0)
    with pytest.raises(at.AllianceDataError, match="'y'"):
        at.split_within_between(d, "y")


def test_recipe_recovers_within_effect():
    """Falkenström recipe on simulated data with a known within-patient effect."""
    rng = np.random.default_rng(4)
    rows = []
    for p in range(60):
        a_mean = rng.normal(3.5, 0.5)
        level = rng.normal(20, 5) - 4 * (a_mean - 3.5)  # between-patient confounding
        a = a_mean + rng.normal(0, 0.4, 12)
        bdi = np.empty(12)
        bdi[0] = level
        for t in range(1, 12):
            bdi[t] = level - 0.3 * t - 2.0 * (a[t - 1] - a_mean) + rng.normal(0, 1.5)
        rows += [(p, t + 1, a[t], bdi[t]) for t in range(12)]
    d = pd.DataFrame(rows, columns=["patient", "session", "alliance", "bdi"])
    d = at.split_within_between(d, "alliance")
    d = at.lag_within(d, "bdi", lag=-1, name="bdi_next")
    fit = at.fit_mixed(
        "bdi_next ~ alliance_within + alliance_between + session", d, groups="patient"
    )
    est = fit.coefs.set_index("term").loc["alliance_within"]
    assert est["ci_low"] < -2.0 < est["ci_high"]
    assert fit.n_dropped == 60  # the last session of each patient has no next session
