"""The fast (batched, vectorised over groups) path of fit_mixed against lme4 and statsmodels."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

import alliancetrack as at
from alliancetrack.models import mixed
from alliancetrack.models.mixed import SingularFitWarning, fit_mixed

# the reference cohort's outcome table, as the lme4 reference was computed
from test_mixed import REF, _outcome_data  # isort: skip


@pytest.fixture(scope="module", name="lme4")
def _lme4() -> pd.DataFrame:
    return pd.read_csv(REF / "cohort101_lme4.csv")


@pytest.fixture(scope="module", name="sessions")
def _sessions() -> pd.DataFrame:
    return pd.read_csv(REF / "cohort101_sessions.csv")


def _check_against_lme4(fit, ref):
    c = fit.coefs.set_index("term")
    for term in c.index:
        assert c.loc[term, "estimate"] == pytest.approx(ref.loc[term, "estimate"], rel=1e-4)
        assert c.loc[term, "se"] == pytest.approx(ref.loc[term, "se"], rel=0.01)


@pytest.mark.parametrize("model", ["outcome_reml", "outcome_ml"])
def test_fast_outcome_models_match_lme4(lme4, model):
    ref = lme4[lme4["model"] == model].set_index("term")
    reml = model.endswith("reml")
    fit = fit_mixed(
        "bdi_post ~ bdi_pre + n_repaired + n_unrepaired", _outcome_data(), reml=reml, engine="fast"
    )
    assert fit.engine == "fast"
    _check_against_lme4(fit, ref)
    if reml:
        assert -2 * fit.llf == pytest.approx(ref.loc["REMLcrit", "estimate"], abs=0.01)
        sd = fit.variance.set_index("group")["sd"]
        assert sd["therapist"] == pytest.approx(ref.loc["sd__therapist", "estimate"], rel=0.01)
        assert sd["Residual"] == pytest.approx(ref.loc["sd__Residual", "estimate"], rel=0.01)
    else:
        assert fit.llf == pytest.approx(ref.loc["logLik", "estimate"], abs=0.01)
    assert fit.converged and not fit.singular


def test_fast_trajectory_matches_lme4(lme4, sessions):
    ref = lme4[lme4["model"] == "trajectory_reml"].set_index("term")
    fit = fit_mixed("alliance ~ session", sessions, groups="patient", re_formula="~session")
    assert fit.engine == "fast"  # chosen automatically
    _check_against_lme4(fit, ref)
    assert -2 * fit.llf == pytest.approx(ref.loc["REMLcrit", "estimate"], abs=0.01)
    v = fit.variance
    sdrows = v[v["term2"].isna()]
    sds = sdrows.set_index(["group", sdrows["term"].fillna("")])["sd"]
    assert sds[("patient", "(Intercept)")] == pytest.approx(
        ref.loc["sd__patient__(Intercept)__NA", "estimate"], rel=0.01
    )
    assert sds[("patient", "session")] == pytest.approx(
        ref.loc["sd__patient__session__NA", "estimate"], rel=0.01
    )
    assert v.loc[v["term2"].notna(), "corr"].item() == pytest.approx(
        ref.loc["sd__patient__(Intercept)__session", "estimate"], abs=0.01
    )
    assert fit.converged and not fit.singular
    assert "engine: fast" in fit.summary()


def _best_statsmodels(formula, d, groups, re_formula, reml):
    """statsmodels' own fits with several optimisers; the best log-likelihood."""
    best = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method in ("lbfgs", "powell", "nm"):
            model = smf.mixedlm(formula, d, groups=d[groups], re_formula=re_formula)
            try:
                res = model.fit(reml=reml, method=method, maxiter=5000)
            except (np.linalg.LinAlgError, ValueError):
                continue
            if np.isfinite(res.llf) and (best is None or res.llf > best.llf):
                best = res
    return best


@pytest.mark.parametrize(
    ("re_formula", "reml"),
    [("~session", True), ("~session", False), (None, True), ("0 + session", True)],
)
def test_fast_equals_statsmodels_on_simulated_cohort(re_formula, reml):
    cohort = at.simulate_cohort(n_patients=80, seed=5, patient_sd=0.4, growth=0.02)
    d = cohort.sessions.dropna(subset=["alliance"]).reset_index(drop=True)
    fast = fit_mixed("alliance ~ session", d, groups="patient", re_formula=re_formula, reml=reml)
    assert fast.engine == "fast"
    sm = _best_statsmodels("alliance ~ session", d, "patient", re_formula, reml)
    # same optimum as statsmodels (never worse), same fixed effects and variances
    assert fast.llf == pytest.approx(sm.llf, abs=0.01)
    assert fast.llf >= sm.llf - 1e-4
    np.testing.assert_allclose(fast.coefs["estimate"], sm.fe_params, rtol=1e-3)
    cov = np.asarray(sm.cov_re)
    sd_fast = fast.variance.loc[fast.variance["term2"].isna(), "sd"].to_numpy()
    np.testing.assert_allclose(sd_fast[:-1], np.sqrt(np.diag(cov)), rtol=2e-2, atol=1e-4)
    assert sd_fast[-1] == pytest.approx(np.sqrt(sm.scale), rel=1e-3)
    # and the same as the statsmodels engine of fit_mixed (same optimiser, other likelihood)
    slow = fit_mixed(
        "alliance ~ session",
        d,
        groups="patient",
        re_formula=re_formula,
        reml=reml,
        engine="statsmodels",
    )
    assert slow.engine == "statsmodels"
    assert fast.llf == pytest.approx(slow.llf, abs=1e-4)
    np.testing.assert_allclose(fast.coefs["estimate"], slow.coefs["estimate"], rtol=1e-4)
    np.testing.assert_allclose(fast.coefs["se"], slow.coefs["se"], rtol=1e-3)


