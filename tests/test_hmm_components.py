"""Parts of the cohort HMM against independent implementations.

* the stable level's Kalman / Rauch-Tung-Striebel smoother and its M-step for the
  bending variance against statsmodels' state-space smoother (same model written
  as a time-varying state-space system);
* the log prior of a trend path against scipy's multivariate normal and t;
* the empirical-Bayes noise prior against a direct maximisation of the scaled-F
  marginal likelihood with scipy;
* threads and chunks in the averaging over explanations change nothing.
"""

from __future__ import annotations

import warnings
from functools import partial

import numpy as np
import pytest
from scipy import optimize, stats
from statsmodels.tsa.statespace.kalman_smoother import KalmanSmoother

import alliancetrack as at
from alliancetrack.detection import hmm as hmm_module
from alliancetrack.detection import hmm_paths
from alliancetrack.detection.hmm import HMMDetector, _pack
from alliancetrack.detection.hmm_fit import fit_hmm
from alliancetrack.detection.hmm_model import Cohort
from alliancetrack.detection.hmm_noise import sigma_prior
from alliancetrack.detection.hmm_trend import gaps, smooth_trend, trend_log_prior


def _bend_cov(q2: float, g: float) -> np.ndarray:
    return q2 * np.array([[g**3 / 3, g**2 / 2], [g**2 / 2, g]])


def _statsmodels_smooth(y, w, sessions, sigma2, q2, m0, P0, lam):
    """One series through statsmodels' smoother (NaN where w == 0)."""
    n = len(y)
    h = np.r_[np.diff(sessions), 1.0]  # gap to the next step
    ks = KalmanSmoother(k_endog=1, k_states=2, k_posdef=2)
    ks.bind(np.where(w > 0, y, np.nan)[None, :])
    ks["design"] = np.array([[1.0, 0.0]])
    ks["obs_cov"] = (sigma2 / np.where(w > 0, w, 1.0))[None, None, :]
    ks["transition"] = np.stack([np.array([[1.0, g], [0.0, 1.0]]) for g in h], axis=2)
    ks["selection"] = np.eye(2)
    # the bend from step t to t + 1 has the gap and the mixture weight of step t + 1
    ks["state_cov"] = np.stack([_bend_cov(q2 / lam[min(t + 1, n - 1)], h[t])
                                for t in range(n)], axis=2)
    ks.initialize_known(np.asarray(m0, float), np.asarray(P0, float))
    return ks.smooth(), h


@pytest.mark.parametrize(("seed", "bend_df"), [(0, None), (1, None), (2, 4.0), (3, 4.0)])
def test_trend_smoother_equals_statsmodels(seed, bend_df):
    rng = np.random.default_rng(seed)
    n, t_len = 4, 9
    sessions = np.cumsum(rng.integers(1, 3, (n, t_len)), axis=1).astype(float)
    y = 4 + 0.05 * sessions + rng.normal(0, 0.2, (n, t_len))
    w = rng.uniform(0.3, 1.0, (n, t_len))
    w[rng.random((n, t_len)) < 0.2] = 0.0  # steps without information (missing ratings)
    sigma2 = rng.uniform(0.02, 0.08, n)
    # bend weights of the t scale mixture (bends of variance q² / weight); normal: all 1
    lam = np.ones((n, t_len)) if bend_df is None else rng.uniform(0.2, 1.0, (n, t_len))
    q2, m0 = 0.003, np.array([3.9, 0.04])
    P0 = np.array([[0.3, 0.01], [0.01, 0.02]])
    steps = np.ones((n, t_len), bool)
    fit = smooth_trend(y, w, gaps(sessions), sigma2, q2, m0, P0, steps, bend_weight=lam,
                       bend_df=bend_df)
    new_lam, terms = np.ones((n, t_len)), []
    for i in range(n):
        res, h = _statsmodels_smooth(y[i], w[i], sessions[i], sigma2[i], q2, m0, P0, lam[i])
        state, cov, acov = res.smoothed_state, res.smoothed_state_cov, res.smoothed_state_autocov
        np.testing.assert_allclose(fit.level[i], state[0], rtol=0, atol=1e-9)
        np.testing.assert_allclose(fit.slope[i], state[1], rtol=0, atol=1e-9)
        np.testing.assert_allclose(fit.level_var[i], cov[0, 0], rtol=1e-7, atol=1e-12)
        # E-step of every bend w_t = x_{t+1} - F_t x_t: tr(Q~^-1 E[w w']) from statsmodels'
        # smoothed moments and lag-one autocovariance Cov(x_{t+1}, x_t)
        for t in range(t_len - 1):
            F = np.array([[1.0, h[t]], [0.0, 1.0]])
            mean = state[:, t + 1] - F @ state[:, t]
            C = acov[:, :, t]
            var = cov[:, :, t + 1] + F @ cov[:, :, t] @ F.T - C @ F.T - F @ C.T
            d = np.trace(np.linalg.inv(_bend_cov(1.0, h[t])) @ (var + np.outer(mean, mean)))
            if bend_df is not None:  # the t's weight: (nu + 2) / (nu + d / q²)
                new_lam[i, t + 1] = (bend_df + 2) / (bend_df + d / q2)
            terms.append(new_lam[i, t + 1] * d)
    np.testing.assert_allclose(fit.bend_weight, new_lam, rtol=1e-7)
    assert fit.q2 == pytest.approx(np.sum(terms) / (2 * len(terms)), rel=1e-7)


