"""The detector protocol: labels, detector_from_label, option checks, saved episode tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import alliancetrack as at
from alliancetrack.detection.base import DETECTORS


def long(series: dict) -> pd.DataFrame:
    return pd.DataFrame([{"patient": p, "session": i + 1, "alliance": float(v)}
                         for p, s in series.items() for i, v in enumerate(s)])


# a has 6 rated sessions and a dip; b has 4 (analysed by the data, excluded by min_timepoints=5);
# c has 2 (excluded by the data)
SERIES = {"a": [4, 4, 1, 4, 4, 4], "b": [4, 1, 4, 4], "c": [4, 4]}


def psq_frame() -> pd.DataFrame:
    return pd.DataFrame({"patient": [1, 1, 1, 2, 2, 3], "session": [1, 2, 3, 1, 2, 1],
                         "rater": ["patient"] * 6,
                         "tension": ["yes", "no", "yes", "no", "no", "yes"],
                         "resolved": [5, None, 2, None, None, 4]})


def codes_frame() -> pd.DataFrame:
    return pd.DataFrame({"patient": [1, 1, 2], "session": [1, 2, 1], "segment": [1, 1, 1],
                         "type": ["withdrawal", None, "confrontation"],
                         "significance": [3, None, 1]})


def _round_trip(ep: pd.DataFrame, tmp_path, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        ep.to_csv(tmp_path / "ep.csv", index=False)
        return pd.read_csv(tmp_path / "ep.csv")
    ep.to_parquet(tmp_path / "ep.parquet", index=False)
    back = pd.read_parquet(tmp_path / "ep.parquet")
    back.attrs = {}  # pandas keeps attrs in Parquet metadata; other writers and readers do not
    return back


# --------------------------------------------------------------------------- saved tables
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_saved_episode_table_keeps_the_rule_exclusions(tmp_path, fmt):
    data = at.read_alliance(long(SERIES))
    ep = at.detect_episodes(data, rule="strauss-1sd", min_timepoints=5)
    assert ep["method"].unique().tolist() == ["rules:strauss-1sd[min_timepoints=5]"]
    back = _round_trip(ep, tmp_path, fmt)
    assert back.attrs == {}  # nothing survives in attrs
    want = at.episode_predictors(data, ep)
    got = at.episode_predictors(data, back)
    pd.testing.assert_frame_equal(got, want)
    status = got.set_index("patient")["status"]
    # b was excluded by the rule, not counted as "no rupture"; c by the data
    assert status["a"] == "analysed"
    assert status["b"].startswith("fewer than 5 rated sessions (4 rated; rule 'strauss-1sd')")
    assert status["c"].startswith("fewer than 3")
    assert got.set_index("patient")["n_ruptures"].isna().tolist() == [False, True, True]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_saved_self_report_and_observer_tables(tmp_path, fmt):
    psq = at.read_psq(psq_frame(), rater="rater")
    ep = at.detect_episodes(psq, method="self-report", tension_cutoff=3)
    assert ep["method"].unique().tolist() == ["self-report:patient[tension_cutoff=3]"]
    back = _round_trip(ep, tmp_path, fmt)
    pd.testing.assert_frame_equal(at.episode_predictors(psq, back),
                                  at.episode_predictors(psq, ep), check_dtype=False)
    codes = at.read_3rs(codes_frame(), patients=[1, 2, 3])
    ep = at.detect_episodes(codes, method="observer", significance_cutoff=2)
    back = _round_trip(ep, tmp_path, fmt)
    want = at.episode_predictors(codes, ep)
    pd.testing.assert_frame_equal(at.episode_predictors(codes, back), want, check_dtype=False)
    assert want.set_index("patient").loc[3, "status"] == "no coded session"


def test_empty_saved_table_needs_the_detector(tmp_path):
    data = at.read_alliance(long({"a": [4, 4, 4, 4, 4], "b": [4, 4, 4]}))
    ep = at.detect_episodes(data, rule="strauss-1sd", min_timepoints=5)
    assert len(ep) == 0
    in_memory = at.episode_predictors(data, ep)  # the in-memory hint names the detector
    back = _round_trip(ep, tmp_path, "parquet")
    with pytest.raises(at.AllianceDataError, match="no rows.*detector="):
        at.episode_predictors(data, back)
    got = at.episode_predictors(data, back, detector="rules:strauss-1sd[min_timepoints=5]")
    pd.testing.assert_frame_equal(got, in_memory, check_dtype=False)
    assert got.set_index("patient").loc["b", "status"].startswith("fewer than 5")
    with pytest.raises(at.AllianceDataError, match="does not match"):
        at.episode_predictors(data, at.detect_episodes(long({"a": [4, 4, 1, 4]}),
                                                       rule="strauss-1sd"),
                              detector="rules:rci")


# --------------------------------------------------------------------------- labels
def test_two_definitions_have_two_labels_and_do_not_mix():
    data = at.read_alliance(long(SERIES))
    one = at.detect_episodes(data, rule="strauss-1sd")
    two = at.detect_episodes(data, rule="strauss-1sd", repair_window=1)
    assert one["method"].unique().tolist() == ["rules:strauss-1sd"]
    assert two["method"].unique().tolist() == ["rules:strauss-1sd[repair_window=1]"]
    with pytest.raises(at.AllianceDataError, match="mixes methods"):
        at.episode_predictors(data, pd.concat([one, two], ignore_index=True))


def test_labels_name_every_non_default_parameter_and_turn_back():
    rule = at.PRESETS["gumz-2012"].replace(repair_window=4, recovery_fraction=0.5)
    assert rule.label == "rules:gumz-2012[recovery_fraction=0.5,repair_window=4]"
    custom = at.DipRecoveryRule(threshold=1.5)  # not a preset: every field is named
    assert custom.label.startswith("rules:custom[reference='previous',reference_sessions=1,"
                                   "threshold=1.5,unit='within_sd'")
    detectors = [
        rule, custom, at.PRESETS["rci"], at.DipRecoveryRule("mine", unit="points"),
        at.ChangepointDetector(), at.ChangepointDetector(model="rbf", params={"gamma": 2.0},
                                                         penalty=1.5, n_bkps=2),
        at.SuddenChangeDetector(), at.SuddenChangeDetector("increase", cutoff=None, pct=0.1),
        at.SelfReportDetector(), at.SelfReportDetector(rater="therapist", resolved_cutoff=3),
        at.ObserverDetector(resolution_cutoff=5),
    ]
    for det in detectors:
        assert at.detector_from_label(det.label) == det, det.label
    assert len({d.label for d in detectors}) == len(detectors)
    # numpy scalars are written as Python literals
    det = at.ChangepointDetector(min_size=np.int64(2), min_shift=np.float64(1.5))
    assert det.label == "changepoint:l2[min_size=2,min_shift=1.5]"
    assert at.detector_from_label(det.label) == det
    # execution options do not change the episodes and are not part of the label
    assert at.ChangepointDetector(n_jobs=2, engine="ruptures").label == "changepoint:l2"
    for bad in ("nonsense", "rules:strauss-1sd[repair_window=", "hmmm:x"):
        with pytest.raises(ValueError):
            at.detector_from_label(bad)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(at.PRESETS)), st.sampled_from([None, 1, 2, 5]),
       st.sampled_from([0.5, 1.0, 1.25]), st.sampled_from(["previous", "mean_previous"]),
       st.integers(3, 6))
def test_rule_labels_round_trip(name, window, fraction, reference, min_tp):
    rule = at.PRESETS[name].replace(repair_window=window, recovery_fraction=fraction,
                                    reference=reference, min_timepoints=min_tp)
    again = at.detector_from_label(rule.label)
    assert again == rule and again.label == rule.label
    assert (rule == at.PRESETS[name]) == (rule.label == f"rules:{name}")


# --------------------------------------------------------------------------- options
def _data_for(method: str):
    if method == "self-report":
        return at.read_psq(psq_frame(), rater="rater")
    if method == "observer":
        return at.read_3rs(codes_frame())
    return long(SERIES)


@pytest.mark.parametrize("method", sorted(DETECTORS))
def test_unknown_options_are_refused_by_name_for_every_method(method):
    data = _data_for(method)
    with pytest.raises(ValueError, match=r"\['foo'\].*valid options: ") as err:
        at.detect_episodes(data, method=method, foo=1)
    valid = DETECTORS[method].option_names()
    assert all(name in str(err.value) for name in valid)
    if method != "rules":  # a rule preset does not apply to other methods
        with pytest.raises(ValueError, match="rule= applies to method='rules' only"):
            at.detect_episodes(data, method=method, rule="rci")


def test_inapplicable_and_bad_options():
    df = long(SERIES)
    with pytest.raises(ValueError, match="threshold"):  # a rule field, not a change-point one
        at.detect_episodes(df, method="changepoint", threshold=1.0)
    with pytest.raises(ValueError, match="min_size"):
        at.detect_episodes(df, method="rules", min_size=2)
    with pytest.raises(ValueError, match="Unknown method 'hmmm'"):
        at.detect_episodes(df, method="hmmm")
    with pytest.raises(ValueError, match="min_shift must be a positive number"):
        at.detect_episodes(df, method="changepoint", min_shift=-1)
    with pytest.raises(ValueError, match="direction must be one of"):
        at.detect_episodes(df, method="sudden", direction="down")
    with pytest.raises(ValueError, match="rule= is a 'changepoint' detector"):
        at.detect_episodes(df, method="sudden", rule=at.ChangepointDetector())
    # a detector object brings its method
    det = at.ChangepointDetector(min_shift=1.5)
    pd.testing.assert_frame_equal(at.detect_episodes(df, rule=det),
                                  at.detect_episodes(df, method="changepoint", min_shift=1.5))


# --------------------------------------------------------------------------- sudden changes
def test_sudden_changes_as_episodes_follow_the_changes_table():
    rng = np.random.default_rng(3)
    rows = []
    for p in range(12):
        x = 30 + rng.normal(0, 1.5, 14)
        x[5 + p % 4:] -= 10  # a sudden drop
        if p % 2:
            x[10:] += 10  # reversed later for half of them
        rows += [{"patient": p, "session": s + 1, "alliance": v} for s, v in enumerate(x)]
    df = pd.DataFrame(rows)
    ep = at.detect_episodes(df, method="sudden", cutoff=5)
    _, changes = at.sudden_changes(df, cutoff=5)
    assert (ep["method"] == "sudden:decrease[cutoff=5]").all()
    first = changes.groupby("patient").head(1).set_index("patient")
    e1 = ep[ep["episode"] == 1].set_index("patient")
    assert e1.index.tolist() == first.index.tolist()
    assert (e1["rupture_session"] == first["post_session"]).all()
    assert (e1["pre_level"] == first["pre_score"]).all()
    assert (e1["repaired"] == first["reversal"]).all()
    rev = first["reversal"]
    assert (e1.loc[rev, "repair_session"] == first.loc[rev, "reversal_session"]).all()
    assert (e1["censored"] == ~e1["repaired"]).all()
    assert (ep["depth"] > 0).all()
    assert np.allclose(ep["depth"], ep["pre_level"] - ep["nadir_level"])
    for _, g in ep.groupby("patient"):  # no overlaps
        end = g["repair_session"].fillna(np.inf).to_numpy()
        assert (g["rupture_session"].to_numpy()[1:] > end[:-1]).all()
    pred = at.episode_predictors(df, ep)
    assert pred["n_ruptures"].sum() == len(ep)
