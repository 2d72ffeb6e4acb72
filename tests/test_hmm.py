"""The cohort hidden Markov model: recursions against hmmlearn and brute force, detector
against simulated truth, invariants with hypothesis."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
from hmm_invariants import check_fit_invariants
from hmmlearn.hmm import GaussianHMM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

import alliancetrack as at
from alliancetrack.detection.hmm import (
    HMMDetector,
    _pack,
    counts_from_fit,
    probabilities_from_fit,
)
from alliancetrack.detection.hmm_model import (
    count_distribution,
    forward_backward,
    onset_probabilities,
    viterbi,
)
from alliancetrack.simulation.studies import evaluate_detection


# ----------------------------------------------------------------------------- recursions
def _gaussian_hmm(seed: int):
    rng = np.random.default_rng(seed)
    start = rng.dirichlet([2, 2])
    trans = np.vstack([rng.dirichlet([5, 1]), rng.dirichlet([1, 3])])
    means = np.array([4.0, 3.0]) + rng.normal(0, 0.2, 2)
    sds = rng.uniform(0.2, 0.6, 2)
    model = GaussianHMM(n_components=2, covariance_type="diag", init_params="", params="")
    model.startprob_, model.transmat_ = start, trans
    model.means_ = means[:, None]
    model.covars_ = (sds**2)[:, None]
    return model, start, trans, means, sds


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forward_backward_and_viterbi_equal_hmmlearn(seed):
    model, start, trans, means, sds = _gaussian_hmm(seed)
    rng = np.random.default_rng(100 + seed)
    X = rng.normal(3.5, 0.7, (6, 12))
    log_e = stats.norm.logpdf(X[:, :, None], means[None, None, :], sds[None, None, :])
    post, ll, counts = forward_backward(log_e, start, trans)
    path = viterbi(log_e, start, trans)
    for i in range(len(X)):
        ref_ll, ref_post = model.score_samples(X[i][:, None])
        np.testing.assert_allclose(ll[i], ref_ll, rtol=1e-10)
        np.testing.assert_allclose(post[i], ref_post, atol=1e-10)
        _, ref_path = model.decode(X[i][:, None], algorithm="viterbi")
        np.testing.assert_array_equal(path[i], ref_path)


def test_missing_steps_equal_brute_force_enumeration():
    """Three states, an absorbing one, missing observations: exact marginals, onsets and
    the distribution of the number of ruptures by enumeration."""
    rng = np.random.default_rng(7)
    start = np.array([0.7, 0.2, 0.1])
    trans = np.array([[0.8, 0.15, 0.05], [0.4, 0.6, 0.0], [0.0, 0.0, 1.0]])
    log_e = rng.normal(0, 1.5, (3, 5, 3))
    log_e[0, 2] = 0.0          # missing rating: no emission
    log_e[1, 3:] = 0.0         # padding after the last session
    post, ll, counts = forward_backward(log_e, start, trans)
    path = viterbi(log_e, start, trans)
    onset = onset_probabilities(log_e, start, trans, np.array([False, True, True]))
    n_rupt = count_distribution(log_e, start, trans, np.array([False, True, True]), max_count=2)
    ref_counts = np.zeros((3, 3))
    for i in range(3):
        weights, paths = [], []
        for p in itertools.product(range(3), repeat=5):
            lp = np.log(start[p[0]]) + log_e[i, 0, p[0]]
            for t in range(1, 5):
                lp += np.log(trans[p[t - 1], p[t]]) if trans[p[t - 1], p[t]] > 0 else -np.inf
                lp += log_e[i, t, p[t]]
            weights.append(lp)
            paths.append(p)
        w = np.array(weights)
        np.testing.assert_allclose(ll[i], np.logaddexp.reduce(w), rtol=1e-10)
        prob = np.exp(w - np.logaddexp.reduce(w))
        marg = np.zeros((5, 3))
        ref_onset = np.zeros(5)
        ref_n = np.zeros(3)  # 0, 1, 2 or more ruptures
        for p, pr in zip(paths, prob, strict=True):
            marg[np.arange(5), list(p)] += pr
            ref_onset[0] += pr * (p[0] > 0)
            for t in range(1, 5):
                ref_onset[t] += pr * (p[t - 1] == 0 and p[t] > 0)
            entries = (p[0] > 0) + sum(p[t - 1] == 0 and p[t] > 0 for t in range(1, 5))
            ref_n[min(entries, 2)] += pr
            for t in range(4):
                ref_counts[p[t], p[t + 1]] += pr
        np.testing.assert_allclose(post[i], marg, atol=1e-10)
        np.testing.assert_allclose(onset[i], ref_onset, atol=1e-10)
        np.testing.assert_allclose(n_rupt[i], ref_n, atol=1e-10)
        np.testing.assert_array_equal(path[i], paths[int(np.argmax(w))])
    np.testing.assert_allclose(counts, ref_counts, atol=1e-10)


# ----------------------------------------------------------------------------- detector
@pytest.fixture(scope="module")
def clean():
    sim = at.simulate_cohort(200, seed=11, noise_sd=0.2, depth=1.0)
    data = at.read_alliance(sim.sessions, therapist="therapist", scale=sim.scale)
    return sim, data


@pytest.fixture(scope="module")
def clean_fit(clean):
    sim, data = clean
    return HMMDetector().detect(data)


def test_detector_recovers_simulated_truth_better_than_changepoints(clean, clean_fit):
    sim, data = clean
    ev = evaluate_detection(clean_fit, sim.truth, patients=data).iloc[0]
    cp = evaluate_detection(at.detect_episodes(data, method="changepoint"), sim.truth,
                            patients=data).iloc[0]
    assert ev["f1"] >= 0.9
    assert ev["f1"] >= cp["f1"] + 0.05
    fit = clean_fit.attrs["hmm"]
    assert fit["converged"]
    assert fit["dip"] == pytest.approx(1.0, abs=0.15)  # planted dip 1.0
    true_rate = len(sim.truth) / sim.sessions.shape[0]
    assert fit["p_rupture"] == pytest.approx(true_rate, rel=0.5)


def test_episode_table_columns_and_levels(clean, clean_fit):
    _, data = clean
    ep = clean_fit
    assert list(ep.columns[:len(at.EPISODE_COLUMNS)]) == list(at.EPISODE_COLUMNS)
    assert (ep["method"] == "hmm").all() and (ep["source"] == "scores").all()
    np.testing.assert_allclose(ep["depth"], ep["pre_level"] - ep["nadir_level"])
    # the nadir is a rated score inside the episode
    f = data.frame.set_index(["patient", "session"])["alliance"]
    nadir = f.loc[list(zip(ep["patient"], ep["nadir_session"], strict=True))].to_numpy()
    np.testing.assert_allclose(nadir, ep["nadir_level"])
    assert (ep["nadir_session"] >= ep["rupture_session"]).all()
    rep = ep["repaired"]
    assert (ep.loc[rep, "nadir_session"] < ep.loc[rep, "repair_session"]).all()
    assert (ep["censored"] == ~ep["repaired"]).all()


def test_rupture_probabilities_rows_and_missing(clean):
    _, data = clean
    p = at.rupture_probabilities(data, n_starts=1)
    assert len(p) == len(data.frame)
    missing = data.frame["alliance"].isna().to_numpy()
    assert p["p_rupture"].isna().to_numpy().tolist() == missing.tolist()
    assert p["p_rupture"].dropna().between(0, 1).all()
    # the expected number of ruptures per patient is close to the episodes found
    expected = p.groupby("patient")["p_onset"].sum()
    found = HMMDetector(n_starts=1).detect(data).groupby("patient").size()
    found = found.reindex(expected.index, fill_value=0)
    assert abs(expected.sum() - found.sum()) < 0.1 * found.sum()
    assert np.corrcoef(expected, found)[0, 1] > 0.9


def test_expected_ruptures_per_patient_with_uncertainty(clean):
    sim, _ = clean
    short = pd.DataFrame({"patient": [999, 999], "therapist": "T01", "session": [1, 2],
                          "alliance": [4.0, 3.0]})
    data = at.read_alliance(pd.concat([sim.sessions, short]), therapist="therapist",
                            scale=sim.scale)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = HMMDetector(n_starts=1).fit(data)
    counts, probs = counts_from_fit(fit, data), probabilities_from_fit(fit, data)
    assert counts["patient"].tolist() == data.patients.tolist()  # nobody lost
    short_row = counts.set_index("patient").loc[999]
    assert "fewer than 3" in short_row["status"]
    assert np.isnan(short_row["expected_ruptures"])
    ok = counts[counts["status"] == "analysed"].set_index("patient")
    assert len(ok) == len(counts) - 1
    # two recursions agree: the mean of the count distribution (states x counts) is the
    # sum of the onset probabilities over the rated and missing sessions (pairwise marginals)
    by_patient = probs.groupby("patient")
    np.testing.assert_allclose(ok["expected_ruptures"],
                               by_patient["p_onset"].sum().loc[ok.index], atol=1e-6)
    np.testing.assert_allclose(ok["expected_rupture_sessions"],
                               by_patient["p_rupture"].sum().loc[ok.index], atol=1e-9)
    assert (ok["sd_ruptures"] >= 0).all() and ok["p_any_rupture"].between(0, 1).all()
    assert (ok["sd_ruptures"] > 0.3).any()  # some counts are uncertain
    # against the planted truth
    true_n = sim.truth.groupby("patient").size().reindex(ok.index, fill_value=0)
    assert abs(ok["expected_ruptures"].sum() - true_n.sum()) < 0.1 * true_n.sum()
    assert np.corrcoef(ok["expected_ruptures"], true_n)[0, 1] > 0.85
    assert ok.loc[true_n == 0, "p_any_rupture"].mean() < 0.1
    assert ok.loc[true_n > 0, "p_any_rupture"].mean() > 0.85


@pytest.mark.parametrize("drift", [True, False])
def test_patients_rated_at_the_ceiling_throughout_keep_a_noise_scale(drift):
    """A third of the patients at 5 in every session: their ratings are censored, and the
    noise update takes the censored ratings' conditional variance (else their noise scale and
    the cohort's noise prior collapse to zero and the fit broke down with NaN)."""
    sim = at.simulate_cohort(120, seed=7000, noise_sd=0.25, depth=0.8,
                             **at.SCENARIOS["ceiling"])
    sessions = sim.sessions.copy()
    top = sessions["patient"] % 3 == 0
    sessions.loc[top & sessions["alliance"].notna(), "alliance"] = 5.0
    data = at.read_alliance(sessions, therapist="therapist", scale=sim.scale)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = HMMDetector(drift=drift, n_starts=2).fit(data)
    sigma = fit.best.params.sigma
    assert np.isfinite(sigma).all() and (sigma > 0.01).all()
    assert np.isfinite(fit.posterior[np.isfinite(_pack(fit.frame)[2])]).all()
    at_top = np.isin(fit.patients, sessions.loc[top, "patient"].unique())
    assert np.nanmax(fit.posterior[at_top]) < 0.5  # a flat 5 is no rupture


