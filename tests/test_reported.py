"""PSQ (self-report) and 3RS (observer) readers and episodes: hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import alliancetrack as at
from alliancetrack import AllianceDataError


def psq_frame(**cols):
    n = len(next(iter(cols.values())))
    base = {"patient": [1] * n, "session": list(range(1, n + 1))}
    base.update(cols)
    return pd.DataFrame(base)


def sessions_of(ep, **where):
    sel = ep
    for k, v in where.items():
        sel = sel[sel[k] == v]
    return sel["rupture_session"].astype(int).tolist()


# --------------------------------------------------------------------------- yes/no parsing

@pytest.mark.parametrize("values", [
    [True, False, True, None],
    [1, 0, 1, None],
    ["yes", "no", "YES", ""],
    ["Yes", "No", "yEs", None],
    ["true", "FALSE", "1", None],
    [" y ", "n", "Y", np.nan],
])
def test_yes_no_answers_in_every_spelling(values):
    psq = at.read_psq(psq_frame(tension=values), resolved=None)
    assert psq.tension_format == "yes/no"
    got = psq.frame["tension"].tolist()
    assert got[:3] == [1.0, 0.0, 1.0] and np.isnan(got[3])
    ep = at.detect_episodes(psq, method="self-report")
    assert sessions_of(ep) == [1, 3]


def test_unknown_yes_no_values_are_named():
    with pytest.raises(AllianceDataError) as err:
        at.read_psq(psq_frame(tension=["yes", "maybe", "no", "sometimes"]), resolved=None)
    msg = str(err.value)
    assert "'maybe'" in msg and "'sometimes'" in msg and "row 1" in msg and "row 3" in msg
    with pytest.raises(AllianceDataError, match="2"):
        at.read_psq(psq_frame(tension=[1, 0, 2]), resolved=None, tension_format="yes/no")


def test_all_ones_tension_is_ambiguous_unless_named():
    df = psq_frame(tension=[1, 1, 1])
    with pytest.raises(AllianceDataError, match="tension_format"):
        at.read_psq(df, resolved=None)
    yes = at.read_psq(df, resolved=None, tension_format="yes/no")
    rating = at.read_psq(df, resolved=None, tension_format="rating")
    assert len(at.detect_episodes(yes, method="self-report")) == 3
    assert len(at.detect_episodes(rating, method="self-report")) == 0


# --------------------------------------------------------------------------- cutoff rules

def test_tension_rating_cutoff():
    df = psq_frame(tension=[1, 2, 3, 5, None])
    psq = at.read_psq(df, resolved=None)
    assert psq.tension_format == "rating"
    assert sessions_of(at.detect_episodes(psq, method="self-report")) == [2, 3, 4]
    assert sessions_of(at.detect_episodes(psq, method="self-report", tension_cutoff=3)) == [3, 4]
    assert sessions_of(at.detect_episodes(psq, method="self-report", tension_cutoff=5)) == [4]


def test_withdrawal_cutoff_and_type():
    # tension yes/no; withdrawal 1-5: rupture when tension yes or withdrawal >= 3
    df = psq_frame(tension=["no", "no", "yes", "yes", "no"],
                   withdrawal=[2, 3, 1, 4, 5])
    psq = at.read_psq(df, withdrawal="withdrawal", resolved=None)
    ep = at.detect_episodes(psq, method="self-report")
    assert sessions_of(ep) == [2, 3, 4, 5]
    # type withdrawal only when the withdrawal item alone flags the session
    types = dict(zip(ep["rupture_session"].astype(int), ep["type"], strict=True))
    assert types[2] == "withdrawal" and types[5] == "withdrawal"
    assert pd.isna(types[3]) and pd.isna(types[4])
    ep4 = at.detect_episodes(psq, method="self-report", withdrawal_cutoff=4)
    assert sessions_of(ep4) == [3, 4, 5]


def test_intensity_is_the_larger_intensity_rating_given():
    df = psq_frame(tension=["yes", "yes", "no", "yes"], withdrawal=[4, 1, 3, 1],
                   ti=[2, 5, None, None], wi=[4, 1, 3, None])
    psq = at.read_psq(df, withdrawal="withdrawal", tension_intensity="ti",
                      withdrawal_intensity="wi", resolved=None)
    ep = at.detect_episodes(psq, method="self-report")
    assert ep["intensity"].iloc[:3].tolist() == [4.0, 5.0, 3.0]
    assert np.isnan(ep["intensity"].iloc[3])


def test_resolved_cutoff_and_within_session_repair():
    df = psq_frame(tension=["yes"] * 5, resolved=[5, 4, 3, 1, None])
    psq = at.read_psq(df)
    ep = at.detect_episodes(psq, method="self-report")
    assert ep["repaired"].dtype == "boolean"
    assert ep["repaired"].tolist()[:4] == [True, True, False, False]
    assert ep["repaired"].isna().tolist() == [False] * 4 + [True]
    rep = ep[ep["repaired"].fillna(False)]
    assert (rep["repair_session"] == rep["rupture_session"]).all()
    assert (rep["sessions_to_repair"] == 0).all()
    assert ep.loc[~ep["repaired"].fillna(True), "repair_session"].isna().all()
    ep3 = at.detect_episodes(psq, method="self-report", resolved_cutoff=3)
    assert ep3["repaired"].tolist()[:3] == [True, True, True]
    assert (ep["source"] == "self-report").all() and (ep["method"] == "self-report").all()
    assert ep["depth"].isna().all() and ep["nadir_level"].isna().all()
    assert ep["episode"].tolist() == [1, 2, 3, 4, 5]


# --------------------------------------------------------------------------- raters

def test_per_rater_episodes():
    df = pd.DataFrame({
        "patient": [1, 1, 1, 1, 2, 2],
        "session": [1, 1, 2, 2, 1, 1],
        "rater": ["patient", "therapist"] * 3,
        "tension": ["no", "yes", "yes", "yes", "no", "no"],
        "resolved": [None, 2, 5, 4, None, None],
    })
    psq = at.read_psq(df, rater="rater")
    assert psq.raters == ["patient", "therapist"]
    ep = at.detect_episodes(psq, method="self-report")
    assert sessions_of(ep, rater="patient") == [2]
    assert sessions_of(ep, rater="therapist") == [1, 2]
    assert set(ep["method"]) == {"self-report:patient", "self-report:therapist"}
    assert ep.loc[ep["rater"] == "therapist", "episode"].tolist() == [1, 2]
    only = at.detect_episodes(psq, method="self-report", rater="therapist")
    assert (only["rater"] == "therapist").all() and len(only) == 2
    with pytest.raises(AllianceDataError, match="Unknown rater"):
        at.detect_episodes(psq, method="self-report", rater="observer")
    # duplicates are per rater: the same session twice without rater= is an error
    with pytest.raises(AllianceDataError, match="rater="):
        at.read_psq(df)


def test_rater_without_answers_is_excluded_for_that_rater():
    df = pd.DataFrame({"patient": [1, 1, 2], "session": [1, 1, 1],
                       "rater": ["patient", "therapist", "patient"],
                       "tension": ["yes", "no", "no"], "resolved": [None] * 3})
    psq = at.read_psq(df, rater="rater")
    ep = at.detect_episodes(psq, method="self-report", rater="therapist")
    exc = at.SelfReportDetector(rater="therapist").counting_data(psq).excluded
    assert exc["patient"].tolist() == [2] and "therapist" in exc["reason"].iloc[0]
    status = at.episode_predictors(psq, ep).set_index("patient")["status"]
    assert status[1] == "analysed" and "therapist" in status[2]


# --------------------------------------------------------------------------- 3RS

def codes_frame():
    # patient 1: session 1 coded with W (2) and C (4) markers, resolution 5;
    #            session 2 coded, no marker; session 3 W (1) only, no resolution
    # patient 2: session 1 coded, no marker
    return pd.DataFrame({
        "patient": [1, 1, 1, 1, 1, 1, 2],
        "session": [1, 1, 1, 2, 2, 3, 1],
        "segment": [1, 2, 3, 1, 2, 1, 1],
        "type": ["W", "confrontation", None, "", None, "w", None],
        "marker": ["minimal response", "complaints about the therapist", None, None, None,
                   "denial", None],
        "significance": [2, 4, None, None, None, 1, None],
        "resolution": [5, 5, 5, None, None, None, None],
    })


def test_observer_episodes_hand_computed():
    codes = at.read_3rs(codes_frame(), marker="marker", resolution="resolution",
                        patients=[1, 2, 3])
    ep = at.detect_episodes(codes, method="observer")
    assert ep["patient"].tolist() == [1, 1]
    assert sessions_of(ep) == [1, 3]
    assert ep["type"].tolist() == ["both", "withdrawal"]
    assert ep["intensity"].tolist() == [4.0, 1.0]
    assert ep["n_markers"].tolist() == [2, 1]
    assert ep["repaired"].iloc[0] is True or bool(ep["repaired"].iloc[0])
    assert pd.isna(ep["repaired"].iloc[1])
    assert ep["repair_session"].iloc[0] == 1 and ep["sessions_to_repair"].iloc[0] == 0
    assert (ep["source"] == "observer").all()
    # significance cutoff 2 drops the significance-1 withdrawal marker
    ep2 = at.detect_episodes(codes, method="observer", significance_cutoff=3)
    assert sessions_of(ep2) == [1] and ep2["type"].tolist() == ["confrontation"]
    ep5 = at.detect_episodes(codes, method="observer", resolution_cutoff=6)
    assert not bool(ep5["repaired"].iloc[0])


def test_coded_no_rupture_differs_from_not_coded():
    codes = at.read_3rs(codes_frame(), resolution="resolution", patients=[1, 2, 3])
    cov = codes.coverage
    assert list(map(tuple, cov.to_numpy())) == [(1, 1), (1, 2), (1, 3), (2, 1)]
    assert codes.excluded["patient"].tolist() == [3]
    assert codes.excluded["reason"].tolist() == ["no coded session"]
    ep = at.detect_episodes(codes, method="observer")
    pred = at.episode_predictors(codes, ep).set_index("patient")
    # patient 2 was coded with no marker: analysed, no rupture; patient 3 was not coded
    assert pred.loc[2, "status"] == "analysed" and pred.loc[2, "n_ruptures"] == 0
    assert pred.loc[2, "group"] == "no_rupture" and pred.loc[2, "n_sessions"] == 1
    assert pred.loc[3, "status"] == "no coded session" and pd.isna(pred.loc[3, "n_ruptures"])
    # patient 1: 3 coded sessions, 2 ruptures, one repaired, one with unknown repair
    row = pred.loc[1]
    assert (row["n_sessions"], row["n_ruptures"], row["n_repaired"], row["n_unrepaired"],
            row["n_repair_unknown"]) == (3, 2, 1, 0, 1)
    assert pd.isna(row["group"])  # unknown whether all were repaired
    assert (row["n_withdrawal"], row["n_confrontation"], row["n_type_unknown"]) == (2, 1, 0)
    assert row["mean_intensity"] == pytest.approx(2.5) and row["max_intensity"] == 4.0


def test_resolution_given_once_or_repeated():
    once = codes_frame()
    once.loc[[1, 2], "resolution"] = None
    a = at.read_3rs(once, resolution="resolution").sessions
    b = at.read_3rs(codes_frame(), resolution="resolution").sessions
    pd.testing.assert_frame_equal(a, b)


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("change, pattern", [
    (lambda d: d.drop(columns="significance"), r"'significance' \(significance=\)"),
    (lambda d: d.assign(type=["W", "X", None, None, None, "sulk", None]),
     r"'X'.*'sulk'.*row 1.*row 5"),
    (lambda d: d.assign(significance=[2, 6, None, None, None, 0, None]),
     r"outside 1-5.*row 1: 6.*row 5: 0"),
    (lambda d: d.assign(resolution=[5, 4, 5, None, None, None, None]), r"Conflicting.*row 1"),
    (lambda d: d.assign(significance=[2, 4, 3, None, None, 1, None]), r"without a marker.*row 2"),
    (lambda d: d.assign(significance=[None, 4, None, None, None, 1, None]),
     r"without a significance.*row 0"),
    (lambda d: d.assign(segment=[1, 1, 3, 1, 2, 1, 1], type=["W", "W", None, None, None, "W",
                                                               None],
                        marker=["denial"] * 2 + [None] * 5), r"duplicated.*row 0, row 1"),
    (lambda d: d.assign(segment=[1, 2, 2, 1, 2, 1, 1]), r"with and without a marker.*row 2"),
    (lambda d: d.assign(session=[1, 1, 1, 2, 2.5, 3, 1]), r"row 4: 2.5"),
    (lambda d: d.assign(patient=[1, None, 1, 1, 1, 1, 2]), r"patient.*row 1"),
])
def test_bad_3rs_input_names_rows_and_values(change, pattern):
    with pytest.raises(AllianceDataError, match=pattern):
        at.read_3rs(change(codes_frame()), marker="marker", resolution="resolution")


@pytest.mark.parametrize("df, kwargs, pattern", [
    (psq_frame(tension=["yes", "no"]), {}, r"'resolved' \(resolved=\)"),
    (psq_frame(tension=[1, 6, 3]), {"resolved": None}, r"outside 1-5.*row 1: 6"),
    (psq_frame(tension=["yes", "no"], resolved=[0, 4]), {}, r"'resolved'.*row 0: 0"),
    (psq_frame(tension=["yes", "no"], w=[3, 9]), {"withdrawal": "w", "resolved": None},
     r"'w'.*row 1: 9"),
    (psq_frame(tension=["yes", "no"], ti=["high", 2]),
     {"tension_intensity": "ti", "resolved": None}, r"non-numeric.*row 0: 'high'"),
    (pd.DataFrame({"patient": [1, 1], "session": [2, 2], "tension": ["yes", "no"]}),
     {"resolved": None}, r"duplicated patient/session.*row 0, row 1"),
    (pd.DataFrame({"patient": [1, 1], "session": [1, -2], "tension": ["yes", "no"]}),
     {"resolved": None}, r"row 1: -2"),
    (pd.DataFrame({"patient": [1, 1], "session": [1, 2], "rater": ["patient", None],
                   "tension": ["yes", "no"]}), {"resolved": None, "rater": "rater"},
     r"rater.*row 1"),
])
def test_bad_psq_input_names_rows_and_values(df, kwargs, pattern):
    with pytest.raises(AllianceDataError, match=pattern):
        at.read_psq(df, **kwargs)


def test_bad_input_from_file_names_lines(tmp_path):
    p = tmp_path / "psq.csv"
    psq_frame(tension=["yes", "perhaps"]).to_csv(p, index=False)
    with pytest.raises(AllianceDataError, match="line 3: 'perhaps'"):
        at.read_psq(p, resolved=None)


def test_bad_options():
    psq = at.read_psq(psq_frame(tension=["yes", "no"]), resolved=None)
    with pytest.raises(TypeError, match="significance_cutoff"):
        at.detect_episodes(psq, method="self-report", significance_cutoff=2)
    with pytest.raises(ValueError, match="tension_cutoff"):
        at.detect_episodes(psq, method="self-report", tension_cutoff="high")
    with pytest.raises(TypeError, match="read_3rs"):
        at.detect_episodes(psq, method="observer")


def test_patients_without_answers_are_kept_not_dropped():
    df = pd.DataFrame({"patient": ["a", "a", "b"], "session": [1, 2, 1],
                       "tension": ["yes", "no", None], "resolved": [5, None, None]})
    psq = at.read_psq(df, patients=["a", "b", "c"])
    assert psq.patients.tolist() == ["a", "b", "c"]
    assert psq.excluded["patient"].tolist() == ["b", "c"]
    ep = at.detect_episodes(psq, method="self-report")
    pred = at.episode_predictors(psq, ep)
    assert pred["patient"].tolist() == ["a", "b", "c"]
    assert pred["status"].tolist() == ["analysed", "no PSQ answered", "no PSQ answered"]
    assert pred["n_sessions"].tolist() == [2, 0, 0]


def test_dataframe_input_with_canonical_columns():
    df = psq_frame(tension=["yes", "no", "yes"], withdrawal=[1, 4, 1], resolved=[4, None, 1])
    ep = at.detect_episodes(df, method="self-report")
    assert sessions_of(ep) == [1, 2, 3]
    assert ep["repaired"].tolist()[0] is True or bool(ep["repaired"].iloc[0])


# --------------------------------------------------------------------------- predictors, models

def test_predictors_and_outcome_model_on_self_report_episodes():
    rng = np.random.default_rng(5)
    rows, outcomes = [], []
    for p in range(1, 41):
        n_rup = p % 4
        n_rep = n_rup // 2
        for s in range(1, 11):
            tension = "yes" if s <= n_rup else "no"
            resolved = (5 if s <= n_rep else 1) if s <= n_rup else None
            rows.append({"patient": p, "session": s, "tension": tension, "resolved": resolved})
        outcomes.append({"patient": p, "therapist": f"T{p % 5}",
                         "bdi_pre": 20 + rng.normal(0, 3),
                         "bdi_post": 12 - 2 * n_rep + 3 * (n_rup - n_rep) + rng.normal(0, 1)})
    psq = at.read_psq(pd.DataFrame(rows))
    ep = at.detect_episodes(psq, method="self-report")
    pred = at.episode_predictors(psq, ep)
    expected_rup = np.arange(1, 41) % 4
    assert pred["n_ruptures"].tolist() == expected_rup.tolist()
    assert pred["n_repaired"].tolist() == (expected_rup // 2).tolist()
    assert pred["n_unrepaired"].tolist() == (expected_rup - expected_rup // 2).tolist()
    assert (pred["n_sessions"] == 10).all()
    assert (pred["mean_sessions_to_repair"].dropna() == 0).all()
    groups = np.where(expected_rup == 0, "no_rupture",
                      np.where(expected_rup - expected_rup // 2 > 0, "unrepaired", "repaired"))
    assert pred["group"].tolist() == groups.tolist()
    fit = at.outcome_model(pred, pd.DataFrame(outcomes), predictors=["n_repaired",
                                                                     "n_unrepaired"])
    coefs = fit.coefs.set_index("term")["estimate"]
    assert coefs["n_repaired"] == pytest.approx(-2, abs=0.6)
    assert coefs["n_unrepaired"] == pytest.approx(3, abs=0.6)


def test_predictors_reject_mixed_raters():
    df = pd.DataFrame({"patient": [1, 1], "session": [1, 1], "rater": ["patient", "therapist"],
                       "tension": ["yes", "yes"], "resolved": [4, 2]})
    psq = at.read_psq(df, rater="rater")
    ep = at.detect_episodes(psq, method="self-report")
    with pytest.raises(AllianceDataError, match="mixes methods"):
        at.episode_predictors(psq, ep)
    pred = at.episode_predictors(psq, ep[ep["rater"] == "therapist"])
    assert pred["n_unrepaired"].tolist() == [1]
