"""Invariants every fitted cohort HMM must satisfy (shared by the HMM property tests)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from alliancetrack.detection.hmm import _pack, episodes_from_fit
from alliancetrack.detection.hmm_model import forward_backward, hmm_log_emissions


def check_fit_invariants(fit, shift: float) -> None:
    """Episodes in [0, 1], repairs after ruptures, no overlap; shift-equivariant posteriors.

    Without a scale (no censoring) the model is shift-equivariant: shifted ratings with the
    stable levels and the cohort's level prior shifted too give the same posteriors.  (Two
    EM fits of a few dozen patients need not agree: their likelihood has several optima, and
    float rounding of the shifted ratings can send them to different ones.)
    """
    ep = episodes_from_fit(fit)
    assert ep["probability"].between(0, 1).all()
    rep = ep["repaired"]
    assert (ep.loc[rep, "rupture_session"] < ep.loc[rep, "repair_session"]).all()
    # episodes never overlap: the next rupture comes at or after the previous repair
    nxt = ep.groupby("patient")["rupture_session"].shift(-1)
    prev_end = ep["repair_session"].where(rep, np.inf)
    assert (nxt.dropna() >= prev_end[nxt.notna()]).all()
    _, _, X, _ = _pack(fit.frame)
    p = fit.best.params
    moved = replace(p, base=p.base + shift,
                    trend={**p.trend, "m0": p.trend["m0"] + np.array([shift, 0.0])})

    def posterior(params, ratings):
        log_e = hmm_log_emissions(ratings, params, None)
        return forward_backward(log_e, params.start, params.trans)[:2]

    (post, ll), (post_moved, ll_moved) = posterior(p, X), posterior(moved, X + shift)
    np.testing.assert_allclose(post_moved, post, atol=1e-9)
    np.testing.assert_allclose(ll_moved, ll, rtol=1e-9)
