"""Tests for the lme4 formula parser and the random-effects structure (models.formula, models.random_effects)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alliancetrack.models.formula import MixedFormula, RandomTerm, parse_mixed_formula
from alliancetrack.models.random_effects import build_random_effects


def test_parse_three_level():
    f = parse_mixed_formula("alliance ~ session * trained + (session | patient) + (1 | therapist)")
    assert f == MixedFormula(
        "alliance",
        "session * trained",
        (RandomTerm("session", "patient", True), RandomTerm("1", "therapist", True)),
    )
    assert f.fixed_formula == "alliance ~ session * trained"


@pytest.mark.parametrize(
    "formula, expected",
    [
        ("y ~ 1 + (1 | batch/cask)", [("1", "cask:batch"), ("1", "batch")]),
        ("y ~ (1 | a/b/c)", [("1", "c:b:a"), ("1", "b:a"), ("1", "a")]),
        ("y ~ x + (x || g)", [("1", "g"), ("0 + x", "g")]),
        ("y ~ x + (0 + x + z || g)", [("0 + x", "g"), ("0 + z", "g")]),
        ("y ~ x + (1 | g1:g2) + (0 + x | g1)", [("1", "g1:g2"), ("0 + x", "g1")]),
        ("y ~ (1|plate) + (1|sample)", [("1", "plate"), ("1", "sample")]),
    ],
)
def test_expansions(formula, expected):
    f = parse_mixed_formula(formula)
    assert [(t.expr, t.group) for t in f.random] == expected


def test_uncorrelated_flag_and_offset_kept():
    f = parse_mixed_formula("n ~ pd + offset(np.log(s)) + (pd || therapist)")
    assert f.fixed == "pd + offset(np.log(s))"
    assert [t.correlated for t in f.random] == [False, False]


def test_empty_fixed_part_is_intercept():
    assert parse_mixed_formula("y ~ (1 | g)").fixed == "1"


@pytest.mark.parametrize(
    "formula",
    [
        "alliance ~ session | patient",
        "y ~ x + (1 | g) | h",
        "y ~ x + (x | )",
        "y ~ x + (| g)",
        "y ~ x + (x | g | h)",
        "y ~ x + (x | g",
        "y ~ x + (x | 3g)",
        "y | z ~ x",
    ],
)
def test_stray_bar_and_malformed_terms_are_errors(formula):
    with pytest.raises(ValueError):
        parse_mixed_formula(formula)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.sampled_from(["x", "z", "w"]), min_size=0, max_size=3, unique=True),
    st.sampled_from(["g", "h", "g:h"]),
    st.booleans(),
)
def test_roundtrip_through_str(slopes, group, correlated):
    """Printing the parsed formula and parsing again gives the same terms."""
    expr = " + ".join(["1", *slopes])
    bar = "|" if correlated else "||"
    f = parse_mixed_formula(f"y ~ x + ({expr} {bar} {group})")
    again = parse_mixed_formula(str(f))
    assert [(t.expr, t.group) for t in again.random] == [(t.expr, t.group) for t in f.random]
    n_terms = 1 if correlated else 1 + len(slopes)
    assert len(f.random) == n_terms


# ---------------------------------------------------------------------------
# random-effects structure
# ---------------------------------------------------------------------------


def _nested_data(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(4):
        for p in range(3):
            for s in range(5):
                rows.append((f"t{t}", f"p{t}{p}", s, rng.normal()))
    return pd.DataFrame(rows, columns=["therapist", "patient", "session", "y"])


def test_z_columns_lme4_order():
    d = _nested_data()
    re = build_random_effects(
        parse_mixed_formula("y ~ session + (1 | therapist) + (session | patient)"), d
    )
    # terms reordered by decreasing number of levels, as lme4's mkReTrms
    assert [t.group for t in re.terms] == ["patient", "therapist"]
    assert re.Z.shape == (60, 12 * 2 + 4)
    pt = re.terms[0]
    assert pt.coef_names == ["(Intercept)", "session"]
    assert pt.levels == sorted(d["patient"].unique())
    Z = re.Z.toarray()
    # level by level, coefficient within level
    rows = (d["patient"] == "p01").to_numpy()
    np.testing.assert_array_equal(Z[rows, 2], 1.0)
    np.testing.assert_array_equal(Z[rows, 3], d.loc[rows, "session"])
    assert np.all(Z[~rows, 2:4] == 0)
    np.testing.assert_array_equal(Z[:, 24:].sum(axis=1), 1.0)
    assert re.theta0.tolist() == [1.0, 0.0, 1.0, 1.0]
    assert np.isneginf(re.lower[1]) and re.lower[[0, 2, 3]].tolist() == [0, 0, 0]


def test_lambda_reproduces_term_covariance():
    """Lambda Lambda' is block diagonal with T_k T_k' repeated for every level."""
    d = _nested_data(1)
    re = build_random_effects(
        parse_mixed_formula("y ~ session + (session | patient) + (1 | therapist)"), d
    )
    theta = np.array([0.7, -0.3, 0.4, 1.3])
    Lam = re.lambda_matrix(theta).toarray()
    assert np.allclose(Lam, np.tril(Lam))
    T = np.array([[0.7, 0.0], [-0.3, 0.4]])
    for lev in range(12):
        blk = Lam[2 * lev : 2 * lev + 2, 2 * lev : 2 * lev + 2]
        np.testing.assert_allclose(blk, T)
    np.testing.assert_allclose(np.diag(Lam)[24:], 1.3)
    cov = re.covariances(theta, sigma2=2.0)
    np.testing.assert_allclose(cov[0], 2.0 * T @ T.T)
    # the implied marginal covariance of y equals the sum over terms of Z_k (I x Sigma_k) Z_k'
    V = re.Z @ Lam @ Lam.T @ re.Z.T
    direct = np.zeros((60, 60))
    for t, S in zip(re.terms, re.covariances(theta), strict=True):
        M = t.model_matrix
        same = t.codes[:, None] == t.codes[None, :]
        direct += same * (M @ S @ M.T)
    np.testing.assert_allclose(V, direct, atol=1e-12)


def test_interaction_group_and_uncorrelated_names():
    d = _nested_data(2)
    d["rater"] = np.tile(["a", "b"], 30)
    re = build_random_effects(parse_mixed_formula("y ~ session + (session || therapist:rater)"), d)
    assert [t.group for t in re.terms] == ["therapist:rater", "therapist:rater"]
    assert [t.name for t in re.terms] == ["therapist:rater", "therapist:rater.1"]
    assert re.terms[0].levels[:2] == ["t0:a", "t0:b"]
    assert re.terms[1].coef_names == ["session"]
    assert re.Z.shape == (60, 16)


def test_missing_group_column_is_named():
    d = _nested_data()
    with pytest.raises(ValueError, match="clinic"):
        build_random_effects(parse_mixed_formula("y ~ 1 + (1 | clinic)"), d)
