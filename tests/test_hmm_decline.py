"""The gradual-decline states of the cohort HMM (``HMMDetector(decline=True)``).

* the chain: which moves are allowed, one shared pace for the ramp, no series
  starting mid-decline, decline states not counted as ruptures;
* the M-step of the decline depth recovers a depth planted exactly;
* against simulated truth: cohorts with slow declines get fewer false ruptures,
  cohorts without them get (almost) no declines;
* the detection invariants (no overlap, repair after rupture, shift
  equivariance) hold with the decline states, checked by hypothesis.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hmm_invariants import check_fit_invariants
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import alliancetrack as at
from alliancetrack.detection.hmm import HMMDetector
from alliancetrack.detection.hmm_fit import (
    RAMP_STAY_MAX,
    _initial,
    _state_space,
    _tie_ramp,
    fit_hmm,
)
from alliancetrack.detection.hmm_model import (
    DECLINE_RANGE,
    DECLINE_STEPS,
    HMMParams,
    m_dip,
)
from alliancetrack.simulation.studies import evaluate_detection


@pytest.mark.parametrize("n_states", [3, 4])
def test_chain_of_the_decline_states(n_states):
    start, trans, mult, allowed, ruptured, steps = _state_space(n_states, True, 0.05, 0.4)
    k = n_states + len(DECLINE_STEPS)
    assert trans.shape == allowed.shape == (k, k)
    np.testing.assert_allclose(trans.sum(axis=1), 1.0)
    assert np.all(trans[~allowed] == 0)
    np.testing.assert_array_equal(steps[n_states:], DECLINE_STEPS)
    np.testing.assert_array_equal(mult[n_states:], DECLINE_STEPS)  # depth starts at the dip
    assert not ruptured[n_states:].any()  # a decline is not a rupture
    assert np.all(start[n_states:] == 0) and start.sum() == pytest.approx(1.0)
    # from the stable state into the first step only; then step by step to the lasting state
    assert np.flatnonzero(allowed[0, n_states:]).tolist() == [0]
    for j in range(n_states, k - 1):
        assert np.flatnonzero(allowed[j]).tolist() == [j, j + 1]
    assert np.flatnonzero(allowed[k - 1]).tolist() == [k - 1]
    assert not allowed[:n_states, n_states + 1:].any()
    plain = _state_space(n_states, False, 0.05, 0.4)
    np.testing.assert_array_equal(trans[:n_states, :n_states][1:], plain[1][1:])


def test_partial_state_is_recognised_with_and_without_declines():
    rng = np.random.default_rng(0)
    X = 4 + rng.normal(0, 0.1, (20, 8))
    for n_states, decline, partial in [(4, True, True), (3, True, False), (4, False, True),
                                       (3, False, False)]:
        p = _initial(X, rng, 0, 10.0, "scale", n_states, True, decline)
        assert p.partial is partial
        assert np.isnan(p.rho) is not partial
        assert np.isnan(p.decline_depth) is not decline


def test_ramp_pace_pools_the_steps_and_is_capped():
    rng = np.random.default_rng(1)
    p = _initial(4 + rng.normal(0, 0.1, (10, 6)), rng, 0, 10.0, "scale", 4, True, True)
    ramp = np.arange(4, 7)
    counts = np.zeros((8, 8))
    counts[ramp, ramp] = [1.0, 2.0, 0.0]    # stays
    counts[ramp, ramp + 1] = [3.0, 1.0, 5.0]  # moves on
    tied = _tie_ramp(p.trans, counts, p)
    pace = (3.0 + 0.5) / (3.0 + 9.0 + 1.0)
    np.testing.assert_allclose(tied[ramp, ramp], pace)
    np.testing.assert_allclose(tied[ramp, ramp + 1], 1 - pace)
    np.testing.assert_array_equal(tied[:4], p.trans[:4])  # other rows untouched
    counts[ramp, ramp] = 50.0
    np.testing.assert_allclose(_tie_ramp(p.trans, counts, p)[ramp, ramp], RAMP_STAY_MAX)


@pytest.mark.parametrize("share", [0.6, 1.3])
def test_decline_depth_m_step_recovers_a_planted_depth(share):
    rng = np.random.default_rng(2)
    n, t_len = 30, 8
    p = _initial(4 + rng.normal(0, 0.1, (n, t_len)), rng, 0, 10.0, "scale", 4, True, True)
    p.base = np.full((n, t_len), 4.0)
    p.sigma = rng.uniform(0.1, 0.3, n)  # weights differ: the estimate must still be exact
    k = len(p.mult)
    state = rng.integers(4, k, (n, t_len))  # every session somewhere in a decline
    post = np.eye(k)[state]
    y = np.broadcast_to((p.base - share * p.dip * DECLINE_STEPS[state - 4])[:, :, None],
                        (n, t_len, k)).copy()
    w = rng.uniform(0.5, 1.5, (n, t_len, k))
    dip = p.dip
    m_dip(post, y, w, p, 1e-3)
    assert p.dip == dip  # no rupture-state mass: the dip stays
    assert p.decline_depth == pytest.approx(share, rel=1e-12)
    np.testing.assert_allclose(p.mult[4:], share * DECLINE_STEPS)
    assert DECLINE_RANGE[0] <= share <= DECLINE_RANGE[1]


@pytest.fixture(scope="module")
def gradual():
    sim = at.simulate_cohort(300, (10, 14), seed=5, noise_sd=0.15, decline_share=0.4,
                             decline_depth=(0.8, 1.2), decline_sessions=(4, 8))
    return sim, at.read_alliance(sim.sessions, therapist="therapist", scale=sim.scale)


def test_slow_declines_are_read_as_declines_not_ruptures(gradual):
    sim, data = gradual
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = HMMDetector(n_starts=2, decline=False, patient_dips=False).detect(data)
        ramp = HMMDetector(n_starts=2, decline=True, patient_dips=False).detect(data)
    ev_plain = evaluate_detection(plain, sim.truth, patients=data).iloc[0]
    ev_ramp = evaluate_detection(ramp, sim.truth, patients=data).iloc[0]
    assert ev_ramp["precision"] >= ev_plain["precision"] + 0.05  # measured +0.08 to +0.12
    assert ev_ramp["f1"] > ev_plain["f1"]
    fit = ramp.attrs["hmm"]
    assert fit["p_decline"] > 0.005
    assert 0.6 < fit["decline_depth"] < 1.3  # planted 0.8-1.2 (the stable level takes a part)
    assert np.isnan(plain.attrs["hmm"]["p_decline"])


def test_cohort_without_declines_gets_almost_none():
    sim = at.simulate_cohort(300, seed=6, noise_sd=0.15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = HMMDetector(n_starts=2, decline=True).fit(
            at.read_alliance(sim.sessions, scale=sim.scale))
    assert fit.summary()["p_decline"] < 0.005
    assert fit.summary()["p_rupture"] > 0.03  # the planted 6% per session stay ruptures


def test_label_round_trip():
    det = HMMDetector(decline=False)
    assert det.label == "hmm[decline=False]"
    assert HMMDetector(decline=True).label == "hmm"  # the default
    assert at.detector_from_label(det.label) == det


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), shift=st.floats(-3, 3), scenario=st.sampled_from(
    ["clean", "gradual", "rough"]))
def test_properties_with_decline_states(seed, shift, scenario):
    sim = at.simulate_cohort(30, (6, 12), seed=seed, **at.SCENARIOS[scenario])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = HMMDetector(n_starts=1, decline=True).fit(sim.sessions)
    check_fit_invariants(fit, shift)
    p = fit.best.params
    assert np.all(p.start[4:] == 0) and np.all(p.trans[~p.allowed] == 0)


def test_fit_hmm_with_declines_is_deterministic():
    rng = np.random.default_rng(3)
    X = 4 + rng.normal(0, 0.15, (80, 10))
    X[:20, 5:] -= np.linspace(0.3, 1.0, 5)  # slow declines
    X[20:40, 4:6] -= 1.0                     # ruptures
    S = np.tile(np.arange(1.0, 11), (80, 1))
    a, _ = fit_hmm(X, S, decline=True, n_starts=2, seed=4)
    b, _ = fit_hmm(X, S, decline=True, n_starts=2, seed=4)
    np.testing.assert_array_equal(a.params.trans, b.params.trans)
    np.testing.assert_array_equal(a.params.base, b.params.base)


def test_decline_steps_of_the_wrong_length_are_refused():
    params = _initial(np.full((5, 6), 4.0), np.random.default_rng(0), 0, 10.0, "scale", 4,
                      True, decline=True)
    assert len(params.decline_steps) == len(params.mult) == 8
    kw = dict(start=params.start, trans=params.trans, dip=1.0, base=params.base,
              sigma=params.sigma, df=10.0, mult=params.mult)
    assert not HMMParams(**kw, decline_steps=None).decline_steps.any()  # none: no decline
    with pytest.raises(ValueError, match="decline_steps has 4 entries"):
        HMMParams(**kw, decline_steps=np.zeros(4))
