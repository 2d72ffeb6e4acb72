"""Tests for alliancetrack.models.outcome: outcome_model, group_contrasts, fit_gee_logistic."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf

import alliancetrack as at
from alliancetrack.models.outcome import DroppedPatientsWarning, FewClustersWarning

REF = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference"


def _predictors_from_truth() -> pd.DataFrame:
    """A predictors-like table built from the reference cohort's true episodes."""
    truth = pd.read_csv(REF / "cohort101_truth.csv")
    patients = pd.read_csv(REF / "cohort101_outcomes.csv")["patient"]
    g = truth.groupby("patient")["repaired"]
    t = pd.DataFrame({"patient": patients, "status": "analysed"})
    t["n_repaired"] = t["patient"].map(g.sum()).fillna(0).astype("Int64")
    t["n_unrepaired"] = (
        t["patient"].map(g.apply(lambda r: int((~r).sum()))).fillna(0).astype("Int64")
    )
    t["n_ruptures"] = t["n_repaired"] + t["n_unrepaired"]
    t["group"] = np.where(
        t["n_ruptures"] == 0,
        "no_rupture",
        np.where(t["n_unrepaired"] > 0, "unrepaired", "repaired"),
    )
    return t


@pytest.fixture(scope="module")
def pred():
    return _predictors_from_truth()


@pytest.fixture(scope="module")
def outcomes():
    return pd.read_csv(REF / "cohort101_outcomes.csv")


@pytest.fixture(scope="module")
def lme4():
    r = pd.read_csv(REF / "cohort101_lme4.csv")
    return r[r["model"] == "outcome_reml"].set_index("term")


def test_outcome_model_matches_lme4(pred, outcomes, lme4):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DroppedPatientsWarning)  # nothing dropped, no warning
        with pytest.warns(FewClustersWarning, match="only 15 therapist clusters"):
            res = at.outcome_model(pred, outcomes, predictors=["n_repaired", "n_unrepaired"])
    assert res.model == "mixed" and res.n == 120 and res.dropped.empty
    c = res.coefs.set_index("term")
    for term in c.index:
        assert c.loc[term, "estimate"] == pytest.approx(lme4.loc[term, "estimate"], rel=1e-4)
        assert c.loc[term, "se"] == pytest.approx(lme4.loc[term, "se"], rel=0.01)
    assert -2 * res.fit.llf == pytest.approx(lme4.loc["REMLcrit", "estimate"], abs=0.01)
    assert "Outcome model (mixed)" in res.summary()


def test_dropped_patients_are_reported(pred, outcomes):
    p = pred.copy()
    p["n_repaired"] = p["n_repaired"].astype("Int64")
    p.loc[p["patient"] == 1, ["status", "n_repaired", "n_unrepaired"]] = [
        "fewer than 3 rated sessions",
        pd.NA,
        pd.NA,
    ]
    p = p[p["patient"] != 2]  # not in the predictors table
    o = outcomes.copy()
    o = o[o["patient"] != 3]  # no outcome row
    o.loc[o["patient"] == 4, "bdi_post"] = np.nan
    o.loc[o["patient"] == 5, "bdi_pre"] = np.nan
    with pytest.warns(DroppedPatientsWarning, match="5 patient"):
        res = at.outcome_model(p, o)
    d = res.dropped.set_index("patient")["reason"]
    assert d[1] == "excluded from episode detection: fewer than 3 rated sessions"
    assert d[2] == "not in the predictors table"
    assert d[3] == "no outcome row"
    assert d[4] == "missing bdi_post"
    assert d[5] == "missing bdi_pre"
    assert res.n == 115 and set(res.data["patient"]).isdisjoint({1, 2, 3, 4, 5})
    # same fit as fitting the kept rows directly
    fit = at.fit_mixed("bdi_post ~ bdi_pre + n_repaired + n_unrepaired", res.data)
    np.testing.assert_allclose(res.coefs["estimate"], fit.coefs["estimate"])
    assert any("not analysed" in n for n in res.notes)


def test_ols_fallback(pred, outcomes):
    d = pred.merge(outcomes, on="patient").astype({"n_repaired": float, "n_unrepaired": float})
    ols = smf.ols("bdi_post ~ bdi_pre + n_repaired + n_unrepaired", d).fit()
    res = at.outcome_model(pred, outcomes, groups=None)
    assert res.model == "ols" and "OLS" in " ".join(res.notes)
    np.testing.assert_allclose(res.coefs["estimate"], ols.params)
    np.testing.assert_allclose(res.coefs["se"], ols.bse)
    np.testing.assert_allclose(res.coefs["p_value"], ols.pvalues)
    one = outcomes.assign(therapist="T01")
    res1 = at.outcome_model(pred, one)
    assert res1.model == "ols" and "at least two clusters" in " ".join(res1.notes)
    with pytest.warns(UserWarning, match="not found"):
        res2 = at.outcome_model(pred, outcomes, groups="site")
    assert res2.model == "ols"
    es = res.effect_size("n_repaired")
    t = ols.tvalues["n_repaired"]
    assert es["r"] == pytest.approx(t / np.sqrt(t**2 + ols.df_resid))