def test_lower_is_better_scale_is_mirrored(clean):
    sim, _ = clean
    up = at.read_alliance(sim.sessions, scale=at.Scale("up", 1, 5))
    flipped = sim.sessions.assign(alliance=6 - sim.sessions["alliance"])
    down = at.read_alliance(flipped, scale=at.Scale("down", 1, 5, higher_is_better=False))
    a = HMMDetector(n_starts=1).detect(up)
    b = HMMDetector(n_starts=1).detect(down)
    pd.testing.assert_series_equal(a["rupture_session"], b["rupture_session"])
    np.testing.assert_allclose(b["nadir_level"], 6 - a["nadir_level"])
    # the fit is iterative (EM, a root finder for df, L-BFGS for the noise prior, the
    # patients' dip factors): the mirrored fit takes a path that differs in the last digits
    # (up to 1.4e-5 relative in a probability of 0.65)
    np.testing.assert_allclose(b["depth"], a["depth"], rtol=1e-5)
    np.testing.assert_allclose(b["probability"], a["probability"], rtol=1e-4, atol=1e-9)


def test_small_cohort_is_an_error_naming_alternatives():
    sim = at.simulate_cohort(6, 10, seed=1)
    with pytest.raises(at.AllianceDataError, match="method='changepoint'"):
        at.detect_episodes(sim.sessions, method="hmm")
    sim = at.simulate_cohort(15, 10, seed=1)
    with pytest.warns(UserWarning, match="Only 15 patients"):
        at.detect_episodes(sim.sessions, method="hmm", n_starts=1)


