"""Tests for alliancetrack.models.mixed: lme4 reference, wrong-optimum case, properties."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import optimize

import alliancetrack as at
from alliancetrack.models.mixed import ConvergenceWarning, SingularFitWarning, fit_mixed

REF = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference"


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------


def _outcome_data() -> pd.DataFrame:
    truth = pd.read_csv(REF / "cohort101_truth.csv")
    outcomes = pd.read_csv(REF / "cohort101_outcomes.csv")
    counts = truth.groupby("patient")["repaired"].agg(
        n_repaired="sum", n_unrepaired=lambda r: int((~r.astype(bool)).sum())
    )
    d = outcomes.merge(counts, on="patient", how="left")
    return d.fillna({"n_repaired": 0, "n_unrepaired": 0})


@pytest.fixture(scope="module")
def lme4() -> pd.DataFrame:
    return pd.read_csv(REF / "cohort101_lme4.csv")


@pytest.fixture(scope="module")
def sessions() -> pd.DataFrame:
    return pd.read_csv(REF / "cohort101_sessions.csv")


@pytest.fixture(scope="module")
def trajectory_fit(sessions):
    obs = sessions.dropna(subset=["alliance"])
    # Wald z (lme4's summary), the inference these assertions were written for
    return fit_mixed("alliance ~ session", obs, groups="patient", re_formula="~session", ddf="wald")


def _ref(lme4, model):
    r = lme4[lme4["model"] == model].set_index("term")
    return r


def _check_fixed(fit, ref):
    c = fit.coefs.set_index("term")
    for term in c.index:
        assert c.loc[term, "estimate"] == pytest.approx(ref.loc[term, "estimate"], rel=1e-4)
        assert c.loc[term, "se"] == pytest.approx(ref.loc[term, "se"], rel=0.01)


# ---------------------------------------------------------------------------
# lme4 reference comparisons
# ---------------------------------------------------------------------------


def test_outcome_reml_matches_lme4(lme4):
    ref = _ref(lme4, "outcome_reml")
    fit = fit_mixed("bdi_post ~ bdi_pre + n_repaired + n_unrepaired", _outcome_data())
    _check_fixed(fit, ref)
    v = fit.variance.set_index("group")
    assert v.loc["therapist", "sd"] == pytest.approx(ref.loc["sd__therapist", "estimate"], rel=0.01)
    assert v.loc["Residual", "sd"] == pytest.approx(ref.loc["sd__Residual", "estimate"], rel=0.01)
    assert -2 * fit.llf == pytest.approx(ref.loc["REMLcrit", "estimate"], abs=0.01)
    assert fit.converged and not fit.singular


def test_outcome_ml_matches_lme4(lme4):
    ref = _ref(lme4, "outcome_ml")
    fit = fit_mixed("bdi_post ~ bdi_pre + n_repaired + n_unrepaired", _outcome_data(), reml=False)
    _check_fixed(fit, ref)
    assert fit.llf == pytest.approx(ref.loc["logLik", "estimate"], abs=0.01)


def test_trajectory_reml_matches_lme4(lme4, trajectory_fit):
    ref = _ref(lme4, "trajectory_reml")
    fit = trajectory_fit
    _check_fixed(fit, ref)
    v = fit.variance
    sd = v[v["term2"].isna()].set_index(["group", v[v["term2"].isna()]["term"].fillna("")])["sd"]
    assert sd[("patient", "(Intercept)")] == pytest.approx(
        ref.loc["sd__patient__(Intercept)__NA", "estimate"], rel=0.01
    )
    assert sd[("patient", "session")] == pytest.approx(
        ref.loc["sd__patient__session__NA", "estimate"], rel=0.01
    )
    assert sd[("Residual", "")] == pytest.approx(
        ref.loc["sd__Residual__NA__NA", "estimate"], rel=0.01
    )
    corr = v.loc[v["term2"].notna(), "corr"].item()
    assert corr == pytest.approx(ref.loc["sd__patient__(Intercept)__session", "estimate"], abs=0.01)
    # lme4's REMLcrit; ours may only be lower (a better optimum), by at most 0.01
    assert -2 * fit.llf == pytest.approx(ref.loc["REMLcrit", "estimate"], abs=0.01)
    assert fit.converged and not fit.singular


def test_missing_rows_dropped_and_counted(sessions, trajectory_fit):
    fit = fit_mixed("alliance ~ session", sessions, groups="patient", re_formula="~session")
    assert fit.n_dropped == int(sessions["alliance"].isna().sum())
    assert fit.llf == pytest.approx(trajectory_fit.llf, abs=1e-6)
    assert "dropped" in fit.summary()


# ---------------------------------------------------------------------------
# independent check: lme4's profiled deviance written out in numpy
# ---------------------------------------------------------------------------


def _profiled_deviance(theta, X, Z, y, g, q, reml):
    """lme4's profiled (REML) deviance for one grouping factor, dense per group."""
    L = np.zeros((q, q))
    L[np.tril_indices(q)] = theta
    n, p = X.shape
    logdet = 0.0
    xvx = np.zeros((p, p))
    xvy = np.zeros(p)
    yvy = 0.0
    parts = []
    for gi in np.unique(g):
        m = g == gi
        Zl = Z[m] @ L
        V = np.eye(m.sum()) + Zl @ Zl.T
        c = np.linalg.cholesky(V)
        logdet += 2 * np.log(np.diag(c)).sum()
        Xi = np.linalg.solve(c, X[m])
        yi = np.linalg.solve(c, y[m])
        xvx += Xi.T @ Xi
        xvy += Xi.T @ yi
        yvy += yi @ yi
        parts.append(None)
    beta = np.linalg.solve(xvx, xvy)
    r2 = yvy - xvy @ beta
    if reml:
        dev = logdet + np.linalg.slogdet(xvx)[1] + (n - p) * (1 + np.log(2 * np.pi * r2 / (n - p)))
    else:
        dev = logdet + n * (1 + np.log(2 * np.pi * r2 / n))
    return dev, beta


