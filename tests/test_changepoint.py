"""Change-point detection of rupture-repair episodes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ruptures as rpt
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_changepoint import segment_episodes

import alliancetrack as at
from alliancetrack.detection.changepoint import (
    ChangepointSegmenter,
    bic_penalty,
    detect_changepoint,
    episodes_from_segments,
    noise_sd,
)
from alliancetrack.detection.episodes import EPISODE_COLUMNS

REF = Path(__file__).resolve().parents[1].parent / "shared" / "reference"

V_DIP = [4.0, 4.1, 3.9, 4.0, 4.1, 3.9, 2.0, 4.0, 4.1, 3.9, 4.0, 4.1]  # dip at session 7
U_DIP = [4.0, 4.1, 3.9, 4.0, 2.5, 2.0, 1.9, 2.1, 2.4, 4.0, 3.9, 4.1, 4.0]
DROP = [4.0, 4.1, 3.9, 4.0, 4.1, 2.0, 2.1, 1.9, 2.0, 2.1]
FLAT_NOISY = [4.0, 4.1, 3.9, 4.0, 4.1, 3.9, 4.0, 4.0, 4.1, 3.9, 4.0, 4.1]


def long(*series, start_id=1) -> pd.DataFrame:
    rows = []
    for k, s in enumerate(series):
        for j, v in enumerate(s):
            rows.append({"patient": start_id + k, "session": j + 1, "alliance": v})
    return pd.DataFrame(rows)


def one(ep: pd.DataFrame) -> pd.Series:
    assert len(ep) == 1, ep
    return ep.iloc[0]


def check_semantics(ep: pd.DataFrame) -> None:
    assert list(ep.columns[: len(EPISODE_COLUMNS)]) == list(EPISODE_COLUMNS)
    assert (ep["depth"] > 0).all()
    assert np.allclose(ep["depth"], ep["pre_level"] - ep["nadir_level"])
    rep = ep["repaired"]
    assert (ep.loc[rep, "rupture_session"] < ep.loc[rep, "repair_session"]).all()
    assert ep.loc[~rep, "repair_session"].isna().all()
    assert (ep["censored"] == ~rep).all()  # change points: unrepaired => censored
    assert (ep["source"] == "scores").all()
    for _, g in ep.groupby("patient"):
        end = g["repair_session"].fillna(np.inf).to_numpy()
        assert (g["rupture_session"].to_numpy()[1:] > end[:-1]).all()  # no overlap


def test_v_shaped_single_session_dip():
    e = one(detect_changepoint(long(V_DIP)))
    assert e["method"] == "changepoint:l2"
    assert (e["rupture_session"], e["nadir_session"], e["repair_session"]) == (7, 7, 8)
    assert e["nadir_level"] == 2.0
    assert e["pre_level"] == pytest.approx(np.mean(V_DIP[:6]))
    assert e["depth"] == pytest.approx(np.mean(V_DIP[:6]) - 2.0)
    assert e["repaired"] and not e["censored"] and e["sessions_to_repair"] == 1


def test_ruptures_default_jump_misses_the_dip_we_find():
    x = np.array(V_DIP)
    # ruptures' defaults (min_size=2, jump=5) cannot put change points at 6 and 7
    default = rpt.Pelt(model="l2").fit(x).predict(pen=bic_penalty(noise_sd(x), len(x)))
    assert 6 not in default and 7 not in default
    ours = ChangepointSegmenter().fit(x).predict(pen=bic_penalty(noise_sd(x), len(x)))
    assert ours == [6, 7, 12]
    with_jump5 = detect_changepoint(long(V_DIP), jump=5, min_size=2)
    assert 7 not in set(with_jump5["rupture_session"])


def test_u_shaped_multi_session_dip():
    ep = detect_changepoint(long(U_DIP))
    check_semantics(ep)
    e = one(ep)
    assert (e["rupture_session"], e["nadir_session"], e["repair_session"]) == (5, 7, 10)
    assert e["nadir_level"] == 1.9
    assert e["pre_level"] == pytest.approx(4.0)  # mean of sessions 1-4
    assert e["depth"] == pytest.approx(2.1)


def test_unrepaired_drop_is_censored():
    e = one(detect_changepoint(long(DROP)))
    assert e["rupture_session"] == 6 and not e["repaired"] and e["censored"]
    assert np.isnan(e["repair_session"]) and np.isnan(e["sessions_to_repair"])
    assert (e["nadir_session"], e["nadir_level"]) == (8, 1.9)
    assert e["pre_level"] == pytest.approx(np.mean(DROP[:5]))


def test_flat_and_constant_series_give_no_episode():
    assert len(detect_changepoint(long(FLAT_NOISY))) == 0
    assert len(detect_changepoint(long([3.0] * 10))) == 0  # zero noise estimate guarded
    # a constant patient next to a dipping one borrows the pooled noise SD
    ep = detect_changepoint(long([3.0] * 10, V_DIP))
    assert ep["patient"].tolist() == [2]


def test_noise_scale_bic_penalty_by_hand():
    x = [4.0, 4.2, 3.9, 4.1, 2.0, 2.2, 1.9, 4.0, 4.1]
    # |differences| .2 .3 .2 2.1 .2 .3 2.1 .1: median .25 = 0.6745 * sqrt(2) * sigma
    assert noise_sd(x) == pytest.approx(0.25 / (0.6744897501960817 * np.sqrt(2)))
    # mostly repeated grid values: the 75% quantile of |differences| is used
    y = [4.0, 4.0, 4.0, 4.0, 4.0, 4.0 + 1 / 12, 4.0, 4.0, 4.0]
    # sorted |d| = 0 0 0 0 0 0 1/12 1/12: median 0; 75% quantile (linear) = 0.25 / 12
    assert noise_sd(y) == pytest.approx((1 / 48) / (1.1503493803760079 * np.sqrt(2)))
    assert bic_penalty(0.5, 10) == pytest.approx(2 * 0.25 * np.log(10))
    assert bic_penalty(0.5, 10, factor=3) == pytest.approx(3 * 0.25 * np.log(10))


def test_missing_sessions_map_back_to_session_numbers():
    df = long(V_DIP)
    df.loc[df["session"].isin([2, 7]), "alliance"] = np.nan  # session 7 unrated
    df = df[df["session"] != 5]  # session 5 absent altogether
    df.loc[df["session"] == 8, "alliance"] = 2.1
    df.loc[df["session"] == 9, "alliance"] = 2.0
    e = one(detect_changepoint(df))
    assert (e["rupture_session"], e["nadir_session"], e["repair_session"]) == (8, 9, 10)
    assert e["pre_level"] == pytest.approx(np.mean([4.0, 3.9, 4.0, 3.9]))  # sessions 1,3,4,6


@pytest.mark.parametrize("series", [[4.0, 4.0, 1.0], [4.0, 1.0, 4.0, 4.0], [4.0, 4.1, 1.0, 1.1, 4.0]])
def test_short_series(series):
    # alone, a 3-5 point series cannot tell noise from change: nothing is forced
    for engine in ("fast", "ruptures"):
        check_semantics(detect_changepoint(long(series), engine=engine))
    # with a penalty and a shift in scale points the drop is found
    ep = detect_changepoint(long(series), penalty=0.1, min_shift=1.0, shift_unit="scale")
    e = one(ep)
    assert e["rupture_session"] == series.index(min(series)) + 1
    assert e["repaired"] == (series[-1] == 4.0)


def test_short_series_borrow_pooled_noise():
    ep = detect_changepoint(long([4.0, 1.0, 1.1, 4.0], FLAT_NOISY, V_DIP))
    assert sorted(ep["patient"]) == [1, 3]


def test_lower_is_better_scale_mirrors():
    ad = at.read_alliance(long([6.0 - v for v in U_DIP]))
    ad = dataclasses.replace(ad, higher_is_better=False)
    e = one(detect_changepoint(ad))
    assert (e["rupture_session"], e["nadir_session"], e["repair_session"]) == (5, 7, 10)
    assert e["nadir_level"] == pytest.approx(6.0 - 1.9)
    assert e["pre_level"] == pytest.approx(2.0)
    assert e["depth"] == pytest.approx(2.1)


def test_excluded_patients_are_not_analysed():
    df = pd.concat([long(U_DIP), long([4.0, 1.0], start_id=2)])
    ad = at.read_alliance(df)
    assert 2 in set(ad.excluded["patient"])
    assert set(detect_changepoint(ad)["patient"]) == {1}


def test_fast_and_ruptures_engines_agree_and_n_jobs_is_deterministic():
    ad = at.read_alliance(REF / "cohort101_sessions.csv", therapist="therapist")
    fast = detect_changepoint(ad)
    check_semantics(fast)
    slow = detect_changepoint(ad, engine="ruptures")
    pd.testing.assert_frame_equal(fast, slow)
    par = detect_changepoint(ad, engine="ruptures", n_jobs=2)
    pd.testing.assert_frame_equal(slow, par)
    fixed = detect_changepoint(ad, penalty=0.3, shift_unit="scale", min_shift=0.5)
    pd.testing.assert_frame_equal(
        fixed, detect_changepoint(ad, penalty=0.3, shift_unit="scale", min_shift=0.5,
                                  engine="ruptures"))


def test_episodes_follow_the_segments_ruptures_returns():
    x = np.array(U_DIP)
    for search, kw in [("binseg", {"pen": 0.5}), ("bottomup", {"pen": 0.5}),
                       ("dynp", {"n_bkps": 2}), ("kernelcpd", {"pen": 0.5})]:
        seg = ChangepointSegmenter(search=search).fit(x)
        bkps = seg.predict(**kw)
        eps = episodes_from_segments(x, np.arange(1, 14), bkps, min_shift=1.0)
        assert [e["rupture_session"] for e in eps] == [bkps[0] + 1], search
    ep = detect_changepoint(long(U_DIP), search="dynp", n_bkps=2)
    assert one(ep)["rupture_session"] == 5


@pytest.mark.parametrize("model", ["l1", "rbf", "normal"])
@pytest.mark.filterwarnings("ignore:New behaviour in v1.1.5")
def test_other_cost_models_find_the_u_dip(model):
    e = one(detect_changepoint(long(U_DIP), model=model, min_size=2))
    assert e["method"] == f"changepoint:{model}[min_size=2]"  # the label names min_size
    assert e["rupture_session"] == 5 and e["repaired"]


def test_penalty_and_n_bkps_overrides():
    assert len(detect_changepoint(long(U_DIP), penalty=1e6)) == 0
    assert len(detect_changepoint(long(U_DIP), n_bkps=0)) == 0
    assert one(detect_changepoint(long(V_DIP), n_bkps=2))["rupture_session"] == 7
    # more change points than the series allows are capped, not an error
    check_semantics(detect_changepoint(long([4.0, 1.0, 4.0]), n_bkps=10, min_shift=0.5,
                                       shift_unit="scale"))


def test_repair_fraction_and_min_shift():
    partial = [4.0, 4.1, 3.9, 4.0, 2.0, 2.1, 1.9, 2.0, 3.0, 3.1, 2.9, 3.0]
    e = one(detect_changepoint(long(partial), repair_fraction=0.5, penalty=0.2))
    assert e["repaired"] and e["repair_session"] == 9  # regains half of the 2-point drop
    e = one(detect_changepoint(long(partial), repair_fraction=0.75, penalty=0.2))
    assert not e["repaired"]
    assert len(detect_changepoint(long(partial), min_shift=2.5, shift_unit="scale",
                                  penalty=0.2)) == 0


@pytest.mark.parametrize("kwargs, match", [
    ({"model": "l3"}, "model"), ({"search": "window"}, "search"),
    ({"penalty": "aic"}, "penalty"), ({"penalty": -1.0}, "penalty"),
    ({"search": "dynp"}, "n_bkps"), ({"model": "l1", "engine": "fast"}, "engine"),
    ({"shift_unit": "points"}, "shift_unit"), ({"min_size": 0}, "min_size"),
    ({"repair_fraction": 1.5}, "repair_fraction"), ({"min_shift": 0}, "min_shift"),
    ({"search": "kernelcpd", "model": "l1"}, "kernelcpd"),
])
def test_input_errors(kwargs, match):
    with pytest.raises(at.AllianceDataError, match=match):
        detect_changepoint(long(U_DIP), **kwargs)


def test_cohort101_detection_against_truth():
    from alliancetrack.agreement.compare import compare_episodes

    ad = at.read_alliance(REF / "cohort101_sessions.csv", therapist="therapist")
    truth = pd.read_csv(REF / "cohort101_truth.csv")
    res = compare_episodes(detect_changepoint(ad), truth, tolerance=1, patients=ad)
    row = res.overall.iloc[0]
    assert row["n_patients"] == 120
    assert row["recall"] > 0.7 and row["precision"] > 0.6 and row["kappa"] > 0.6


@st.composite
def _segmented_patients(draw):
    patients = []
    for _ in range(draw(st.integers(1, 6))):
        n = draw(st.integers(2, 14))
        values = draw(st.lists(st.integers(12, 60), min_size=n, max_size=n))
        cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=n - 1)))
        gaps = draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
        shift = draw(st.sampled_from([1 / 12, 0.25, 0.5, 1.0]))
        patients.append((np.array(values) / 12, np.cumsum(gaps), cuts + [n], shift))
    return patients


@settings(max_examples=400, deadline=None)
@given(_segmented_patients(), st.sampled_from([0.25, 0.5, 1.0]), st.booleans())
def test_batch_episode_mapping_equals_the_per_patient_mapping(patients, fraction, up):
    from alliancetrack.detection.changepoint import _episodes_batch

    expected = []  # the plain per-patient oracle, sharing no code with the production mapping
    for i, (values, sessions, bkps, shift) in enumerate(patients):
        for ep in segment_episodes(values, sessions, bkps, min_shift=shift,
                                         repair_fraction=fraction, higher_is_better=up):
            expected.append({"row": i, **ep})
    lengths = np.array([len(p[0]) for p in patients])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    got = _episodes_batch(np.concatenate([p[0] for p in patients]),
                          np.concatenate([p[1] for p in patients]), starts, lengths,
                          [p[2] for p in patients], np.array([p[3] for p in patients]),
                          fraction, up)
    got = pd.DataFrame(got)
    want = pd.DataFrame(expected, columns=list(got.columns))
    assert len(got) == len(want)
    if len(want):
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want.astype(got.dtypes),
                                      check_exact=True)