def test_label_round_trip_and_determinism():
    det = HMMDetector(n_starts=5, dip_unit="noise", df=3.0)
    assert det.label == "hmm[df=3.0,dip_unit='noise',n_starts=5]"
    assert at.detector_from_label(det.label) == det
    assert at.detector_from_label("hmm") == HMMDetector()
    plain = HMMDetector(partial=False)
    assert plain.label == "hmm[partial=False]"
    assert at.detector_from_label(plain.label) == plain
    stiff = HMMDetector(drift=False, average_paths=False, decode="viterbi")
    assert at.detector_from_label(stiff.label) == stiff
    assert at.detect_episodes(at.simulate_cohort(40, 10, seed=1).sessions, method="hmm",
                              n_starts=1)["method"].iloc[0] == "hmm[n_starts=1]"
    with pytest.raises(ValueError, match="dip_unit"):
        HMMDetector(dip_unit="points")
    sim = at.simulate_cohort(40, 10, seed=4)
    a = HMMDetector(n_starts=2, seed=3).detect(sim.sessions)
    b = HMMDetector(n_starts=2, seed=3).detect(sim.sessions)
    pd.testing.assert_frame_equal(a, b)


# ----------------------------------------------------------------------------- properties
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), shift=st.floats(-3, 3), scenario=st.sampled_from(
    sorted(at.SCENARIOS)))