def test_fast_two_random_slopes_equals_statsmodels_engine():
    rng = np.random.default_rng(4)
    n_g, n_per = 60, 10
    g = np.repeat(np.arange(n_g), n_per)
    t = np.tile(np.arange(n_per, dtype=float), n_g)
    x = rng.normal(size=g.size)
    b = rng.multivariate_normal([0, 0, 0], np.diag([0.5, 0.02, 0.1]), size=n_g)
    y = 1 + b[g, 0] + (0.1 + b[g, 1]) * t + (0.3 + b[g, 2]) * x + rng.normal(0, 0.5, g.size)
    d = pd.DataFrame({"y": y, "t": t, "x": x, "g": g})
    fast = fit_mixed("y ~ t + x", d, groups="g", re_formula="~t + x")
    slow = fit_mixed("y ~ t + x", d, groups="g", re_formula="~t + x", engine="statsmodels")
    assert fast.engine == "fast" and fast.converged
    assert fast.llf >= slow.llf - 1e-6 and fast.llf == pytest.approx(slow.llf, abs=1e-3)
    np.testing.assert_allclose(fast.coefs["estimate"], slow.coefs["estimate"], rtol=1e-3)
    np.testing.assert_allclose(fast.coefs["se"], slow.coefs["se"], rtol=1e-2)
    assert (fast.variance["group"] == "g").sum() == 6  # 3 SDs and 3 correlations


def test_analytic_gradient_matches_differences(sessions):
    d = sessions.dropna(subset=["alliance"])
    X = np.column_stack([np.ones(len(d)), d["session"]])
    codes, uniq = pd.factorize(d["patient"])
    for reml in (True, False):
        prof = mixed._BatchProfile(X, X, d["alliance"].to_numpy(), codes, len(uniq), reml)
        for x in ([1.0, 0.0, 1.0], [1.6, -0.02, 0.12], [0.5, 0.3, 0.0]):
            x = np.asarray(x)
            h = 1e-6
            num = [(prof.llf(x + h * e) - prof.llf(x - h * e)) / (2 * h) for e in np.eye(3)]
            np.testing.assert_allclose(prof.score(x), num, rtol=1e-5, atol=1e-4)


def test_fast_result_surface_agrees_with_statsmodels_object(sessions):
    fit = fit_mixed("alliance ~ session", sessions, groups="patient", re_formula="~session")
    # fitted values (fixed part + BLUPs) computed by the fast path ...
    own = fit.fitted.to_numpy()
    # ... equal statsmodels' at the same parameters (its result is built lazily)
    np.testing.assert_allclose(own, np.asarray(fit.result.fittedvalues), rtol=1e-6, atol=1e-8)
    new = pd.DataFrame({"session": [1.0, 10.0]})
    np.testing.assert_allclose(
        fit.predict(new), np.asarray(fit.result.predict(exog=new)), rtol=1e-10
    )
    assert fit.nobs == int(sessions["alliance"].notna().sum())
    assert fit.n_groups == sessions["patient"].nunique()


def test_singular_fit_on_fast_path_warns():
    rng = np.random.default_rng(8)
    d = pd.DataFrame({"x": rng.normal(size=300), "g": np.repeat(np.arange(30), 10)})
    d["y"] = 2 + 0.4 * d["x"] + rng.normal(size=300)
    d["y"] -= d.groupby("g")["y"].transform("mean") - d["y"].mean()  # no between-group variance
    with pytest.warns(SingularFitWarning):
        fit = fit_mixed("y ~ x", d, groups="g")
    assert fit.engine == "fast" and fit.singular


def test_variance_components_fall_back_to_statsmodels():
    rng = np.random.default_rng(2)
    t = np.repeat(np.arange(6), 20)
    p = np.repeat(np.arange(30), 4)
    y = rng.normal(size=6)[t] + rng.normal(0, 0.5, 30)[p] + rng.normal(size=120)
    d = pd.DataFrame({"y": y, "therapist": t, "patient": p})
    fit = fit_mixed("y ~ 1", d, groups="therapist", vc_formula={"patient": "0 + C(patient)"})
    assert fit.engine == "statsmodels"
    with pytest.raises(at.AllianceDataError, match="engine='fast'"):
        fit_mixed(
            "y ~ 1", d, groups="therapist", vc_formula={"patient": "0 + C(patient)"}, engine="fast"
        )
    with pytest.raises(at.AllianceDataError, match="unknown engine"):
        fit_mixed("y ~ 1", d, groups="therapist", engine="gpu")