def test_path_log_det_and_bend_stat_equal_the_dense_posterior():
    """log|Cov(path | ratings)| from the filter equals minus the log-determinant of the
    joint posterior precision built densely; the per-patient bend statistics add up to q²."""
    rng = np.random.default_rng(1)
    n, t_len = 3, 7
    y, w = rng.normal(size=(n, t_len)), rng.uniform(0, 1, (n, t_len))
    w[0, 2] = 0.0                    # a missing rating
    h = np.ones((n, t_len))
    h[1, 3] = 2.0                    # a skipped session
    steps = np.ones((n, t_len), bool)
    steps[2, 5:] = False             # padding after the series
    sigma2, q2 = np.array([0.1, 0.2, 0.3]), 0.05
    m0, P0 = np.zeros(2), np.diag([1.0, 0.1])
    lam = rng.uniform(0.3, 1.0, (n, t_len))
    fit = smooth_trend(y, w, h, sigma2, q2, m0, P0, steps, bend_weight=lam, log_det=True)
    for i in range(n):
        last = int(np.flatnonzero(steps[i]).max()) + 1
        prec = np.zeros((2 * last, 2 * last))  # z = (level_1, slope_1, ..., level_L, slope_L)
        prec[:2, :2] += np.linalg.inv(P0)
        for t in range(1, last):
            g = h[i, t]
            A = np.zeros((2, 2 * last))
            A[:, 2 * t:2 * t + 2] = np.eye(2)
            A[:, 2 * t - 2:2 * t] = -np.array([[1.0, g], [0.0, 1.0]])
            prec += A.T @ np.linalg.inv(_bend_cov(q2 / lam[i, t], g)) @ A
        prec[np.arange(0, 2 * last, 2), np.arange(0, 2 * last, 2)] += w[i, :last] / sigma2[i]
        assert fit.log_det[i] == pytest.approx(-np.linalg.slogdet(prec)[1], rel=1e-10)
    assert fit.q2 == pytest.approx(fit.bend_stat.sum() / (2 * steps[:, 1:].sum()), rel=1e-12)