def test_properties_on_random_cohorts(seed, shift, scenario):
    sim = at.simulate_cohort(30, (6, 12), seed=seed, **at.SCENARIOS[scenario])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = HMMDetector(n_starts=1).fit(sim.sessions)
    check_fit_invariants(fit, shift)


# ----------------------------------------------------------------------------- simulator
def test_scenarios_change_what_they_say():
    base = at.simulate_cohort(300, 12, seed=2)
    ceil = at.simulate_cohort(300, 12, seed=2, **at.SCENARIOS["ceiling"])
    assert (ceil.sessions["alliance"] >= 5).mean() > 0.2 > (base.sessions["alliance"] >= 5).mean()
    heavy = at.simulate_cohort(300, 12, seed=2, noise_df=3.0, patient_sd=0, therapist_sd=0,
                               rupture_rate=0, growth=0, grid=0, scale=at.Scale("x", -100, 100),
                               mean_level=0)
    x = heavy.sessions["alliance"].dropna()
    assert stats.kurtosis(x) > 2  # normal: 0
    assert x.std() == pytest.approx(0.15, rel=0.25)
    # partial repair: after the repair the level stays below where it was
    kw = dict(noise_sd=0.001, rupture_rate=0.2, grid=0, growth=0, missing_rate=0)
    full = at.simulate_cohort(100, 12, seed=3, **kw)
    part = at.simulate_cohort(100, 12, seed=3, repair_fraction=0.5, **kw)
    t = part.truth[part.truth["repaired"]].iloc[0]
    s = part.sessions.set_index(["patient", "session"])["alliance"]
    f = full.sessions.set_index(["patient", "session"])["alliance"]
    key = (t["patient"], t["repair_session"])
    assert s[key] == pytest.approx(f[key] - 0.5 * t["depth"], abs=0.01)
    # gradual declines lower the late sessions of some patients without truth episodes
    dec = at.simulate_cohort(200, 12, seed=4, decline_share=1.0, rupture_rate=0, noise_sd=0.01,
                             grid=0, growth=0)
    late = dec.sessions.groupby("patient")["alliance"].agg(lambda v: v.iloc[-1] - v.iloc[0])
    assert len(dec.truth) == 0 and (late < -0.3).mean() > 0.8
    # defaults are unchanged by the new options
    again = at.simulate_cohort(300, 12, seed=2, **at.SCENARIOS["clean"])
    pd.testing.assert_frame_equal(base.sessions, again.sessions)


