"""strategy_effects: planted effect recovered, glmer reference, plain-language table, bad input."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import alliancetrack as at
from alliancetrack.models.strategies import (
    SeparationWarning,
    strategy_effects,
)

REF = Path(__file__).parent / "reference"
sys.path.insert(0, str(REF))
from make_strategy_data import TRUTH, simulate  # noqa: E402


@pytest.fixture(scope="module")
def study():
    return simulate()


@pytest.fixture(scope="module")
def effect(study):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a singular fit is reported on the result
        return strategy_effects(study, moderators=["pd"])


def test_simulation_file_is_regenerated_exactly(study):
    saved = pd.read_csv(REF / "strategy_sim.csv", dtype={"therapist": str})
    pd.testing.assert_frame_equal(saved, study, check_dtype=False)


def test_planted_effects_inside_the_intervals(effect):
    co = effect.fit.coefs.set_index("term")
    assert co.index.tolist() == list(TRUTH)
    for term, truth in TRUTH.items():
        assert co.loc[term, "ci_low"] < truth < co.loc[term, "ci_high"], term
    # the planted expressive effect and its moderation are detected (CI excludes 0)
    assert co.loc["any_expressive", "ci_low"] > 0
    assert co.loc["any_expressive:pd", "ci_high"] < 0


def test_table_is_the_exponentiated_fit(effect):
    tab = effect.table.set_index("term")
    co = effect.fit.coefs.set_index("term")
    assert "(Intercept)" not in tab.index and len(tab) == 5
    np.testing.assert_allclose(tab["odds_ratio"], np.exp(co.loc[tab.index, "estimate"]))
    np.testing.assert_allclose(np.log(tab["ci_low"]),
                               co.loc[tab.index, "estimate"] - 1.959964 * co.loc[tab.index, "se"],
                               rtol=1e-6)
    text = tab.loc["any_expressive", "meaning"]
    assert text.startswith("Episodes with any expressive strategy had "
                           f"{tab.loc['any_expressive', 'odds_ratio']:.2f} times the odds")
    assert "associations" in effect.summary()
    assert effect.formula == ("repaired ~ (any_immediate + any_expressive) * (pd) + "
                              "(1 | therapist) + (1 | patient)")


def test_matches_glmer(effect):
    ref = pd.read_csv(REF / "strategy_glmer_coefs.csv").set_index("term")
    co = effect.fit.coefs.set_index("term")
    np.testing.assert_allclose(co.loc[ref.index, "estimate"], ref["estimate"], atol=2e-3)
    np.testing.assert_allclose(co.loc[ref.index, "se"], ref["se"], atol=2e-3)


def test_glmm_leaves_the_boundary_saddle_as_glmer(effect):
    """Regression (fit_glmm optimiser): the first L-BFGS-B run stops at therapist SD 0.

    A zero SD is a stationary point of the Laplace deviance in its own direction; before
    the off-boundary restart fit_glmm reported it (logLik -618.68, singular) while glmer
    finds SD 0.25 and logLik -618.06 (strategy_glmer.R).
    """
    fit = effect.fit
    vc = pd.read_csv(REF / "strategy_glmer_variance.csv").set_index("group")
    ref = pd.read_csv(REF / "strategy_glmer_coefs.csv").set_index("term")
    assert fit.converged and not fit.singular
    assert abs(fit.llf - vc["loglik"].iloc[0]) < 0.02  # issue 15's Laplace tolerance
    sd = fit.variance.set_index("group")["sd"]
    np.testing.assert_allclose(sd[vc.index], vc["sd"], atol=2e-3)
    co = fit.coefs.set_index("term").loc[ref.index]
    assert np.all(np.abs(co["estimate"] - ref["estimate"]) < 0.01 * ref["se"])
    np.testing.assert_allclose(co["se"], ref["se"], rtol=0.01)
    att = fit.attempts.set_index("start")
    assert att.loc["lme4 theta0", "llf"] < fit.llf - 0.5  # the saddle at SD 0
    assert att.loc["off-boundary restart", "llf"] > fit.llf - 1e-4


def test_counts_and_dropped_rows(study):
    linked = study.copy()
    linked["n_immediate"] = linked["n_immediate"].astype("Int64")
    linked.loc[[0, 1], ["n_strategies", "n_immediate", "n_expressive"]] = pd.NA
    linked["repaired"] = linked["repaired"].astype("boolean")
    linked.loc[2, "repaired"] = pd.NA
    linked["censored"] = False
    linked.loc[3, ["censored", "repaired"]] = [True, False]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eff = strategy_effects(linked, groups=None, use="count")
    assert eff.dropped["reason"].tolist() == [
        "rupture session not coded for strategies"] * 2 + ["repaired unknown",
                                                           "censored before repair could be observed"]
    assert len(eff.data) == len(linked) - 4
    assert eff.formula == "repaired ~ n_immediate + n_expressive + (1 | patient)"
    assert eff.table.loc[1, "meaning"].startswith("Each further expressive strategy use")


def test_bad_input(study):
    with pytest.raises(at.AllianceDataError, match=r"\['bpd'\]"):
        strategy_effects(study, moderators=["bpd"])
    with pytest.raises(at.AllianceDataError, match="numeric or 0/1"):
        strategy_effects(study.assign(dx=np.where(study["pd"] == 1, "pd", "dep")),
                         moderators=["dx"])
    with pytest.raises(at.AllianceDataError, match="true/false or 0/1"):
        strategy_effects(study.assign(repaired=3))
    with pytest.raises(ValueError, match="use must be"):
        strategy_effects(study, use="sum")
    with pytest.raises(ValueError, match="groups= .* or patient_effect"):
        strategy_effects(study, groups=None, patient_effect=False)
    with pytest.raises(ValueError, match="already in the model"):
        strategy_effects(study, moderators=["any_expressive"])
    with pytest.raises(at.AllianceDataError, match="any_expressive is 0 in every"):
        strategy_effects(study.assign(n_expressive=0))
    with pytest.raises(at.AllianceDataError, match="No episode left"):
        strategy_effects(study.assign(n_immediate=np.nan, n_strategies=np.nan))
    with pytest.raises(TypeError, match="link_strategies"):
        strategy_effects(study.to_numpy())


def test_separation_warns(study):
    sep = study.assign(repaired=np.where(study["n_expressive"] > 0, True, study["repaired"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fit's own warnings
        warnings.simplefilter("always", SeparationWarning)
        with pytest.warns(SeparationWarning, match="any_expressive=1: 534 of 534 repaired"):
            strategy_effects(sep)


def test_counts_patient_only_matches_glmer(study):
    ref = pd.read_csv(REF / "strategy_glmer_counts.csv").set_index("term")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eff = strategy_effects(study, moderators=["pd"], groups=None, use="count")
    co = eff.fit.coefs.set_index("term")
    np.testing.assert_allclose(co.loc[ref.index, "estimate"], ref["estimate"], atol=1e-4)
    np.testing.assert_allclose(co.loc[ref.index, "se"], ref["se"], atol=2e-4)
    assert eff.fit.llf == pytest.approx(ref["loglik"].iloc[0], abs=1e-3)
    assert eff.fit.variance["sd"].iloc[0] == pytest.approx(ref["sd_patient"].iloc[0], abs=1e-3)