def test_trend_log_prior_equals_scipy_normal_and_t():
    rng = np.random.default_rng(5)
    n, t_len = 3, 6
    h = np.ones((n, t_len))
    h[:, 3] = 2.0
    level = 4 + rng.normal(0, 0.1, (n, t_len))
    slope = rng.normal(0, 0.05, (n, t_len))
    m0, P0, q2 = np.array([4.0, 0.0]), np.array([[0.2, 0.01], [0.01, 0.03]]), 0.004
    steps = np.ones((n, t_len), bool)
    steps[0, -1] = False  # padding: not scored
    for bend_df in (None, 4.0):
        got = trend_log_prior(level, slope, h, q2, m0, P0, steps, bend_df)
        for i in range(n):
            ref = stats.multivariate_normal(m0, P0).logpdf([level[i, 0], slope[i, 0]])
            for t in range(1, t_len):
                if not steps[i, t]:
                    continue
                g = h[i, t]
                bend = [level[i, t] - level[i, t - 1] - g * slope[i, t - 1],
                        slope[i, t] - slope[i, t - 1]]
                cov = _bend_cov(q2, g)
                dist = (stats.multivariate_normal(np.zeros(2), cov) if bend_df is None else
                        stats.multivariate_t(np.zeros(2), cov, df=bend_df))
                ref += dist.logpdf(bend)
            assert got[i] == pytest.approx(ref, rel=1e-10)


def test_noise_prior_maximises_the_scaled_f_likelihood_and_recovers_the_truth():
    rng = np.random.default_rng(2)
    nu0, s0 = 8.0, 0.04
    n = rng.integers(6, 16, 20_000).astype(float)
    sigma2 = nu0 * s0 / rng.chisquare(nu0, len(n))  # scaled inverse chi-square
    ss = sigma2 * rng.chisquare(n)
    est_nu, est_s = sigma_prior(ss, n, 4.0, 0.02)

    def negll(theta):  # ss / (n s0²) ~ F(n, nu0): the same marginal, written with scipy
        nu, s = np.exp(theta)
        return -np.sum(stats.f.logpdf(ss / (n * s), n, nu) - np.log(n * s))

    ref = np.exp(optimize.minimize(negll, np.log([4.0, 0.02]), method="Nelder-Mead",
                                   options={"xatol": 1e-8, "fatol": 1e-8}).x)
    assert est_nu == pytest.approx(ref[0], rel=1e-3)
    assert est_s == pytest.approx(ref[1], rel=1e-4)
    assert est_nu == pytest.approx(nu0, rel=0.15)
    assert est_s == pytest.approx(s0, rel=0.05)


# ----------------------------------------------------------------------------- averaging
@pytest.fixture(scope="module")
def rough_fit():
    sim = at.simulate_cohort(120, noise_sd=0.2, seed=7, **at.SCENARIOS["rough"])
    data = at.read_alliance(sim.sessions, therapist="therapist", scale=sim.scale)
    frame = data.analysed_frame
    X = frame.pivot(index="patient", columns="session", values="alliance").to_numpy()
    last = frame.groupby("patient")["session"].max().to_numpy()
    cols = np.arange(1.0, X.shape[1] + 1)
    S = np.where(cols[None, :] <= last[:, None], cols[None, :], np.nan)  # NaN: padding
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best, _ = fit_hmm(X, S, (1.0, 5.0), seed=3)
    return Cohort.of(X, S, (1.0, 5.0)), best.params


def _same(a, b, atol=1e-10):
    for name in ("weights", "p_rupture", "onset", "base"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=atol,
                                   err_msg=name)


def test_averaging_in_chunks_on_threads_equals_one_pass(rough_fit, monkeypatch):
    cohort, params = rough_fit
    bend = hmm_paths.Bending(0.1, 16 * params.trend["q2"])
    whole = hmm_paths.average_paths(cohort, params)
    bent = hmm_paths.average_paths(cohort, params, bending=bend)
    assert bent.weights.shape[1] == 2 * whole.weights.shape[1]
    monkeypatch.setattr(hmm_paths, "CHUNK", 25)  # 120 patients: 5 chunks
    for n_jobs in (1, 2):
        _same(hmm_paths.average_paths(cohort, params, n_jobs=n_jobs), whole)
        _same(hmm_paths.average_paths(cohort, params, n_jobs=n_jobs, bending=bend), bent)


