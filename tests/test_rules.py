"""Dip-and-recovery rules: presets on hand-computed series, properties, reference agreement."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_rules import reference_episodes

import alliancetrack as at


def long(series: dict) -> pd.DataFrame:
    rows = [
        {"patient": p, "session": i + 1, "alliance": v}
        for p, values in series.items()
        for i, v in enumerate(values)
    ]
    return pd.DataFrame(rows)


def episodes_of(series, rule, scale=None, **kw):
    data = at.read_alliance(long(series), scale=scale)
    return at.detect_episodes(data, rule=rule, **kw)


# --- presets on hand-computed series ---------------------------------------------------------

def test_stiles_v_shaped_dip_and_repair():
    # SD of [4,4,4,4,1,4,4,4] = sqrt(7.875/7) = 1.0607; 2 SD = 2.121; the drop 4 -> 1 is 3.
    ep = episodes_of({"a": [4, 4, 4, 4, 1, 4, 4, 4]}, "stiles-2sd")
    assert len(ep) == 1
    row = ep.iloc[0]
    assert row.rupture_session == 5 and row.nadir_session == 5 and row.repair_session == 6
    assert row.pre_level == 4 and row.nadir_level == 1 and row.depth == 3
    assert row.repaired and not row.censored and row.sessions_to_repair == 1
    assert row.method == "rules:stiles-2sd" and row.source == "scores"


def test_stiles_misses_one_sd_dip_that_strauss_finds():
    x = [4.1, 3.8, 4.1, 3.5, 3.4, 3.5, 3.5, 3.4, 4.1, 3.8, 4.1]
    sd = statistics.stdev(x)
    # the drop 4.1 -> 3.5 is 0.6: between 1 and 2 SD; every other drop is below 1 SD
    assert sd <= 0.6 < 2 * sd
    assert all(a - b < sd for a, b in zip(x, x[1:], strict=False) if (a, b) != (4.1, 3.5))
    assert len(episodes_of({"a": x}, "stiles-2sd")) == 0
    ep = episodes_of({"a": x}, "strauss-1sd")
    assert ep["rupture_session"].tolist() == [4]
    # the nadir is 3.4 at session 5; repair: first session back at 4.1 -> session 9
    assert ep["nadir_session"].tolist() == [5] and ep["nadir_level"].tolist() == [3.4]
    assert ep["repair_session"].tolist() == [9]


def test_unrepaired_rupture_is_censored_without_window():
    ep = episodes_of({"a": [4, 4, 4, 4, 1, 2, 2, 2]}, "strauss-1sd")
    assert len(ep) == 1
    row = ep.iloc[0]
    assert not row.repaired and row.censored and math.isnan(row.repair_session)
    assert math.isnan(row.sessions_to_repair)


def test_repair_window_closes_and_censoring():
    x = [4, 4, 4, 4, 1, 2, 2, 2, 4, 4]
    # without a window the repair is at session 9
    assert episodes_of({"a": x}, "strauss-1sd")["repair_session"].tolist() == [9]
    # a 3-session window closes at session 8: unrepaired and not censored
    ep = episodes_of({"a": x}, "strauss-1sd", repair_window=3)
    assert ep["repaired"].tolist() == [False] and ep["censored"].tolist() == [False]
    # treatment ends at session 7 before a 5-session window closes (5 + 5 = 10): censored
    ep = episodes_of({"a": x[:7]}, "strauss-1sd", repair_window=5)
    assert ep["repaired"].tolist() == [False] and ep["censored"].tolist() == [True]


def test_gumz_gradual_decline_over_several_sessions():
    slow = [4.5, 4.5, 4.5, 4.1, 3.7, 3.3, 3.3, 4.6, 4.5]
    flat = [2.0, 2.5, 3.0, 2.0, 2.5, 3.0, 2.0, 2.5, 3.0]
    within = statistics.stdev(slow)
    sample = statistics.stdev(slow + flat)
    threshold = max(within, sample)
    # no single step falls by the threshold, but 4.5 -> 3.3 over three sessions does
    assert max(a - b for a, b in zip(slow, slow[1:], strict=False)) < threshold
    assert 4.5 - 3.3 >= threshold
    assert len(episodes_of({"a": slow, "b": flat}, "gumz-2012").query("patient == 'a'")) == 1
    ep = episodes_of({"a": slow, "b": flat}, "gumz-2012").query("patient == 'a'").iloc[0]
    # the first session whose score is threshold below the best of the 6 sessions before:
    first = next(t for t in range(1, len(slow)) if max(slow[max(0, t - 6):t]) - slow[t]
                 >= threshold)
    assert ep.rupture_session == first + 1
    assert ep.pre_level == 4.5 and ep.nadir_level == 3.3 and ep.repair_session == 8
    # a V-shaped rule with the same threshold finds nothing
    assert len(episodes_of({"a": slow, "b": flat}, "gumz-2012", decline_sessions=1)
               .query("patient == 'a'")) == 0


def test_rci_uses_scale_reliability():
    x = {"a": [4.0, 4.1, 4.0, 3.2, 4.0, 4.1], "b": [3.0, 3.5, 3.2, 3.4, 3.1, 3.3]}
    all_scores = x["a"] + x["b"]
    rci = 1.96 * statistics.stdev(all_scores) * math.sqrt(2 * (1 - 0.91))
    assert 0.8 >= rci  # the 4.0 -> 3.2 drop is reliable
    ep = episodes_of(x, "rci", scale="wai-sr")
    assert ep["patient"].tolist() == ["a"] and ep["rupture_session"].tolist() == [4]
    # a normative SD in the scale changes the threshold: SD 1.5 -> threshold 1.25 > 0.8
    scale = at.Scale("wai-sr-norm", 1, 5, reliability=0.91, sd=1.5)
    assert len(episodes_of(x, "rci", scale=scale)) == 0
    with pytest.raises(at.AllianceDataError, match="reliability"):
        episodes_of(x, "rci")


def test_patient_mean_and_mean_previous_references():
    x = [4.0, 4.0, 4.0, 4.0, 2.0, 4.0, 4.0, 4.0]
    mean = sum(x) / len(x)
    ep = episodes_of({"a": x}, "strauss-1sd", reference="patient_mean")
    assert ep["pre_level"].tolist() == [mean]
    assert ep["repair_session"].tolist() == [6]
    y = [3.0, 4.0, 5.0, 2.0, 5.0]
    ep = episodes_of({"a": y}, "strauss-1sd", reference="mean_previous", reference_sessions=3,
                     unit="points", threshold=1.5)
    assert ep["pre_level"].tolist() == [4.0]  # mean of 3, 4, 5
    assert ep["rupture_session"].tolist() == [4]


def test_percent_unit_and_lower_is_better():
    x = [30.0, 30.0, 20.0, 31.0, 30.0]
    ep = episodes_of({"a": x}, "strauss-1sd", unit="percent", threshold=25)
    assert ep["rupture_session"].tolist() == [3]  # 10 >= 25% of 30
    assert len(episodes_of({"a": x}, "strauss-1sd", unit="percent", threshold=40)) == 0
    # a scale where lower is better: a rise is a rupture
    scale = at.Scale("distress", 0, 10, higher_is_better=False)
    data = at.read_alliance(long({"a": [2.0, 2.0, 2.0, 8.0, 2.0, 2.0]}), scale=scale)
    ep = at.detect_episodes(data, rule="strauss-1sd")
    assert ep["rupture_session"].tolist() == [4]
    assert ep["nadir_level"].tolist() == [8.0] and ep["pre_level"].tolist() == [2.0]
    assert ep["depth"].tolist() == [6.0] and ep["repair_session"].tolist() == [5]


def test_missing_sessions_are_skipped():
    df = long({"a": [4, 4, 4, 4, 1, 4, 4, 4]})
    with_gap = df.copy()
    with_gap.loc[with_gap["session"] == 5, "session"] = 6  # no longer consecutive
    with_gap.loc[with_gap["session"].isin([6, 7, 8]) & (with_gap["alliance"] == 4), "session"] += 1
    with_gap = pd.concat([with_gap, pd.DataFrame({"patient": ["a"], "session": [5],
                                                  "alliance": [np.nan]})])
    ep = at.detect_episodes(at.read_alliance(with_gap), rule="stiles-2sd")
    assert ep["rupture_session"].tolist() == [6] and ep["repair_session"].tolist() == [7]


def test_two_episodes_numbered_in_time_order_and_not_overlapping():
    x = [4, 4, 1, 4, 4, 4, 1, 1, 4, 4]
    ep = episodes_of({"a": x}, "strauss-1sd")
    assert ep["episode"].tolist() == [1, 2]
    assert ep["rupture_session"].tolist() == [3, 7]
    assert ep["repair_session"].tolist() == [4, 9]


def test_flat_series_has_no_episode_and_overrides_validated():
    assert len(episodes_of({"a": [3, 3, 3, 3, 3]}, "strauss-1sd")) == 0
    with pytest.raises(TypeError, match="Unknown rule field"):
        episodes_of({"a": [3, 3, 3, 3, 3]}, "strauss-1sd", thresold=2)
    with pytest.raises(ValueError, match="Unknown rule preset"):
        episodes_of({"a": [3, 3, 3]}, "stiles")
    with pytest.raises(ValueError, match="threshold must be a positive"):
        at.DipRecoveryRule(threshold=-1)


def test_rule_repr_round_trips():
    rule = at.PRESETS["gumz-2012"].replace(repair_window=4)
    again = eval(repr(rule), {"DipRecoveryRule": at.DipRecoveryRule})
    assert again == rule
    with pytest.raises(AttributeError):
        rule.threshold = 3  # frozen
    assert "6 sessions" in rule.describe()


def test_several_raters_must_be_selected():
    df = long({"a": [4, 4, 1, 4]})
    both = pd.concat([df.assign(rater="patient"), df.assign(rater="therapist")])
    data = at.read_alliance(both, rater="rater")
    with pytest.raises(at.AllianceDataError, match="select_rater"):
        at.detect_episodes(data)
    assert len(at.detect_episodes(data.select_rater("patient"), rule="strauss-1sd")) == 1


def test_rule_min_timepoints_exclusion_is_reported():
    data = at.read_alliance(long({"a": [4, 4, 1, 4, 4, 4], "b": [4, 1, 4]}))
    ep = at.detect_episodes(data, rule="strauss-1sd", min_timepoints=5)
    assert set(ep["patient"]) == {"a"}
    assert ep["method"].unique().tolist() == ["rules:strauss-1sd[min_timepoints=5]"]
    excl = at.detector_from_label(ep["method"].iloc[0]).exclusions(data)  # from data + label
    assert excl["patient"].tolist() == ["b"] and "fewer than 5" in excl["reason"].iloc[0]
    pred = at.episode_predictors(data, ep)
    assert pred.set_index("patient").loc["b", "status"].startswith("fewer than 5")


# --- properties ----------------------------------------------------------------------------

GRID = [v / 12 for v in range(12, 61)]  # WAI-SR item means on the 1/12 grid

rules_strategy = st.builds(
    at.DipRecoveryRule,
    name=st.just("h"),
    reference=st.sampled_from(["previous", "mean_previous", "patient_mean"]),
    reference_sessions=st.integers(1, 3),
    threshold=st.sampled_from([0.5, 1.0, 1.5, 2.0]),
    unit=st.sampled_from(["within_sd", "sample_sd", "max_sd", "points", "rci"]),
    decline_sessions=st.integers(1, 3),
    recovery_fraction=st.sampled_from([0.5, 1.0]),
    repair_window=st.one_of(st.none(), st.integers(1, 4)),
    min_timepoints=st.integers(3, 5),
)


@st.composite
def cohorts(draw):
    n_pat = draw(st.integers(1, 6))
    rows = []
    for p in range(n_pat):
        n = draw(st.integers(0, 14))
        session = 0
        for _ in range(n):
            session += draw(st.sampled_from([1, 1, 1, 2]))
            missing = draw(st.integers(0, 9)) == 0
            value = np.nan if missing else draw(st.sampled_from(GRID))
            rows.append((p, session, value))
        if n == 0:
            rows.append((p, 1, np.nan))
    return pd.DataFrame(rows, columns=["patient", "session", "alliance"])


def _check_invariants(ep: pd.DataFrame, data: at.AllianceData, rule) -> None:
    assert list(ep.columns[:15]) == list(at.EPISODE_COLUMNS)
    assert (ep["depth"] > 0).all()
    rep = ep[ep["repaired"]]
    assert (rep["repair_session"] > rep["rupture_session"]).all()
    assert ep.loc[~ep["repaired"], "repair_session"].isna().all()
    assert (ep["nadir_session"] >= ep["rupture_session"]).all()
    scores = data.frame.dropna(subset=["alliance"]).set_index(["patient", "session"])["alliance"]
    for patient, g in ep.groupby("patient"):
        assert g["episode"].tolist() == list(range(1, len(g) + 1))
        rows = g.to_dict("records")
        for a, b in zip(rows, rows[1:], strict=False):
            end = a["repair_session"] if a["repaired"] else a["rupture_session"] + (
                rule.repair_window if rule.repair_window is not None else math.inf)
            assert b["rupture_session"] > end  # episodes never overlap
        for r in rows:
            own = scores.loc[patient]
            stop = r["repair_session"] if r["repaired"] else math.inf
            inside = own[(own.index >= r["rupture_session"]) & (own.index < stop)]
            if rule.repair_window is not None:
                inside = inside[inside.index <= r["rupture_session"] + rule.repair_window]
            assert r["nadir_level"] == inside.min()  # the nadir is the episode's lowest score


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cohorts(), rules_strategy)
def test_vectorised_engine_agrees_with_per_patient_reference(df, rule):
    data = at.read_alliance(df, scale="wai-sr", min_timepoints=1)
    ep = at.detect_episodes(data, rule=rule)
    counted = data.frame.groupby("patient")["alliance"].count()
    keep = counted[counted >= rule.min_timepoints].index
    ref = reference_episodes(data.frame[data.frame["patient"].isin(keep)], rule, data.scale)
    got = ep[ref.columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, ref.astype(got.dtypes.to_dict()), check_exact=False,
                                  rtol=1e-9, atol=1e-9)
    _check_invariants(ep, data, rule)


@settings(max_examples=150, deadline=None)
@given(cohorts(), rules_strategy.filter(lambda r: r.unit != "points"),
       st.sampled_from([-0.5, 2.0, 10.0]))
def test_adding_a_constant_changes_nothing_under_sd_units(df, rule, shift):
    scale = at.Scale("open", -100, 100, reliability=0.9)
    base = at.detect_episodes(at.read_alliance(df, scale=scale), rule=rule)
    shifted = at.detect_episodes(
        at.read_alliance(df.assign(alliance=df["alliance"] + shift), scale=scale), rule=rule)
    cols = ["patient", "rupture_session", "nadir_session", "repair_session", "repaired",
            "censored"]
    pd.testing.assert_frame_equal(base[cols], shifted[cols])
    np.testing.assert_allclose(shifted["depth"], base["depth"], atol=1e-9)
    np.testing.assert_allclose(shifted["pre_level"], base["pre_level"] + shift, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(cohorts(), rules_strategy)
def test_mirrored_scale_direction_gives_the_same_episodes(df, rule):
    up = at.Scale("up", -10, 10, reliability=0.9)
    down = at.Scale("down", -10, 10, reliability=0.9, higher_is_better=False)
    a = at.detect_episodes(at.read_alliance(df, scale=up), rule=rule)
    b = at.detect_episodes(at.read_alliance(df.assign(alliance=-df["alliance"]), scale=down),
                           rule=rule)
    cols = ["patient", "rupture_session", "repair_session", "repaired", "censored"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    np.testing.assert_allclose(a["depth"], b["depth"], atol=1e-9)
    np.testing.assert_allclose(a["nadir_level"], -b["nadir_level"], atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(cohorts(), rules_strategy, st.lists(st.integers(1, 40), max_size=5))
def test_adding_missing_rating_rows_changes_nothing(df, rule, extra_sessions):
    data = at.read_alliance(df, scale="wai-sr", min_timepoints=1)
    present = set(zip(df["patient"], df["session"], strict=True))
    extra = [(p, s, np.nan) for p in df["patient"].unique() for s in extra_sessions
             if (p, s) not in present]
    more = pd.concat([df, pd.DataFrame(extra, columns=df.columns).astype(df.dtypes.to_dict())])
    more = more.drop_duplicates(
        ["patient", "session"])
    a = at.detect_episodes(data, rule=rule)
    b = at.detect_episodes(at.read_alliance(more, scale="wai-sr", min_timepoints=1), rule=rule)
    pd.testing.assert_frame_equal(a, b)


@settings(max_examples=100, deadline=None)
@given(cohorts(), rules_strategy)
def test_every_input_patient_is_in_the_predictors(df, rule):
    data = at.read_alliance(df, scale="wai-sr")
    ep = at.detect_episodes(data, rule=rule)
    pred = at.episode_predictors(data, ep)
    assert pred["patient"].tolist() == sorted(df["patient"].unique().tolist())
    analysed = pred["status"] == "analysed"
    assert pred.loc[~analysed, "n_ruptures"].isna().all()
    a = pred[analysed]
    assert (a["n_ruptures"] == a["n_repaired"] + a["n_unrepaired"]).all()
    assert a["n_ruptures"].sum() == len(ep)
    expected = np.where(a["n_ruptures"] == 0, "no_rupture",
                        np.where(a["n_unrepaired"] > 0, "unrepaired", "repaired"))
    assert a["group"].tolist() == expected.tolist()
    assert ((a["first_rupture_phase"] > 0) & (a["first_rupture_phase"] <= 1)
            | a["first_rupture_phase"].isna()).all()


def test_episode_tables_from_different_data_concatenate():
    a = at.detect_episodes(at.read_alliance(long({"a": [4, 4, 1, 4], "b": [4, 1]})),
                           rule="strauss-1sd")
    b = at.detect_episodes(at.read_alliance(long({"c": [4, 4, 1, 4], "d": [3, 3]})),
                           rule="strauss-1sd")
    both = pd.concat([a, b], ignore_index=True)  # used to fail: DataFrames in attrs
    assert both["patient"].tolist() == ["a", "c"]
    same = pd.concat([a, a.copy()], ignore_index=True)
    assert same["method"].unique().tolist() == ["rules:strauss-1sd"]