def _trusted_fit(X, Z, y, g, reml=True):
    q = Z.shape[1]
    k = q * (q + 1) // 2
    best = None
    for start in (np.eye(q)[np.tril_indices(q)], 0.05 * np.eye(q)[np.tril_indices(q)]):
        res = optimize.minimize(
            lambda t: _profiled_deviance(t, X, Z, y, g, q, reml)[0],
            start,
            method="Nelder-Mead",
            options={"xatol": 1e-9, "fatol": 1e-10, "maxiter": 4000 * k},
        )
        if best is None or res.fun < best.fun:
            best = res
    return best.fun, _profiled_deviance(best.x, X, Z, y, g, q, reml)[1]


def test_trajectory_agrees_with_direct_deviance(sessions, trajectory_fit):
    obs = sessions.dropna(subset=["alliance"])
    X = np.column_stack([np.ones(len(obs)), obs["session"]])
    dev, beta = _trusted_fit(X, X, obs["alliance"].to_numpy(), obs["patient"].to_numpy())
    assert -2 * trajectory_fit.llf == pytest.approx(dev, abs=1e-3)
    np.testing.assert_allclose(trajectory_fit.coefs["estimate"], beta, rtol=1e-4)


# ---------------------------------------------------------------------------
# the wrong-optimum case
# ---------------------------------------------------------------------------


def _simulate_trajectories(n_patients=200, seed=7):
    rng = np.random.default_rng(seed)
    n_sess = rng.integers(8, 15, size=n_patients)
    patient = np.repeat(np.arange(n_patients), n_sess)
    session = np.concatenate([np.arange(1, k + 1) for k in n_sess])
    b0 = 3.5 + rng.normal(0, 0.45, n_patients)[patient]
    b1 = 0.017 + rng.normal(0, 0.04, n_patients)[patient]
    y = b0 + b1 * session + rng.normal(0, 0.27, patient.size)
    y = np.round(y * 12) / 12  # WAI-SR item means move in steps of 1/12
    return pd.DataFrame({"patient": patient, "session": session, "alliance": y})


@pytest.mark.parametrize("source", ["reference", "simulated"])
def test_wrong_optimum_of_statsmodels_default_is_avoided(source, sessions, trajectory_fit):
    if source == "reference":
        d = sessions.dropna(subset=["alliance"])
        ours = trajectory_fit
    else:
        d = _simulate_trajectories()
        ours = fit_mixed("alliance ~ session", d, groups="patient", re_formula="~session")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        default = smf.mixedlm(
            "alliance ~ session", d, groups=d["patient"], re_formula="~session"
        ).fit()
        powell = smf.mixedlm(
            "alliance ~ session", d, groups=d["patient"], re_formula="~session"
        ).fit(method="powell")
    # statsmodels' default optimiser stops far below the optimum here ...
    assert default.llf < powell.llf - 10
    # ... fit_mixed reaches the optimum (at least as good as Powell) and says so
    assert ours.llf >= powell.llf - 1e-4
    assert ours.converged
    np.testing.assert_allclose(ours.coefs["estimate"], powell.fe_params, rtol=1e-3)


