"""Validation tools: simulator truth, evaluation metrics, power, sensitivity, determinism."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import alliancetrack as at
from alliancetrack.cli import main
from alliancetrack.simulation.outcome_studies import _ols_test

NOISELESS = {"noise_sd": 0, "growth": 0, "missing_rate": 0, "grid": 0, "patient_sd": 0.1,
             "therapist_sd": 0.05}


# ----------------------------------------------------------------------------- simulator truth
@pytest.fixture(scope="module")
def sim():
    return at.simulate_cohort(400, (5, 16), rupture_rate=0.12, repair_rate=0.6,
                              duration=(1, 4), seed=21)


def test_truth_sessions_lie_within_each_patients_treatment(sim):
    last = sim.sessions.groupby("patient")["session"].max()
    t = sim.truth
    n_last = t["patient"].map(last)
    assert len(t) > 200
    assert (t["rupture_session"] >= 3).all()  # ruptures start from the third session
    assert (t["rupture_session"] <= n_last).all()
    rep = t[t["repaired"]]
    assert (rep["repair_session"] > rep["rupture_session"]).all()
    assert (rep["repair_session"] <= n_last[t["repaired"]]).all()
    unrep = t[~t["repaired"]]
    assert unrep["repair_session"].isna().all() and unrep["censored"].all()
    assert not rep["censored"].any()
    # episodes never overlap: the next rupture comes after the previous repair
    for _, g in t.groupby("patient"):
        ends = g["repair_session"].to_numpy()[:-1]
        starts = g["rupture_session"].to_numpy()[1:]
        assert np.all(starts > ends)  # NaN (unrepaired) before a later episode would fail


def test_true_rupture_and_repair_sessions_are_never_missing():
    s = at.simulate_cohort(300, (8, 16), missing_rate=0.4, rupture_rate=0.1, seed=4)
    rated = s.sessions.dropna(subset=["alliance"]).set_index(["patient", "session"]).index
    keys = list(zip(s.truth["patient"], s.truth["rupture_session"].astype(int), strict=True))
    rep = s.truth[s.truth["repaired"]]
    keys += list(zip(rep["patient"], rep["repair_session"].astype(int), strict=True))
    assert s.sessions["alliance"].isna().mean() > 0.3
    assert all(k in rated for k in keys)


def test_noiseless_levels_follow_the_planted_episodes():
    s = at.simulate_cohort(200, (8, 16), rupture_rate=0.1, depth=(0.6, 1.2), duration=(1, 3),
                           seed=5, **NOISELESS)
    wide = s.sessions.pivot(index="patient", columns="session", values="alliance")
    assert len(s.truth[~s.truth["repaired"]]) > 10
    for ep in s.truth.itertuples():
        row = wide.loc[ep.patient].dropna()
        r = int(ep.rupture_session)
        assert row[r - 1] == pytest.approx(ep.pre_level)
        end = int(ep.repair_session) if ep.repaired else int(row.index.max()) + 1
        # the level stays lowered by the depth from rupture until repair / end of treatment
        low = row.loc[r:end - 1].to_numpy()
        np.testing.assert_allclose(low, ep.pre_level - ep.depth, atol=1e-12)
        if ep.repaired:
            assert row[end] == pytest.approx(ep.pre_level)


def test_effect_r_is_the_partial_correlation_of_the_true_count_with_improvement():
    r = 0.3
    s = at.simulate_cohort(4000, (8, 16), rupture_rate=0.1, outcome_effects={}, effect_r=r,
                           therapist_sd=0.0, seed=8)
    o = s.outcomes

    def resid(y):
        X = np.column_stack([np.ones(len(o)), o["bdi_pre"]])
        return y - X @ np.linalg.lstsq(X, y, rcond=None)[0]

    est = np.corrcoef(resid(o["n_repaired"].to_numpy(float)),
                      resid(-o["bdi_post"].to_numpy()))[0, 1]
    assert abs(est - r) < 3 * (1 - r**2) / math.sqrt(len(o))
    # without effect_r the same seed gives the same cohort and a null association
    s0 = at.simulate_cohort(4000, (8, 16), rupture_rate=0.1, outcome_effects={},
                            therapist_sd=0.0, seed=8)
    pd.testing.assert_frame_equal(s0.truth, s.truth)
    est0 = np.corrcoef(resid(o["n_repaired"].to_numpy(float)),
                       resid(-s0.outcomes["bdi_post"].to_numpy()))[0, 1]
    assert abs(est0) < 3 / math.sqrt(len(o))
    with pytest.raises(ValueError, match="effect_r"):
        at.simulate_cohort(10, 8, effect_r=1.0)


# ----------------------------------------------------------------------------- evaluation
def _truth():
    return pd.DataFrame({"patient": [1, 1, 2, 3], "rupture_session": [4, 10, 5, 7],
                         "repaired": [True, False, True, True],
                         "depth": [1.0, 1.5, 0.8, 1.2]})


def test_perfect_detection_scores_one():
    t = _truth()
    ev = at.evaluate_detection(t, t).iloc[0]
    assert (ev["precision"], ev["recall"], ev["f1"]) == (1.0, 1.0, 1.0)
    assert ev["timing_error"] == 0 and ev["timing_abs_error"] == 0
    assert ev["depth_bias"] == 0 and ev["repaired_accuracy"] == 1.0


def test_evaluation_metrics_on_a_hand_made_case():
    truth = _truth()
    # patient 1: 5 matches 4 (+1), 9 matches 10 (-1); patient 2: 8 is 3 away (false positive,
    # and the true 5 is missed); patient 3: nothing detected; patient 4: false positive
    found = pd.DataFrame({"patient": [1, 1, 2, 4], "rupture_session": [5, 9, 8, 6],
                          "repaired": [True, True, True, False],
                          "depth": [1.2, 1.2, 0.9, 1.0]})
    ev = at.evaluate_detection(found, truth, tolerance=1).iloc[0]
    assert (ev["n_detected"], ev["n_true"], ev["n_matched"]) == (4, 4, 2)
    assert ev["precision"] == pytest.approx(2 / 4)
    assert ev["recall"] == pytest.approx(2 / 4)
    assert ev["f1"] == pytest.approx(2 * 2 / (4 + 4))
    assert ev["timing_error"] == pytest.approx((1 - 1) / 2)
    assert ev["timing_abs_error"] == pytest.approx(1.0)
    assert ev["depth_bias"] == pytest.approx(((1.2 - 1.0) + (1.2 - 1.5)) / 2)
    assert ev["depth_abs_error"] == pytest.approx((0.2 + 0.3) / 2)
    assert ev["repaired_accuracy"] == pytest.approx(1 / 2)  # 2nd pair: repaired vs unrepaired
    # tolerance 3 also matches 8 with 5 (patient 2)
    ev3 = at.evaluate_detection(found, truth, tolerance=3).iloc[0]
    assert ev3["n_matched"] == 3 and ev3["timing_error"] == pytest.approx((1 - 1 + 3) / 3)
    # tolerance 0: no onset is exact
    ev0 = at.evaluate_detection(found, truth, tolerance=0).iloc[0]
    assert ev0["n_matched"] == 0 and ev0["f1"] == 0 and np.isnan(ev0["timing_error"])


def test_evaluation_without_detections_or_depth():
    truth = _truth()
    none = truth.iloc[:0]
    ev = at.evaluate_detection(none, truth).iloc[0]
    assert np.isnan(ev["precision"]) and ev["recall"] == 0 and ev["f1"] == 0
    no_depth = truth.drop(columns="depth")
    ev = at.evaluate_detection(no_depth, truth).iloc[0]
    assert ev["f1"] == 1 and np.isnan(ev["depth_bias"])
    assert list(at.evaluate_detection(truth, truth).columns) == at.EVALUATION_COLUMNS


# ----------------------------------------------------------------------------- validation study
def test_validation_study_recovers_noiseless_episodes_exactly():
    # noise_sd must be positive: with 1e-9 a repair can miss the pre-rupture level by 1e-9,
    # so the rule asks for half the depth back
    exact = {"label": "exact", "rule": "strauss-1sd", "unit": "points", "threshold": 0.5,
             "recovery_fraction": 0.5}
    res = at.validation_study(noise_sd=[1e-9], depth=[1.0], methods=[exact, "changepoint"],
                              n_patients=100, rupture_rate=0.1, seed=3,
                              **{k: v for k, v in NOISELESS.items() if k != "noise_sd"})
    row = res.table.set_index("method").loc["exact"]
    assert row["n_true"] > 20
    assert row["f1"] == 1 and row["timing_abs_error"] == 0 and row["repaired_accuracy"] == 1
    assert abs(row["depth_bias"]) < 1e-6
    assert res.table["snr"].iloc[0] == pytest.approx(1e9)
    assert list(res.table["method"]) == ["exact", "changepoint"]


def test_validation_study_does_not_depend_on_n_jobs():
    kw = {"noise_sd": [0.15, 0.3], "depth": [1.0], "methods": ["stiles-2sd", "changepoint"],
          "n_patients": 30, "n_reps": 2, "seed": 9}
    a = at.validation_study(**kw, n_jobs=1)
    b = at.validation_study(**kw, n_jobs=2)
    pd.testing.assert_frame_equal(a.replicates, b.replicates)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert a.replicates.groupby(["noise_sd", "method"]).size().eq(2).all()


# ----------------------------------------------------------------------------- power
def test_power_under_the_null_is_alpha():
    n_sims, alpha = 400, 0.05
    res = at.power_analysis([40], effect_r=0.0, detector="stiles-2sd", n_sims=n_sims,
                            alpha=alpha, seed=11, n_jobs=2)
    tol = 3 * math.sqrt(alpha * (1 - alpha) / n_sims)
    for counts in ("detected", "true"):
        row = res.table.set_index("counts").loc[counts]
        assert row["n_sims"] == n_sims
        assert abs(row["power"] - alpha) < tol, (counts, row["power"])
    assert res.table["n_failed"].sum() == 0


def test_power_rises_with_n_and_detection_error_attenuates():
    res = at.power_analysis([30, 200], effect_r=0.4, detector="gumz-2012", n_sims=50, seed=5)
    t = res.table.set_index(["counts", "n_patients"])
    for counts in ("detected", "true"):
        assert t.loc[(counts, 200), "power"] > t.loc[(counts, 30), "power"]
    assert t.loc[("true", 200), "power"] > 0.9
    # with the true counts the estimated partial r is about effect_r; detected counts attenuate
    assert abs(t.loc[("true", 200), "mean_r"] - 0.4) < 0.05
    assert t.loc[("detected", 200), "mean_r"] < t.loc[("true", 200), "mean_r"] - 0.05
    assert 0 < t.loc[("detected", 200), "mean_count_corr"] < 1


def test_power_does_not_depend_on_n_jobs():
    kw = {"n_patients": [30, 45], "effect_r": 0.3, "n_sims": 6, "seed": 17,
          "detector": "changepoint"}
    a = at.power_analysis(**kw, n_jobs=1)
    b = at.power_analysis(**kw, n_jobs=2)
    pd.testing.assert_frame_equal(a.simulations, b.simulations)
    pd.testing.assert_frame_equal(a.table, b.table)
    c = at.power_analysis(**{**kw, "seed": 18})
    assert not a.simulations["estimate"].equals(c.simulations["estimate"])


def _one_simulation(seed: int, effect_r: float):
    """The first simulation of power_analysis(seed=seed), rebuilt by hand."""
    child = np.random.SeedSequence(seed).spawn(1)[0]
    s = at.simulate_cohort(80, (8, 16), effect_r=effect_r, outcome_effects={},
                           seed=int(child.generate_state(1, dtype=np.uint64)[0]))
    data = at.read_alliance(s.sessions, therapist="therapist", scale="wai-sr")
    pred = at.episode_predictors(data, at.detect_episodes(data, rule="rci"))
    return s, pred


@pytest.mark.parametrize("test", ["ols", "mixed"])
def test_power_simulation_matches_the_model_fitted_by_hand(test):
    res = at.power_analysis([80], effect_r=0.3, detector="rci", n_sims=1, seed=42, test=test)
    s, pred = _one_simulation(42, 0.3)
    df = pred.merge(s.outcomes.drop(columns="n_repaired"), on="patient")
    got = res.simulations.set_index("counts")
    if test == "ols":
        fit = sm.OLS(df["bdi_post"], sm.add_constant(df[["bdi_pre", "n_repaired"]])).fit()
        est, p = fit.params["n_repaired"], fit.pvalues["n_repaired"]
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = at.outcome_model(pred, s.outcomes, predictors=["n_repaired"])
        row = fit.coefs.set_index("term").loc["n_repaired"]
        est, p = row["estimate"], row["p_value"]
    assert got.loc["detected", "estimate"] == pytest.approx(est, rel=1e-6)
    assert got.loc["detected", "p_value"] == pytest.approx(p, rel=1e-6)


def test_ols_test_matches_statsmodels():
    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(50), rng.normal(size=50), rng.integers(0, 3, 50)])
    y = X @ [1, 0.5, -0.3] + rng.normal(size=50)
    est, se, p, df = _ols_test(y, X, 2)
    fit = sm.OLS(y, X).fit()
    assert (est, se, p, df) == pytest.approx((fit.params[2], fit.bse[2], fit.pvalues[2], 47))
    assert np.isnan(_ols_test(y, np.column_stack([X[:, :2], np.ones(50)]), 2)[2])


# ----------------------------------------------------------------------------- sensitivity
def test_sensitivity_rows_equal_the_outcome_model_under_each_rule():
    s = at.simulate_cohort(90, (8, 14), seed=6)
    data = at.read_alliance(s.sessions, therapist="therapist", scale="wai-sr")
    spec = {"predictors": ["n_repaired", "n_unrepaired"], "term": "n_unrepaired"}
    rules = ["stiles-2sd", {"label": "window 3", "rule": "gumz-2012", "repair_window": 3},
             "changepoint"]
    res = at.sensitivity_analysis(data, s.outcomes, spec, rules=rules)
    assert sorted(res.table["specification"]) == ["changepoint", "stiles-2sd", "window 3"]
    assert res.table["estimate"].is_monotonic_increasing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, kw in [("stiles-2sd", {"rule": "stiles-2sd"}),
                          ("window 3", {"rule": "gumz-2012", "repair_window": 3}),
                          ("changepoint", {"method": "changepoint"})]:
            ep = at.detect_episodes(data, **kw)
            fit = at.outcome_model(at.episode_predictors(data, ep), s.outcomes)
            want = fit.coefs.set_index("term").loc["n_unrepaired"]
            got = res.table.set_index("specification").loc[label]
            assert got["estimate"] == pytest.approx(want["estimate"])
            assert got["p_value"] == pytest.approx(want["p_value"])
            assert got["n_episodes"] == len(ep)
    summ = res.summary.iloc[0]
    assert summ["n_specifications"] == 3
    assert summ["n_significant"] == res.table["significant"].sum()


def test_sensitivity_reports_definitions_that_cannot_be_applied():
    s = at.simulate_cohort(40, 10, seed=1)
    res = at.sensitivity_analysis(s.sessions[["patient", "session", "alliance"]], s.outcomes,
                                  {"groups": None}, rules=["rci", "stiles-2sd"])
    bad = res.table.set_index("specification").loc["rci"]
    assert np.isnan(bad["estimate"]) and "reliability" in bad["note"]
    assert np.isfinite(res.table.set_index("specification").loc["stiles-2sd", "estimate"])
    assert len(at.rupture_definitions()) == 11


# ----------------------------------------------------------------------------- plots and CLI
def test_plots_render(tmp_path):
    pw = at.power_analysis([30, 40], effect_r=0.3, n_sims=3, seed=1)
    pw.plot().save(tmp_path / "power.png", width=4, height=3, dpi=50, verbose=False)
    s = at.simulate_cohort(60, 10, seed=2)
    data = at.read_alliance(s.sessions, therapist="therapist", scale="wai-sr")
    sens = at.sensitivity_analysis(data, s.outcomes, rules=["stiles-2sd", "rci"])
    sens.plot().save(tmp_path / "spec.png", width=4, height=3, dpi=50, verbose=False)
    assert (tmp_path / "power.png").stat().st_size > 0
    assert (tmp_path / "spec.png").stat().st_size > 0


def test_validate_command_writes_table_and_figure(tmp_path, capsys):
    out = tmp_path / "val"
    assert main(["validate", "--out", str(out), "--noise", "0.2", "--depth", "1",
                 "--n-patients", "30"]) == 0
    table = pd.read_csv(out / "validation_table.csv")
    assert sorted(table["method"]) == sorted([*at.PRESETS, "changepoint"])
    assert (out / "validation_f1.png").exists()
    assert "wrote" in capsys.readouterr().out