def test_input_errors(pred, outcomes):
    with pytest.raises(at.AllianceDataError, match="n_missing"):
        at.outcome_model(pred, outcomes, predictors=["n_missing"])
    with pytest.raises(at.AllianceDataError, match="more than one row"):
        at.outcome_model(pred, pd.concat([outcomes, outcomes.head(1)]))
    with pytest.raises(at.AllianceDataError, match="same type"):
        at.outcome_model(pred.assign(patient=pred["patient"].astype(str)), outcomes)


def test_group_contrasts_by_hand(pred, outcomes):
    tab = at.group_contrasts(pred, outcomes)
    assert tab["contrast"].tolist() == ["repaired vs unrepaired", "repaired vs no_rupture"]
    # independent: mixed model with the group factor, repaired as reference
    d = pred.merge(outcomes, on="patient")
    fit = at.fit_mixed("bdi_post ~ bdi_pre + C(group, Treatment('repaired'))", d)
    c = fit.coefs.set_index("term")
    for comp in ("unrepaired", "no_rupture"):
        b = c.loc[f"C(group, Treatment('repaired'))[T.{comp}]"]
        row = tab.set_index("comparison").loc[comp]
        assert row["estimate"] == pytest.approx(-b["estimate"], rel=1e-6)
        assert row["se"] == pytest.approx(b["se"], rel=1e-6)
        assert row["ci_low"] == pytest.approx(-b["ci_high"], rel=1e-6)
        df = b["df"]  # the contrast's Satterthwaite df (issue 14), not n - p
        assert 100 < df < 120 - 4
        t = b["statistic"]  # comparison minus repaired; lower BDI is better
        assert row["df"] == pytest.approx(df, rel=1e-6)
        assert row["r"] == pytest.approx(t / np.sqrt(t**2 + df), rel=1e-6)
        # d: adjusted difference over the total SD sqrt(tau^2 + sigma^2), with its CI
        v = fit.variance.set_index("group")["variance"]
        sd_total = np.sqrt(v["therapist"] + v["Residual"])
        assert row["d"] == pytest.approx(b["estimate"] / sd_total, rel=1e-6)
        assert row["d_ci_low"] == pytest.approx(b["ci_low"] / sd_total, rel=1e-6)
        assert row["d_ci_high"] == pytest.approx(b["ci_high"] / sd_total, rel=1e-6)
        assert row["n_comparison"] == int((d["group"] == comp).sum())
    # the planted effects: repaired patients end with lower BDI, favouring repair
    assert (tab["estimate"] < 0).all() and (tab["r"] > 0).all()
    higher = at.group_contrasts(pred, outcomes, better="higher")
    np.testing.assert_allclose(higher["r"], -tab["r"])


def test_group_contrasts_ols_equals_adjusted_difference(pred, outcomes):
    tab = at.group_contrasts(pred, outcomes, groups=None, baseline=None)
    d = pred.merge(outcomes, on="patient")
    m = d.groupby("group")["bdi_post"].mean()
    row = tab.set_index("comparison").loc["unrepaired"]
    assert row["estimate"] == pytest.approx(m["repaired"] - m["unrepaired"])
    assert (tab["model"] == "ols").all()


def test_gee_logistic_against_statsmodels_and_independence():
    rng = np.random.default_rng(9)
    n = 400
    d = pd.DataFrame({"therapist": np.arange(n) % 20, "n_unrepaired": rng.integers(0, 3, n)})
    u = rng.normal(0, 0.5, 20)[d["therapist"]]
    d["dropout"] = rng.random(n) < 1 / (1 + np.exp(-(-1.2 + 0.6 * d["n_unrepaired"] + u)))
    d.loc[0, "n_unrepaired"] = np.nan
    res = at.fit_gee_logistic("dropout ~ n_unrepaired", d, small_sample=False)
    assert res.cov_type == "robust" and np.isinf(res.df)
    assert res.n_dropped == 1 and res.nobs == n - 1
    c = res.coefs.set_index("term")
    np.testing.assert_allclose(c["odds_ratio"], np.exp(c["estimate"]))
    np.testing.assert_allclose(
        c["or_ci_low"], np.exp(c["estimate"] - 1.959964 * c["se"]), rtol=1e-6
    )
    # with an independence working correlation GEE = logistic regression (same estimates)
    dd = d.dropna()
    glm = smf.glm(
        "dropout ~ n_unrepaired", dd.astype({"dropout": int}), family=sm.families.Binomial()
    ).fit()
    gee_ind = smf.gee(
        "dropout ~ n_unrepaired",
        groups="therapist",
        data=dd.astype({"dropout": int}),
        family=sm.families.Binomial(),
        cov_struct=sm.cov_struct.Independence(),
    ).fit()
    np.testing.assert_allclose(gee_ind.params, glm.params, rtol=1e-6)
    # and the exchangeable estimate is close to it
    assert c.loc["n_unrepaired", "estimate"] == pytest.approx(glm.params["n_unrepaired"], abs=0.15)
    assert "Logistic GEE" in res.summary()
    with pytest.raises(at.AllianceDataError, match="0/1"):
        at.fit_gee_logistic("n_unrepaired ~ therapist", d)