def test_bending_estimate_does_not_depend_on_threads(rough_fit, monkeypatch):
    cohort, params = rough_fit
    monkeypatch.setattr(hmm_paths, "BEND_CHUNK", 40)  # 120 patients: 3 chunks
    one = hmm_paths.fit_bending(cohort, params, max_rounds=3)
    two = hmm_paths.fit_bending(cohort, params, max_rounds=3, n_jobs=2)
    assert one == two and one.rounds >= 1


def test_averaging_leaves_the_fitted_parameters_alone(rough_fit):
    cohort, params = rough_fit
    before = (params.base.copy(), params.sigma.copy(), params.trend["slope"].copy())
    hmm_paths.average_paths(cohort, params)
    for old, new in zip(before, (params.base, params.sigma, params.trend["slope"]), strict=True):
        np.testing.assert_array_equal(old, new)


def test_params_rows_subset_patients_and_keep_shared(rough_fit):
    _, params = rough_fit
    rows = np.array([3, 10, 50])
    part = params.rows(rows)
    np.testing.assert_array_equal(part.base, params.base[rows])
    np.testing.assert_array_equal(part.sigma, params.sigma[rows])
    np.testing.assert_array_equal(part.trend["slope"], params.trend["slope"][rows])
    assert part.dip == params.dip and part.trend["q2"] == params.trend["q2"]
    part.base[0, 0] += 1.0  # a copy: the fitted parameters stay as they were
    assert part.base[0, 0] != params.base[3, 0]


def test_detector_results_do_not_depend_on_n_jobs(monkeypatch):
    monkeypatch.setattr(hmm_paths, "CHUNK", 40)
    sim = at.simulate_cohort(100, seed=4, **at.SCENARIOS["gradual"])
    data = at.read_alliance(sim.sessions, therapist="therapist", scale=sim.scale)
    one = HMMDetector(n_jobs=1).detect(data)
    two = HMMDetector(n_jobs=2).detect(data)
    assert HMMDetector(n_jobs=2).label == "hmm"
    np.testing.assert_array_equal(one["rupture_session"], two["rupture_session"])
    np.testing.assert_allclose(one["probability"], two["probability"], rtol=0, atol=1e-12)


def _arrays(fit):
    _, _, X, S = _pack(fit.frame)
    return X, S, (1.0, 5.0)


def _fitted(**settings):
    sim = at.simulate_cohort(300, seed=11, noise_sd=0.1, **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return HMMDetector(bending=True).fit(at.read_alliance(sim.sessions, scale=sim.scale))


def test_bending_regime_appears_only_where_levels_bend():
    """fit_bending drops the regime for straight levels, and finds a share of patients with
    a larger bending SD where 40% decline slowly; without it the averaging is the plain one."""
    straight = _fitted()
    assert straight.bending.share == 0
    declining = _fitted(decline_share=0.4, decline_depth=(0.8, 1.2), decline_sessions=(4, 8))
    bend, q2 = declining.bending, declining.best.params.trend["q2"]
    assert 0.02 < bend.share < 0.6 and bend.converged
    assert bend.q2 > 4 * q2
    assert declining.summary()["bending_share"] == bend.share
    # share 0 (dropped, or bending=False) is the plain averaging
    cohort = Cohort.of(*_arrays(straight))
    plain = hmm_paths.average_paths(cohort, straight.best.params)
    np.testing.assert_array_equal(np.where(np.isnan(straight.posterior), 0, straight.posterior),
                                  plain.p_rupture)


def test_unsettled_bending_share_is_reported(monkeypatch):
    sim = at.simulate_cohort(60, seed=4, noise_sd=0.1, decline_share=0.4)
    monkeypatch.setattr(hmm_module, "fit_bending", partial(hmm_paths.fit_bending, max_rounds=1))
    with pytest.warns(RuntimeWarning, match="bending regime"):
        fit = HMMDetector(bending=True).fit(at.read_alliance(sim.sessions, scale=sim.scale))
    assert fit.bending.rounds == 1 and not fit.bending.converged
