"""Each patient's own dip (``patient_dips``): the random effect's M-step, its Laplace term
against numerical integration, the depth search, and the detector on simulated depths."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

import alliancetrack as at
from alliancetrack.detection import hmm_depth, hmm_paths
from alliancetrack.detection.hmm import HMMDetector
from alliancetrack.detection.hmm_fit import fit_hmm
from alliancetrack.detection.hmm_model import Cohort, HMMParams, forward_loglik, hmm_log_emissions


def _one_state_patient(y, dip, sigma, s2, base=4.0):
    """A patient certainly in the (repaired-rupture) state 1 throughout, near-normal noise."""
    n = len(y)
    return HMMParams(start=np.array([0.0, 1.0, 0.0]), trans=np.eye(3), dip=dip,
                     base=np.full((1, n), base), sigma=np.array([sigma]), df=1e8,
                     patient_dips=True, dip_factor_var=s2)


@pytest.mark.parametrize(("s2", "drops"), [(0.04, [0.6, 0.7, 0.5]), (0.25, [1.4, 1.1]),
                                           (0.01, [0.9])])
def test_laplace_term_gives_the_marginal_likelihood(s2, drops):
    # normal noise, states known: the likelihood is normal in the factor, so the plug-in
    # likelihood at the posterior mean plus dip_factor_log_prior is the exact log of
    # integral L(u) N(u; 1, s2) du, computed here numerically
    dip, sigma, base = 1.2, 0.3, 4.0
    y = base - np.array(drops)
    params = _one_state_patient(y, dip, sigma, s2, base)
    X = y[None, :]
    post = np.zeros((1, len(y), 3))
    post[0, :, 1] = 1.0
    ys = np.broadcast_to(X[:, :, None], post.shape).copy()
    hmm_depth.m_dip_factors(post, ys, np.ones_like(post), params, shared=False)
    u_hat = params.dip_factor[0]
    # the posterior mean by hand: least squares of the drops on the dip, shrunk toward 1
    info = len(y) * dip**2 / sigma**2
    assert u_hat == pytest.approx((np.sum(drops) * dip / sigma**2 + 1 / s2) / (info + 1 / s2))
    assert params.dip_info[0] == pytest.approx(info)

    def loglik(u):
        params.dip_factor = np.array([u])
        return forward_loglik(hmm_log_emissions(X, params, None), params.start,
                              params.trans)[0]

    laplace = loglik(u_hat) + hmm_depth.dip_factor_log_prior(params)[0]
    ref = loglik(u_hat)
    value, _ = integrate.quad(lambda u: np.exp(loglik(u) - ref) * stats.norm.pdf(u, 1, s2**0.5),
                              u_hat - 12 * s2**0.5, u_hat + 12 * s2**0.5, points=[u_hat],
                              limit=200)
    assert laplace == pytest.approx(ref + np.log(value), abs=1e-6)


def test_patients_without_lowered_sessions_keep_the_cohort_dip():
    params = _one_state_patient(np.array([4.0, 4.1]), 1.0, 0.2, 0.09)
    post = np.zeros((1, 2, 3))
    post[0, :, 0] = 1.0  # stable throughout
    ys = np.full((1, 2, 3), 4.0)
    hmm_depth.m_dip_factors(post, ys, np.ones_like(post), params, shared=True)
    assert params.dip_factor[0] == 1.0 and params.dip_info[0] == 0.0
    # the variance's EM update: a patient without information contributes the prior variance
    assert params.dip_factor_var == pytest.approx(0.09)
    assert hmm_depth.dip_factor_log_prior(params)[0] == 0.0


def test_no_patient_dips_leave_the_model_as_it_was():
    p = HMMParams(start=np.array([1.0, 0, 0]), trans=np.eye(3), dip=1.0,
                  base=np.zeros((2, 3)), sigma=np.ones(2), df=10.0)
    assert p.dip_factor is None and not p.patient_dips
    np.testing.assert_array_equal(p.dips(), [1.0, 1.0])
    np.testing.assert_array_equal(hmm_depth.dip_factor_log_prior(p), [0.0, 0.0])


@pytest.fixture(scope="module")
def fitted():
    sim = at.simulate_cohort(150, 14, seed=21, noise_sd=0.15)
    X = sim.sessions.pivot(index="patient", columns="session", values="alliance").to_numpy()
    S = np.where(np.isfinite(X), np.arange(1.0, X.shape[1] + 1), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best, _ = fit_hmm(X, S, (1.0, 5.0), seed=1, decline=True, patient_dips=True)
    return sim, Cohort.of(X, S, (1.0, 5.0)), best.params


@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(0.3, 2.0), min_size=150, max_size=150))
def test_depth_search_never_lowers_a_patients_objective(fitted, factors):
    _, cohort, fit = fitted
    params = fit.rows(np.arange(150))
    params.dip_factor = np.array(factors)
    slope = params.trend["slope"]
    before = hmm_paths.path_objective(cohort, params, slope)
    hmm_paths.depth_search(cohort, params)
    after = hmm_paths.path_objective(cohort, params, slope)
    assert np.all(after >= before - 1e-9)
    kept = params.dip_factor == np.array(factors)
    assert np.all(kept | np.isin(params.dip_factor, hmm_depth.DIP_FACTOR_GRID))


def test_fitted_factors_follow_the_simulated_depths(fitted):
    sim, _, params = fitted
    patients = np.sort(sim.sessions["patient"].unique())
    depth = sim.truth.groupby("patient")["depth"].mean()
    informed = params.dip_info > 0.5 * np.median(params.dip_info[params.dip_info > 0])
    rows = [i for i, p in enumerate(patients) if p in depth.index and informed[i]]
    assert len(rows) >= 30
    rho = stats.spearmanr(params.dip_factor[rows], depth.loc[patients[rows]]).statistic
    assert rho > 0.5
    assert 0.02 < params.dip_factor_var ** 0.5 < 0.5
    lo, hi = hmm_depth.DIP_FACTOR_RANGE
    assert np.all((params.dip_factor >= lo) & (params.dip_factor <= hi))


def test_rows_and_stack_are_inverse(fitted):
    _, _, params = fitted
    blocks = hmm_paths.row_blocks(150, 40)
    back = HMMParams.stack([params.rows(r) for r in blocks])
    for name in ("base", "sigma", "dip_factor", "dip_info"):
        np.testing.assert_array_equal(getattr(back, name), getattr(params, name))
    np.testing.assert_array_equal(back.trend["slope"], params.trend["slope"])
    assert back.dip == params.dip and back.dip_factor_var == params.dip_factor_var


def test_detector_option_round_trips_and_reports_the_spread():
    det = HMMDetector(n_starts=1)
    assert det.patient_dips and det.decline  # the defaults
    plain = HMMDetector(patient_dips=False, n_starts=1)
    assert "patient_dips=False" in plain.label
    assert at.detector_from_label(plain.label) == plain
    sim = at.simulate_cohort(60, 12, seed=5)
    assert 0 < det.fit(sim.sessions).summary()["dip_factor_sd"] < 1
    assert np.isnan(plain.fit(sim.sessions).summary()["dip_factor_sd"])
    with pytest.raises(ValueError, match="patient_dips"):
        HMMDetector(patient_dips="yes")


def test_final_fit_keeps_the_shared_parameters_and_searches_each_depth(monkeypatch):
    # with patient_dips every cohort ends with a fit whose shared parameters are fixed (those
    # of the best start) and whose first step is the depth search
    sim = at.simulate_cohort(80, 12, seed=8)
    X = sim.sessions.pivot(index="patient", columns="session", values="alliance").to_numpy()
    S = np.where(np.isfinite(X), np.arange(1.0, X.shape[1] + 1), np.nan)
    from alliancetrack.detection import hmm_fit
    calls = []
    real = hmm_fit.depth_search
    monkeypatch.setattr(hmm_fit, "depth_search",
                        lambda c, p: calls.append(len(c.X)) or real(c, p))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best, runs = fit_hmm(X, S, (1.0, 5.0), seed=2, n_starts=2, patient_dips=True)
    assert len(runs) == 3 and best is runs[-1] and calls == [80]
    first = max(runs[:-1], key=lambda r: r.loglik).params
    assert best.params.dip == first.dip and best.params.dip_factor_var == first.dip_factor_var
    np.testing.assert_array_equal(best.params.trans, first.trans)
    without = fit_hmm(X, S, (1.0, 5.0), seed=2, n_starts=2)[1]
    assert len(without) == 2 and calls == [80]  # no final fit, no search without patient_dips


def test_whole_cohort_blocks_do_not_depend_on_threads(monkeypatch):
    # above `subsample` the whole cohort is fitted in fixed blocks of patients on n_jobs
    # threads (the shared parameters are fixed, so patients are independent)
    from alliancetrack.detection import hmm_fit
    monkeypatch.setattr(hmm_fit, "WHOLE_CHUNK", 40)  # 150 patients: 4 blocks
    sim = at.simulate_cohort(150, 10, seed=12)
    X = sim.sessions.pivot(index="patient", columns="session", values="alliance").to_numpy()
    S = np.where(np.isfinite(X), np.arange(1.0, X.shape[1] + 1), np.nan)
    one, _ = fit_hmm(X, S, (1.0, 5.0), subsample=60, seed=2, decline=True, patient_dips=True)
    two, _ = fit_hmm(X, S, (1.0, 5.0), subsample=60, seed=2, decline=True, patient_dips=True,
                     n_jobs=2)
    assert one.n_patients == 150 and one.converged
    for name in ("base", "sigma", "dip_factor", "dip_info"):
        np.testing.assert_array_equal(getattr(one.params, name), getattr(two.params, name))
    assert one.loglik == two.loglik and one.n_iter == two.n_iter