def test_validation_study_runs_scenarios_and_the_hmm():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = at.validation_study(noise_sd=[0.2], depth=[1.0], methods=["gumz-2012", "hmm"],
                                  scenarios=["rough", "clean"], n_patients=40, seed=3)
    t = res.table
    assert t[["scenario", "method"]].values.tolist() == [
        ["rough", "gumz-2012"], ["rough", "hmm"], ["clean", "gumz-2012"], ["clean", "hmm"]]
    assert t["f1"].between(0, 1).all()
    assert res.settings["scenarios"] == ["rough", "clean"]
    with pytest.raises(ValueError, match="Unknown scenario"):
        at.validation_study(scenarios=["smooth"], methods=["rci"])


def test_whole_cohort_fit_keeps_the_subsample_shared_parameters():
    # with more patients than `subsample`, the shared parameters come from the best start on
    # the subsample; the whole-cohort fit moves only the patients' own parameters
    from alliancetrack.detection.hmm_fit import fit_hmm

    sim = at.simulate_cohort(150, 10, seed=12)
    X = sim.sessions.pivot(index="patient", columns="session", values="alliance").to_numpy()
    S = np.where(np.isfinite(X), np.arange(1.0, X.shape[1] + 1), np.nan)
    for decline in (False, True):
        best, runs = fit_hmm(X, S, (1.0, 5.0), subsample=60, seed=2, decline=decline)
        sub = max(runs[:-1], key=lambda r: r.loglik).params
        whole = best.params
        assert best is runs[-1] and best.n_patients == 150 and best.converged
        assert whole.dip == sub.dip and whole.df == sub.df and whole.dip_sd == sub.dip_sd
        np.testing.assert_array_equal(whole.trans, sub.trans)
        np.testing.assert_array_equal(whole.start, sub.start)
        np.testing.assert_array_equal(whole.mult, sub.mult)
        assert whole.sigma2_prior == sub.sigma2_prior and whole.prior_df == sub.prior_df
        for key in ("m0", "P0", "q2"):
            np.testing.assert_array_equal(whole.trend[key], sub.trend[key])
        assert whole.base.shape == X.shape  # every patient has their own level


def test_subsample_warm_start_agrees_with_the_full_fit(clean, clean_fit):
    sim, data = clean
    fit = HMMDetector(subsample=60).fit(data)
    assert fit.runs["n_patients"].tolist() == [60, 60, 60, 200]
    ep = HMMDetector(subsample=60).detect(data)
    a = set(zip(ep["patient"], ep["rupture_session"], strict=True))
    b = set(zip(clean_fit["patient"], clean_fit["rupture_session"], strict=True))
    assert len(a & b) >= 0.95 * max(len(a), len(b))
    assert ep.attrs["hmm"]["converged"]
