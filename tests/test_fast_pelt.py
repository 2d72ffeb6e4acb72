"""The vectorised PELT returns exactly ruptures.Pelt(model="l2", jump=1) breakpoints."""

from __future__ import annotations

import numpy as np
import pytest
import ruptures as rpt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alliancetrack.detection.pelt import FastPelt, _segment_costs, pelt_l2_batch
from alliancetrack.errors import AllianceDataError


def _ruptures(x, pen, min_size):
    return rpt.Pelt(model="l2", min_size=min_size, jump=1).fit(np.asarray(x)).predict(pen=pen)


# WAI-like item means: integers / 12 on 1..5 -> exact ties between candidate segmentations
grid_value = st.integers(12, 60).map(lambda k: k / 12)
small_int = st.integers(0, 3).map(float)
real_value = st.floats(-5, 5, allow_nan=False, allow_infinity=False, width=64)
penalties = st.sampled_from([1e-3, 1 / 144, 1 / 72, 1 / 36, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    n=st.integers(1, 14),
    min_size=st.integers(1, 4),
    kind=st.sampled_from(["grid", "int", "real"]),
    n_series=st.integers(1, 6),
)
def test_identical_to_ruptures_pelt(data, n, min_size, kind, n_series):
    if n < min_size:
        n = min_size
    elem = {"grid": grid_value, "int": small_int, "real": real_value}[kind]
    X = np.array([data.draw(st.lists(elem, min_size=n, max_size=n)) for _ in range(n_series)])
    pens = np.array([data.draw(penalties) for _ in range(n_series)])  # a penalty vector
    got = FastPelt(min_size=min_size).fit(X).predict(pen=pens)
    want = [_ruptures(x, p, min_size) for x, p in zip(X, pens, strict=True)]
    assert got == want


def test_identical_on_many_random_grid_series():
    rng = np.random.default_rng(20240604)
    checked = 0
    for n in (3, 5, 8, 12, 20):
        for min_size in (1, 2, 3):
            X = np.round(rng.normal(3.5, 0.6, (60, n)) * 12) / 12
            X[:20] = np.round(X[:20] * 2) / 2  # coarser grid, even more ties
            X[20:25, n // 2:] -= 1.0  # planted drops
            pens = rng.choice([1 / 144, 1 / 36, 0.1, 0.5], size=60)
            out = pelt_l2_batch(X, pens, min_size)
            for i in range(60):
                assert np.flatnonzero(out[i]).tolist() == _ruptures(X[i], pens[i], min_size)
                checked += 1
    assert checked == 900


def test_costs_bitwise_equal_to_ruptures_costl2():
    rng = np.random.default_rng(3)
    X = np.round(rng.normal(3, 1, (5, 30)) * 12) / 12
    C = _segment_costs(np.ascontiguousarray(X.T))
    for i in range(5):
        cost = rpt.costs.CostL2().fit(X[i])
        for t in range(30):
            for b in range(t + 1, 31):
                assert C[t, b, i] == cost.error(t, b)


def test_long_series_use_numpy_recursive_pairwise_sum():
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, 300)
    x[100:140] += 3
    C = _segment_costs(x[:, None].copy())
    cost = rpt.costs.CostL2().fit(x)
    for t, b in [(0, 300), (3, 290), (0, 129), (10, 200)]:
        assert C[t, b, 0] == cost.error(t, b)
    assert FastPelt().fit(x).predict(pen=5.0) == [_ruptures(x, 5.0, 1)]


def test_batch_larger_than_a_chunk():
    rng = np.random.default_rng(11)
    X = np.round(rng.normal(3, 0.5, (6000, 5)) * 12) / 12
    out = pelt_l2_batch(X, 0.05, 1)
    for i in range(0, 6000, 397):
        assert np.flatnonzero(out[i]).tolist() == _ruptures(X[i], 0.05, 1)


def test_input_errors():
    with pytest.raises(AllianceDataError, match="2-D"):
        pelt_l2_batch(np.zeros(4), 1.0)
    with pytest.raises(AllianceDataError, match="min_size"):
        pelt_l2_batch(np.zeros((2, 2)), 1.0, min_size=3)
    with pytest.raises(AllianceDataError, match="finite"):
        pelt_l2_batch(np.array([[1.0, np.nan, 2.0]]), 1.0)
    with pytest.raises(AllianceDataError, match="fit"):
        FastPelt().predict(1.0)
