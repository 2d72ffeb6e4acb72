"""Tests for the small-sample correction of fit_gee_logistic (alliancetrack.models.gee)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import alliancetrack as at


def _clustered(n_clusters: int, per: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_clusters * per
    d = pd.DataFrame({
        "therapist": np.repeat(np.arange(n_clusters), per),
        "x": rng.normal(size=n),
        "trained": np.repeat(rng.integers(0, 2, n_clusters), per),
    })
    u = np.repeat(rng.normal(0, 0.6, n_clusters), per)
    d["y"] = (rng.random(n) < 1 / (1 + np.exp(-(-0.5 + 0.5 * d["x"] + u)))).astype(int)
    return d


def _mancl_derouen(d: pd.DataFrame, beta: np.ndarray, rho: float) -> np.ndarray:
    """Mancl & DeRouen (2001) sandwich written out cluster by cluster."""
    X = np.column_stack([np.ones(len(d)), d["x"], d["trained"]])
    mu = 1 / (1 + np.exp(-X @ beta))
    p = X.shape[1]
    B = np.zeros((p, p))
    parts = []
    for _, idx in d.groupby("therapist").indices.items():
        Xi, mi, yi = X[idx], mu[idx], d["y"].to_numpy()[idx]
        a = mi * (1 - mi)
        R = np.full((len(idx), len(idx)), rho) + (1 - rho) * np.eye(len(idx))
        Vi = np.sqrt(a)[:, None] * R * np.sqrt(a)[None, :]
        Di = a[:, None] * Xi
        Vinv = np.linalg.inv(Vi)
        B += Di.T @ Vinv @ Di
        parts.append((Di, Vinv, yi - mi))
    Binv = np.linalg.inv(B)
    M = np.zeros((p, p))
    for Di, Vinv, r in parts:
        H = Di @ Binv @ Di.T @ Vinv
        adj = np.linalg.solve(np.eye(len(r)) - H, r)
        s = Di.T @ Vinv @ adj
        M += np.outer(s, s)
    return np.sqrt(np.diag(Binv @ M @ Binv))


def test_bias_reduced_by_default_with_few_clusters_matches_hand_formula():
    d = _clustered(12, 15, seed=1)
    with pytest.warns(at.FewClustersWarning, match="12 clusters"):
        res = at.fit_gee_logistic("y ~ x + trained", d)
    assert res.cov_type == "bias_reduced"
    assert res.df == 12 - 3
    assert "Mancl-DeRouen" in res.summary() and "9 df" in res.summary()
    se_hand = _mancl_derouen(d, res.result.params.to_numpy(), res.working_correlation)
    np.testing.assert_allclose(res.coefs["se"], se_hand, rtol=1e-6)
    c = res.coefs
    q = stats.t.ppf(0.975, 9)
    np.testing.assert_allclose(c["ci_high"], c["estimate"] + q * c["se"], rtol=1e-10)
    np.testing.assert_allclose(c["p_value"], 2 * stats.t.sf(np.abs(c["statistic"]), 9))
    np.testing.assert_allclose(c["or_ci_low"], np.exp(c["ci_low"]))
    # plain robust SEs are still available, smaller, and tested with z
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", at.FewClustersWarning)
        rob = at.fit_gee_logistic("y ~ x + trained", d, small_sample=False)
    assert rob.cov_type == "robust" and np.isinf(rob.df)
    assert (rob.coefs["se"] < res.coefs["se"]).all()
    np.testing.assert_allclose(rob.coefs["estimate"], res.coefs["estimate"])
    assert "anti-conservative" in rob.summary()


def test_many_clusters_default_is_robust_z_and_no_warning():
    d = _clustered(60, 5, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", at.FewClustersWarning)
        res = at.fit_gee_logistic("y ~ x + trained", d)
    assert res.cov_type == "robust" and np.isinf(res.df)
    forced = at.fit_gee_logistic("y ~ x + trained", d, small_sample=True)
    assert forced.cov_type == "bias_reduced" and forced.df == 57


def test_small_sample_argument_checked():
    d = _clustered(30, 5, seed=3)
    with pytest.raises(ValueError, match="small_sample"):
        at.fit_gee_logistic("y ~ x", d, small_sample="yes")
    tiny = _clustered(3, 20, seed=4)
    with pytest.raises(at.AllianceDataError, match="3 clusters for 3"):
        at.fit_gee_logistic("y ~ x + trained", tiny)