def test_stuck_optimiser_is_detected_and_recovered(sessions, trajectory_fit, monkeypatch):
    """Simulate an optimiser that stops at statsmodels' wrong optimum."""
    from alliancetrack.models import mixed

    obs = sessions.dropna(subset=["alliance"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = smf.mixedlm("alliance ~ session", obs, groups=obs["patient"], re_formula="~session")
        bad = model.fit()
    model.reml = True
    prof = mixed._Profile(model)
    x_bad = prof.canonical(bad.params_object.get_packed(use_sqrt=True, has_fe=False))
    # the diagnostics flag statsmodels' default end point
    assert not mixed._diagnostics_ok(mixed._diagnose(prof, x_bad))

    real_run = mixed._run

    def stuck_run(prof, method, x0, start, maxiter):
        if method in ("lbfgs", "lbfgsb") and start in ("identity", "small"):
            return mixed._Attempt(method, start, x_bad.copy(), prof.llf(x_bad), True, 1, "stuck")
        return real_run(prof, method, x0, start, maxiter)

    from alliancetrack.models.lmm import optimizer

    monkeypatch.setattr(optimizer, "_run", stuck_run)
    fit = fit_mixed("alliance ~ session", obs, groups="patient", re_formula="~session")
    assert fit.llf == pytest.approx(trajectory_fit.llf, abs=1e-5)
    assert fit.converged
    att = fit.attempts
    assert len(att) >= 6 and not fit.optimizer.startswith("lbfgsb (start: identity")
    assert att["llf"].min() == pytest.approx(bad.llf, abs=1e-6)


def test_bad_user_start_is_recovered(sessions, trajectory_fit):
    obs = sessions.dropna(subset=["alliance"])
    fit = fit_mixed(
        "alliance ~ session", obs, groups="patient", re_formula="~session", start=[30.0, -5.0, 40.0]
    )
    assert fit.llf == pytest.approx(trajectory_fit.llf, abs=1e-5)
    assert fit.attempts["start"].iloc[0] == "user"


def test_unverified_optimum_warns(sessions):
    obs = sessions.dropna(subset=["alliance"])
    with pytest.warns(ConvergenceWarning, match="could not verify"):
        fit = fit_mixed(
            "alliance ~ session",
            obs,
            groups="patient",
            re_formula="~session",
            optimizers=["lbfgsb"],
            maxiter=2,
        )
    assert not fit.converged


# ---------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------


def test_zero_group_variance_equals_ols_and_warns_singular():
    rng = np.random.default_rng(3)
    n = 200
    d = pd.DataFrame({"x": rng.normal(size=n), "therapist": np.repeat(np.arange(20), 10)})
    d["y"] = 1 + 0.5 * d["x"] + rng.normal(size=n)
    # remove any between-therapist signal in the residuals: exact zero variance
    ols = sm.OLS(d["y"], sm.add_constant(d[["x"]])).fit()
    resid = ols.resid - ols.resid.groupby(d["therapist"]).transform("mean")
    d["y"] = ols.fittedvalues + resid
    with pytest.warns(SingularFitWarning):
        fit = fit_mixed("y ~ x", d, groups="therapist")
    assert fit.singular
    ols = sm.OLS(d["y"], sm.add_constant(d[["x"]])).fit()
    np.testing.assert_allclose(fit.coefs["estimate"], ols.params, rtol=1e-6)
    np.testing.assert_allclose(fit.coefs["se"], ols.bse, rtol=1e-4)
    # REML residual variance = OLS residual mean square
    assert fit.variance.set_index("group").loc["Residual", "variance"] == pytest.approx(
        ols.mse_resid, rel=1e-5
    )


def test_nested_variance_components_match_direct_deviance():
    rng = np.random.default_rng(11)
    rows = []
    for t in range(8):
        ut = rng.normal(0, 0.5)
        for p in range(5):
            up = rng.normal(0, 0.4)
            for s in range(1, 7):
                rows.append((t, f"{t}-{p}", s, 3 + 0.02 * s + ut + up + rng.normal(0, 0.3)))
    d = pd.DataFrame(rows, columns=["therapist", "patient", "session", "alliance"])
    fit = fit_mixed(
        "alliance ~ session", d, groups="therapist", vc_formula={"patient": "0 + C(patient)"}
    )
    assert list(fit.variance["group"]) == ["therapist", "patient:therapist", "Residual"]
    # independent: two-level intercept deviance evaluated at our estimate and optimised directly
    X = np.column_stack([np.ones(len(d)), d["session"]])
    y = d["alliance"].to_numpy()
    P = pd.get_dummies(d["patient"]).to_numpy(float)

    def dev(theta):
        n, p = X.shape
        ld, xvx, xvy, yvy = 0.0, np.zeros((p, p)), np.zeros(p), 0.0
        for t in np.unique(d["therapist"]):
            m = (d["therapist"] == t).to_numpy()
            Zt = np.column_stack([np.ones(m.sum()), P[m][:, P[m].any(axis=0)]])
            lam = np.r_[theta[0], np.full(Zt.shape[1] - 1, theta[1])]
            Zl = Zt * lam
            c = np.linalg.cholesky(np.eye(m.sum()) + Zl @ Zl.T)
            ld += 2 * np.log(np.diag(c)).sum()
            Xi, yi = np.linalg.solve(c, X[m]), np.linalg.solve(c, y[m])
            xvx += Xi.T @ Xi
            xvy += Xi.T @ yi
            yvy += yi @ yi
        beta = np.linalg.solve(xvx, xvy)
        r2 = yvy - xvy @ beta
        return ld + np.linalg.slogdet(xvx)[1] + (n - p) * (1 + np.log(2 * np.pi * r2 / (n - p)))

    res = optimize.minimize(
        dev, [1.0, 1.0], method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10}
    )
    assert -2 * fit.llf == pytest.approx(res.fun, abs=1e-4)
    sd = fit.variance.set_index("group")["sd"]
    assert sd["therapist"] / sd["Residual"] == pytest.approx(abs(res.x[0]), rel=1e-3)
    assert sd["patient:therapist"] / sd["Residual"] == pytest.approx(abs(res.x[1]), rel=1e-3)


def test_effect_size_formulas(trajectory_fit):
    es = trajectory_fit.effect_size("session")
    t = trajectory_fit.coefs.set_index("term").loc["session", "statistic"]
    df = trajectory_fit.nobs - 2
    assert es["df"] == df
    assert es["r"] == pytest.approx(t / np.sqrt(t**2 + df))
    assert es["d"] == pytest.approx(2 * t / np.sqrt(df))
    # d and r are the same effect: d = 2r / sqrt(1 - r^2)
    assert es["d"] == pytest.approx(2 * es["r"] / np.sqrt(1 - es["r"] ** 2))
    assert trajectory_fit.effect_size("Intercept")["term"] == "(Intercept)"
    with pytest.raises(at.AllianceDataError, match="not a fixed effect"):
        trajectory_fit.effect_size("nope")


def test_result_surface(trajectory_fit, sessions):
    fit = trajectory_fit
    assert list(fit.coefs.columns) == [
        "term",
        "estimate",
        "se",
        "statistic",
        "p_value",
        "ci_low",
        "ci_high",
        "df",
    ]
    c = fit.coefs.iloc[1]
    assert c["ci_low"] == pytest.approx(c["estimate"] - 1.959964 * c["se"], rel=1e-6)
    assert len(fit.fitted) == fit.nobs
    # fitted = fixed part + BLUPs, so residuals average ~0 within patient
    obs = sessions.dropna(subset=["alliance"]).reset_index(drop=True)
    res = obs["alliance"] - fit.fitted
    assert abs(res.mean()) < 1e-6
    new = pd.DataFrame({"session": [1.0, 10.0]})
    pred = fit.predict(new)
    b = fit.coefs.set_index("term")["estimate"]
    np.testing.assert_allclose(pred, b["(Intercept)"] + b["session"] * new["session"])
    assert "REML criterion" in fit.summary()
    assert fit.result is not None and "patient" in fit.optimizer or fit.optimizer


def test_input_errors(sessions):
    with pytest.raises(at.AllianceDataError, match="therapist_id"):
        fit_mixed("alliance ~ session", sessions, groups="therapist_id")
    with pytest.raises(at.AllianceDataError, match="optimizers"):
        fit_mixed("alliance ~ session", sessions, groups="patient", optimizers=["newton"])
    with pytest.raises(at.AllianceDataError, match="formula"):
        fit_mixed("alliance ~ sesion", sessions, groups="patient")
