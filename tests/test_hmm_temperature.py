"""The tempered averaging over explanations (``HMMDetector(temperature=...)``).

* :func:`temper` is the power ``1 / T`` of the weights, renormalised: checked
  against the closed form, and by hypothesis for its invariants (rows sum to
  one, repeats keep weight 0, the ranking is kept, ``T > 1`` flattens);
* the averaged probabilities, onsets and counts equal the tempered weights
  applied to each explanation's own results, recomputed here from
  ``_explanations``;
* the detector's option: validated, in the label, refused where it would do
  nothing.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import alliancetrack as at
from alliancetrack.detection.hmm import HMMDetector
from alliancetrack.detection.hmm_fit import fit_hmm
from alliancetrack.detection.hmm_model import Cohort
from alliancetrack.detection.hmm_paths import (
    NO_BENDING,
    TEMPERATURE,
    _explanations,
    average_paths,
    temper,
)


def test_temper_closed_form():
    w = np.array([[0.6, 0.3, 0.1], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    for t in (0.5, 2.0, 3.0):
        expected = w ** (1 / t) / (w ** (1 / t)).sum(axis=1, keepdims=True)
        np.testing.assert_allclose(temper(w, t), expected, rtol=1e-12)
    assert temper(w, 1.0) is w
    np.testing.assert_allclose(temper(w, 1e9)[0], [1 / 3] * 3, atol=1e-8)  # flat in the limit


weights = arrays(np.float64, (4, 3), elements=st.floats(0, 1)).filter(
    lambda a: (a.max(axis=1) > 1e-6).all()).map(lambda a: a / a.sum(axis=1, keepdims=True))


@settings(max_examples=200, deadline=None)
@given(w=weights, t=st.floats(1.01, 50))
def test_temper_invariants(w, t):
    out = temper(w, t)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    assert (out[w == 0] == 0).all()                       # a repeated optimum stays out
    assert (np.argmax(out, axis=1) == np.argmax(w, axis=1)).all()
    assert (out.max(axis=1) <= w.max(axis=1) + 1e-12).all()  # T > 1 never sharpens
    back = temper(out, 1 / t)                              # the inverse temperature undoes it
    np.testing.assert_allclose(back[w > 1e-3], w[w > 1e-3], rtol=1e-6)


@pytest.fixture(scope="module")
def gradual():
    sim = at.simulate_cohort(120, seed=5, noise_sd=0.2, **at.SCENARIOS["gradual"])
    X = sim.sessions.pivot(index="patient", columns="session", values="alliance").to_numpy()
    S = np.where(np.isfinite(X), np.arange(1.0, X.shape[1] + 1), np.nan)
    bounds = (sim.scale.low, sim.scale.high)
    best, _ = fit_hmm(X, S, bounds, seed=1)
    return Cohort.of(X, S, bounds), best.params


@pytest.mark.parametrize("t", [1.0, TEMPERATURE, 6.0])
def test_averaging_applies_the_tempered_weights(gradual, t):
    cohort, params = gradual
    cands, w, log_es, p_r, _ = _explanations(cohort, params.rows(slice(None)), 8, NO_BENDING)
    tw = temper(w, t)
    avg = average_paths(cohort, params.rows(slice(None)), temperature=t)
    np.testing.assert_allclose(avg.weights, tw, atol=1e-12)
    np.testing.assert_allclose(avg.p_rupture, sum(tw[:, k, None] * p_r[k]
                                                  for k in range(len(cands))), atol=1e-12)
    np.testing.assert_allclose(avg.counts.sum(axis=1), 1.0, atol=1e-9)
    # the most weighted explanation (its stable path is reported) does not depend on t
    assert (avg.weights.argmax(axis=1) == w.argmax(axis=1)).all()
    competing = (w.max(axis=1) < 0.99)
    if t > 1:
        assert competing.any()  # the cohort has patients whom two explanations fit
        assert (avg.weights.max(axis=1)[competing] < w.max(axis=1)[competing]).all()


def test_detector_option():
    assert HMMDetector().temperature == TEMPERATURE
    d = HMMDetector(temperature=1.0)
    assert d.label == "hmm[temperature=1.0]"
    assert at.detector_from_label(d.label) == d
    for bad in (0, -1.0, "warm"):
        with pytest.raises((ValueError, TypeError), match="temperature"):
            HMMDetector(temperature=bad)
    with pytest.raises(ValueError, match="average_paths=False"):
        HMMDetector(average_paths=False, temperature=1.0)
    HMMDetector(average_paths=False)  # the default temperature is not an objection


def test_temperature_changes_only_the_middle():
    sim = at.simulate_cohort(150, seed=9, noise_sd=0.2, **at.SCENARIOS["gradual"])
    data = at.read_alliance(sim.sessions, scale=sim.scale)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = at.rupture_probabilities(data, method="hmm", temperature=1.0)
        tempered = at.rupture_probabilities(data, method="hmm")
    a, b = plain["p_rupture"].to_numpy(), tempered["p_rupture"].to_numpy()
    assert np.array_equal(np.isnan(a), np.isnan(b))
    clear = (a < 1e-6) | (a > 1 - 1e-6)
    # the fit is the same; only the averaging differs, and a session one explanation decides
    # (every explanation agrees on it) keeps its probability
    assert np.nanmax(np.abs(a - b)[clear]) < 0.05
    assert np.nanmax(np.abs(a - b)) > 0.05  # and some competing explanation was flattened
