"""Sudden changes: reproduce the R package suddengains and test the variants.

Reference values come from suddengains' own test suite (tests/testthat/ in
github.com/milanwiedemann/suddengains) and from the published numbers for its
bundled data set ``sgdata``; the variants are checked against independent
computations (scipy, hand formulas).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import alliancetrack as at
from alliancetrack.cli import sudden as sudden_cmd
from alliancetrack.errors import AllianceDataError

SGDATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sgdata.csv"
BDI_S1_S12 = [f"bdi_s{i}" for i in range(1, 13)]
BDI_S0_S12 = [f"bdi_s{i}" for i in range(0, 13)]
NAN = np.nan


@pytest.fixture(scope="module")
def sgdata() -> pd.DataFrame:
    return pd.read_csv(SGDATA)


@pytest.fixture(scope="module")
def sg_result(sgdata):
    return at.sudden_changes(sgdata, patient="id", session_columns=BDI_S1_S12, cutoff=7)


def wide(rows, cols=("x_2n", "x_1n", "x_n", "x_n1", "x_n2", "x_n3")) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(cols), dtype="float64")
    df.insert(0, "id", range(1, len(rows) + 1))
    return df


def sudden_matrix(intervals: pd.DataFrame) -> list[list]:
    """Per patient the list of interval results, 1/0/None like suddengains' sg_* columns."""
    out = []
    for _, grp in intervals.groupby("patient", sort=False):
        out.append([None if pd.isna(v) else int(v) for v in grp["sudden"]])
    return out


# --------------------------------------------------------------------------- sgdata


def test_sgdata_published_numbers(sg_result):
    intervals, changes = sg_result
    desc = at.describe_sudden_changes(intervals, changes, select="first")
    per_change, per_person = desc.loc["per_change"], desc.loc["per_person"]
    # 24 sudden gains in 15 of 43 patients, mean magnitude 11.0 (SD 3.43), 4 reversed
    assert per_change["n_patients"] == 43
    assert per_change["n_changes"] == 24
    assert per_change["n_patients_with_change"] == 15
    assert per_change["n_reversed"] == 4
    assert round(per_change["magnitude_mean"], 2) == 11.0
    assert round(per_change["magnitude_sd"], 2) == 3.43
    # describe_sg(bysg): sg_multiple_pct 70.83, sg_reversal_pct 16.67
    assert round(per_change["pct_changes_in_multiple"], 2) == 70.83
    assert round(per_change["pct_reversed"], 2) == 16.67
    # per person (first gain): 3 of 15 reversed, 11.4 (3.98); describe_sg(byperson)
    assert per_person["n_changes"] == 15
    assert per_person["n_changes_total"] == 24
    assert per_person["n_reversed"] == 3
    assert round(per_person["pct_reversed"], 2) == 20
    assert round(per_person["magnitude_mean"], 2) == 11.4
    assert round(per_person["magnitude_sd"], 2) == 3.98
    assert round(per_person["pct_patients_with_change"], 2) == 34.88
    assert per_person["n_patients_multiple"] == 8
    assert round(per_person["pct_patients_multiple"], 2) == 18.6


def test_sgdata_every_patient_has_every_interval(sg_result, sgdata):
    intervals, _ = sg_result
    # 12 sessions -> intervals 2to3 ... 10to11 for each of the 43 patients
    assert len(intervals) == 43 * 9
    first = intervals[intervals["patient"] == 1.0]
    assert first["interval"].tolist() == [f"{i}to{i + 1}" for i in range(2, 11)]
    assert first["pre_session"].tolist() == list(range(2, 11))
    for col in ("crit1", "crit2", "crit3", "sudden"):
        assert intervals[col].dtype == "boolean"


# suddengains tests/testthat/test-create_bysg.R (data: the first 18 patients of sgdata)
BYSG_EXPECT = pd.DataFrame(
    [
        # id, session_n, freq, 2n, 1n, n, n1, n2, n3, magnitude, tx_change, proportion, rev value, rev
        (1, 3, 2, 35, 37, 34, 23, 24, 21, 11, 28, 0.39285714285714285, 28.5, 1),
        (1, 7, 2, 24, 21, 29, 17, 11, 11, 12, 28, 0.42857142857142855, 23, 0),
        (3, 8, 1, 37, NAN, 35, 26, 24, NAN, 9, 16, 0.5625, 30.5, 0),
        (4, 3, 1, 31, 30, 32, 22, 22, 20, 10, 3, 3.3333333333333335, 27, 1),
        (5, 3, 2, 39, 37, 36, 26, 26, 23, 10, 31, 0.3225806451612903, 31, 0),
        (5, 8, 2, 23, 21, 19, 6, 7, 8, 13, 31, 0.41935483870967744, 12.5, 0),
        (9, 3, 1, 35, 34, 32, 23, 24, 22, 9, 24, 0.375, 27.5, 0),
        (10, 2, 2, NAN, 35, 35, 25, 25, 17, 10, 27, 0.37037037037037035, 30, 0),
        (10, 4, 2, 35, 25, 25, 17, 17, 16, 8, 27, 0.2962962962962963, 21, 0),
        (12, 3, 1, 38, 38, 31, 23, 21, 22, 8, 13, 0.6153846153846154, 27, 1),
        (13, 3, 2, 34, 33, 36, 23, 25, 23, 13, 25, 0.52, 29.5, 0),
        (13, 8, 2, 23, 19, 18, 10, 9, 8, 8, 25, 0.32, 14, 0),
        (14, 2, 1, NAN, 39, 37, 23, NAN, 23, 14, 25, 0.56, 30, 0),
        (18, 3, 1, NAN, 38, 35, 24, NAN, 22, 11, NAN, NAN, 29.5, 0),
    ],
    columns=["patient", "pre_session", "n_changes", "x_n_minus2", "x_n_minus1", "pre_score",
             "post_score", "x_n_plus2", "x_n_plus3", "magnitude", "tx_change",
             "change_proportion", "reversal_value", "reversal"],
)


def test_create_bysg_fixture(sgdata):
    _, changes = at.sudden_changes(sgdata.head(18), patient="id", session_columns=BDI_S1_S12)
    got = changes[BYSG_EXPECT.columns].reset_index(drop=True)
    expect = BYSG_EXPECT.astype({"reversal": bool})
    pd.testing.assert_frame_equal(got, expect, check_dtype=False)
    assert (changes["post_session"] == changes["pre_session"] + 1).all()


# suddengains tests/testthat/test-create_byperson.R: ids with a gain and the selected one
BYPERSON_FIRST = {1: 3, 3: 8, 4: 3, 5: 3, 9: 3, 10: 2, 12: 3, 13: 3, 14: 2, 18: 3}
BYPERSON_LARGEST = {1: 7, 3: 8, 4: 3, 5: 8, 9: 3, 10: 2, 12: 3, 13: 3, 14: 2, 18: 3}


@pytest.mark.parametrize("method, expect", [("first", BYPERSON_FIRST),
                                            ("largest", BYPERSON_LARGEST)])
def test_create_byperson_fixture(sgdata, method, expect):
    _, changes = at.sudden_changes(sgdata.head(18), patient="id", session_columns=BDI_S1_S12)
    sel = at.select_changes(changes, method)
    assert dict(zip(sel["patient"].astype(int), sel["pre_session"], strict=True)) == expect


# --------------------------------------------------------------------------- identify_sg/sl


def test_identify_sg_fixture_1():
    # tests/testthat/test-identify_sg.R, "Identify sg works 1"
    df = wide([
        [28, 19, 23, 12, 13, NAN],
        [28, 19, 23, 11, 12, NAN],
        [28, 19, NAN, 12, 13, NAN],
        [28, 19, 23, 12, 13, NAN],
        [28, 19, 23, 12, 14, NAN],
        [28, 19, NAN, 12, 13, NAN],
        [28, 19, 23, 11, 12, NAN],
        [28, 25, 28, 11, 12, NAN],
        [28, 26, 28, 11, 12, NAN],
        [NAN, 26, 28, NAN, 12, 11],
    ])
    intervals, _ = at.sudden_changes(df, patient="id",
                                     session_columns=["x_2n", "x_1n", "x_n", "x_n1", "x_n2",
                                                      "x_n3"])
    assert sudden_matrix(intervals) == [
        [0, 0, None], [0, 1, None], [None, None, None], [0, 0, None], [0, 0, None],
        [None, None, None], [0, 1, None], [0, 1, None], [0, 1, None], [None, None, None],
    ]
    # 28,19,23,11,12: the adjusted critical value 3.182 (3 df) just passes
    row = intervals[(intervals["patient"] == 2) & (intervals["interval"] == "3to4")].iloc[0]
    assert row["crit3_df"] == 3
    assert round(row["crit3_critical_value"], 3) == 3.182


def test_identify_sg_fixture_2():
    # tests/testthat/test-identify_sg.R, "Identify sg works 2"
    df = wide([[35, 37, 23, 23, 24, 21], [35, 37, 34, 24, 24, 21],
               [35, 37, 34, 34, 24, 21], [35, 37, 34, 37, 37, 37]])
    intervals, _ = at.sudden_changes(df, patient="id", session_columns=list(df.columns[1:]))
    assert sudden_matrix(intervals) == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]]


def test_identify_sl_fixture():
    # tests/testthat/test-identify_sl.R (sg_crit1_cutoff = -7 there)
    df = wide([[10, 11, 12, 30, 28, 33], [10, 11, 12, 10, 28, 33],
               [10, 11, 30, 30, 28, 33], [35, 37, 34, 23, 24, 21]])
    intervals, _ = at.sudden_changes(df, direction="increase", cutoff=7, patient="id",
                                     session_columns=list(df.columns[1:]))
    assert sudden_matrix(intervals) == [[0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 0, 0]]


def test_count_intervals_fixture():
    # tests/testthat/test-count_intervals.R: 6 analysable and 4 untestable intervals
    # (its sg_var_list names bdi_s7 twice; dplyr keeps it once, so 8 columns)
    cols = ["bdi_s0", "bdi_s1", "bdi_s2", "bdi_s3", "bdi_s4", "bdi_s5", "bdi_s7", "bdi_s8"]
    df = pd.DataFrame([[1, 33, 35, 37, 34, 10, 10, 35, 35],
                       [2, 26, 26, NAN, 26, NAN, 27, 31, 30]], columns=["id", *cols])
    intervals, changes = at.sudden_changes(df, patient="id", session_columns=cols, cutoff=1,
                                           session_gaps="ignore")
    desc = at.describe_sudden_changes(intervals, changes)
    assert desc.loc["per_change", "n_intervals_testable"] == 6
    assert desc.loc["per_change", "n_intervals"] - 6 == 4


# --------------------------------------------------------------------------- criteria


def test_reliable_change_cutoff():
    # define_crit1_cutoff tests: sd 10.5, r .961 -> 5.747681; sgdata bdi_s0, r .931 -> 4.65703
    assert at.reliable_change_cutoff(10.5, 0.961) == pytest.approx(5.747681, abs=1e-6)
    sd0 = pd.read_csv(SGDATA)["bdi_s0"].std()
    assert sd0 == pytest.approx(6.396073, abs=1e-6)
    assert at.reliable_change_cutoff(sd0, 0.931) == pytest.approx(4.65703, abs=1e-5)
    # by hand: SEM = sd sqrt(1 - r), S_diff = sqrt(2 SEM^2), RC = 1.96 S_diff
    sem = 8 * (1 - 0.84) ** 0.5
    assert at.reliable_change_cutoff(8, 0.84) == pytest.approx(1.96 * (2 * sem**2) ** 0.5)
    assert at.reliable_change_cutoff(8, 1.0) == 0.0
    with pytest.raises(ValueError):
        at.reliable_change_cutoff(8, 1.2)


def test_criteria_by_hand_and_na_semantics():
    # pre 30, 31, 30 ; post 22, 23, 22: drop 8 = 26.7 % of 30, crit3 clear
    df = pd.DataFrame({"patient": 1, "session": range(1, 8),
                       "alliance": [31, 30, 31, 30, 22, 23, 22]})
    iv, ch = at.sudden_changes(df, cutoff=8)
    row = iv.set_index("pre_session").loc[4]
    assert row["change"] == -8
    assert bool(row["crit1"]) and bool(row["crit2"]) and bool(row["crit3"])
    pre, post = np.array([30.0, 31, 30]), np.array([22.0, 23, 22])  # sessions 2-4 and 5-7
    pooled = np.sqrt((2 * pre.var(ddof=1) + 2 * post.var(ddof=1)) / 4)
    assert row["crit3_statistic"] == pytest.approx((pre.mean() - post.mean()) / pooled)
    # >= for criteria 1 and 2: a cutoff of exactly 8 passes, 8.01 fails
    assert not at.sudden_changes(df, cutoff=8.01)[0].set_index("pre_session").loc[4, "sudden"]
    assert not at.sudden_changes(df, pct=8 / 30 + 1e-9)[0].set_index("pre_session").loc[
        4, "sudden"]
    assert len(ch) == 1 and ch["magnitude"].iloc[0] == 8
    # a missing adjacent score makes the interval NA even though crit1 would fail elsewhere
    df2 = df.assign(alliance=[31, 30, 31, 30, NAN, 23, 22])
    iv2, _ = at.sudden_changes(df2)
    assert iv2.set_index("pre_session").loc[4, ["crit1", "crit2", "sudden"]].isna().all()
    # criterion 3 untestable (one pre score) -> NA although criterion 1 fails
    df3 = pd.DataFrame({"patient": 1, "session": range(1, 7),
                        "alliance": [NAN, NAN, 20, 20, 21, 22]})
    row3 = at.sudden_changes(df3)[0].set_index("pre_session").loc[3]
    assert not row3["crit1"] and pd.isna(row3["crit3"]) and pd.isna(row3["sudden"])


def test_switched_off_criteria_are_na_and_ignored():
    df = pd.DataFrame({"patient": 1, "session": range(1, 7),
                       "alliance": [35, 37, 23, 23, 24, 21]})
    iv, _ = at.sudden_changes(df, cutoff=None, pct=None, crit3=True)
    assert iv["crit1"].isna().all() and iv["crit2"].isna().all()
    assert iv["sudden"].tolist() == iv["crit3"].tolist()
    iv, _ = at.sudden_changes(df, cutoff=7, pct=None, crit3=False)
    assert iv["sudden"].tolist() == iv["crit1"].tolist()
    with pytest.raises(ValueError, match="switched off"):
        at.sudden_changes(df, cutoff=None, pct=None, crit3=False)
    with pytest.raises(ValueError, match="cutoff"):
        at.sudden_changes(df, cutoff=-7)


def test_critical_values_adjusted_and_fixed():
    # df = 4, 3, 2 -> 2.776, 3.182, 4.303 (suddengains docs)
    df = pd.DataFrame({"patient": np.repeat([1, 2, 3], 6), "session": np.tile(range(1, 7), 3),
                       "alliance": [30, 31, 30, 20, 21, 20,
                                    NAN, 31, 30, 20, 21, 20,
                                    NAN, 31, 30, 20, 21, NAN]})
    iv, _ = at.sudden_changes(df, cutoff=5)
    at3 = iv[iv["pre_session"] == 3].set_index("patient")
    assert at3["crit3_df"].tolist() == [4, 3, 2]
    assert at3["crit3_critical_value"].round(3).tolist() == [2.776, 3.182, 4.303]
    iv_fixed, _ = at.sudden_changes(df, cutoff=5, crit3_adjust=False, critical_value=2.5)
    assert (iv_fixed["crit3_critical_value"].dropna() == 2.5).all()
    iv_01, _ = at.sudden_changes(df, cutoff=5, alpha=0.01)
    assert iv_01[iv_01["pre_session"] == 3]["crit3_critical_value"].iloc[0] == pytest.approx(
        stats.t.ppf(0.995, 4))


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")
def test_t_test_variant_matches_scipy():
    rng = np.random.default_rng(7)
    scores = rng.normal(20, 4, size=(30, 10)).round(1)
    scores[rng.random(scores.shape) < 0.15] = np.nan
    df = pd.DataFrame({"patient": np.repeat(np.arange(30), 10),
                       "session": np.tile(np.arange(1, 11), 30), "alliance": scores.ravel()})
    iv, _ = at.sudden_changes(df, cutoff=None, pct=None, crit3_method="t-test")
    checked = 0
    for row in iv.itertuples():
        s = scores[row.patient]
        i = row.pre_session - 1
        pre, post = s[max(0, i - 2): i + 1], s[i + 1: i + 4]
        pre, post = pre[~np.isnan(pre)], post[~np.isnan(post)]
        if len(pre) < 2 or len(post) < 2:
            assert pd.isna(row.crit3)
            continue
        res = stats.ttest_ind(pre, post, equal_var=True)
        dof = len(pre) + len(post) - 2
        assert row.crit3_statistic == pytest.approx(res.statistic, rel=1e-9)
        assert row.crit3_df == dof
        assert bool(row.crit3) == bool(res.statistic > stats.t.ppf(0.975, dof))
        checked += 1
    assert checked > 100
    # suddengains' statistic is the t statistic without the sqrt(1/n1 + 1/n2) factor
    iv_sg, _ = at.sudden_changes(df, cutoff=None, pct=None)
    ratio = iv_sg["crit3_statistic"] / iv["crit3_statistic"]
    factor = np.sqrt(1 / iv["n_pre"] + 1 / iv["n_post"])
    np.testing.assert_allclose(ratio.dropna(), factor[ratio.notna()], rtol=1e-9)
    # the t-test is stricter: every t-test crit3 is also a suddengains crit3
    both = iv["crit3"].notna()
    assert (~iv["crit3"][both] | iv_sg["crit3"][both]).all()


# --------------------------------------------------------------------------- directions


series = st.lists(st.one_of(st.none(), st.integers(0, 40)), min_size=4, max_size=10)


def _long(rows: list[list]) -> pd.DataFrame:
    recs = [(p, s + 1, np.nan if v is None else float(v))
            for p, r in enumerate(rows) for s, v in enumerate(r)]
    return pd.DataFrame(recs, columns=["patient", "session", "alliance"])


def _result_cols(iv):
    return iv[["crit1", "crit2", "crit3", "sudden"]].astype(object).where(iv.notna(), None)


@settings(max_examples=40, deadline=None)
@given(st.lists(series, min_size=1, max_size=4), st.sampled_from([0.0, 0.25, 0.5]),
       st.booleans())
def test_mirror_invariance(rows, pct, t_test):
    df = _long(rows)
    neg = df.assign(alliance=-df["alliance"])
    method = "t-test" if t_test else "suddengains"
    # suddengains' identify_sl is identify_sg on -x (its criterion 2 included)
    inc, inc_ch = at.sudden_changes(df, "increase", cutoff=5, pct=pct, crit3_method=method)
    dec, dec_ch = at.sudden_changes(neg, "decrease", cutoff=5, pct=pct, crit3_method=method)
    pd.testing.assert_frame_equal(_result_cols(inc), _result_cols(dec))
    np.testing.assert_allclose(inc_ch["magnitude"], dec_ch["magnitude"])
    assert inc_ch["reversal"].tolist() == dec_ch["reversal"].tolist()
    # the relative criterion 2 for rises: x[n+1] - x[n] >= pct x[n] is decrease on -x with -pct
    rel, _ = at.sudden_changes(df, "increase", cutoff=5, pct=pct, crit2_method="relative",
                               crit3_method=method)
    dec_neg, _ = at.sudden_changes(neg, "decrease", cutoff=5, pct=-pct, crit3_method=method)
    pd.testing.assert_frame_equal(_result_cols(rel), _result_cols(dec_neg))


@settings(max_examples=30, deadline=None)
@given(st.lists(series, min_size=1, max_size=4))
def test_scaling_invariance(rows):
    # all three criteria are invariant to x -> 2x with cutoff -> 2 cutoff (exact in floats)
    df = _long(rows)
    a, _ = at.sudden_changes(df, cutoff=5)
    b, _ = at.sudden_changes(df.assign(alliance=2 * df["alliance"]), cutoff=10)
    pd.testing.assert_frame_equal(_result_cols(a), _result_cols(b))


def test_increase_crit2_methods_by_hand():
    # 40 -> 48: rise 8 >= 7 but only 20 % of 40
    df = pd.DataFrame({"patient": 1, "session": range(1, 7),
                       "alliance": [40, 41, 40, 48, 49, 48]})
    sg, _ = at.sudden_changes(df, "increase")
    rel, _ = at.sudden_changes(df, "increase", crit2_method="relative")
    assert sg.set_index("pre_session").loc[3, "sudden"]
    assert not rel.set_index("pre_session").loc[3, "sudden"]
    assert not rel.set_index("pre_session").loc[3, "crit2"]


def test_increase_reversal():
    # rise 20 -> 30; reversal value 30 - 10/2 = 25; score 24 at n+3 goes back below it
    df = pd.DataFrame({"patient": 1, "session": range(1, 9),
                       "alliance": [20, 21, 20, 30, 31, 30, 24, 30]})
    _, ch = at.sudden_changes(df, "increase")
    assert ch["magnitude"].tolist() == [10.0]
    assert ch["reversal_value"].tolist() == [25.0]
    assert ch["reversal"].tolist() == [True]
    assert ch["reversal_session"].tolist() == [7.0]


# --------------------------------------------------------------------------- baseline


def test_first_session_baseline(sgdata):
    base, base_ch = at.sudden_changes(sgdata, patient="id", session_columns=BDI_S0_S12,
                                      first_session_baseline=True)
    # identify_sg_1to2 = TRUE: sg_1to2 ... sg_10to11, the baseline s0 enters criterion 3
    p1 = base[base["patient"] == 1.0]
    assert p1["interval"].tolist() == [f"{i}to{i + 1}" for i in range(1, 11)]
    assert p1["pre_session"].tolist() == list(range(1, 11))
    no_base, _ = at.sudden_changes(sgdata, patient="id", session_columns=BDI_S1_S12)
    # intervals from 2 to 3 on do not depend on the baseline flag
    merged = base.merge(no_base, on=["patient", "pre_session"], suffixes=("", "_nb"))
    later = merged[merged["pre_session"] >= 2]
    one_to_two = base[base["pre_session"] == 1]
    # sessions 2->3 on: crit1/crit2 identical; crit3 may differ as s0 is in the first windows
    assert later["crit1"].tolist() == later["crit1_nb"].tolist()
    assert (later[later["pre_session"] >= 4]["sudden"].tolist()
            == later[later["pre_session"] >= 4]["sudden_nb"].tolist())
    # the 1 -> 2 interval is testable when s0 and s1 are present
    testable = (one_to_two["n_pre"] >= 2) & (one_to_two["n_post"] >= 2)
    assert one_to_two.loc[testable, "crit3"].notna().all()
    assert len(base_ch) >= 24


def test_baseline_reversal_window():
    # drop 30 -> 20 (reversal value 25); 26 at n+2 reverses only with the baseline rule (n+2)
    df = pd.DataFrame({"patient": 1, "session": range(0, 8),
                       "alliance": [31, 30, 31, 20, 26, 20, 21, 20]})
    _, ch = at.sudden_changes(df, cutoff=7)
    _, ch_b = at.sudden_changes(df, cutoff=7, first_session_baseline=True)
    _, ch_r = at.sudden_changes(df, cutoff=7, reversal_start=2)
    assert ch["pre_session"].tolist() == ch_b["pre_session"].tolist() == [2]
    assert ch["reversal"].tolist() == [False]
    assert ch_b["reversal"].tolist() == [True] == ch_r["reversal"].tolist()
    assert ch_b["reversal_session"].tolist() == [4.0]


# --------------------------------------------------------------------------- inputs


def test_long_alliance_data_equals_wide(sgdata, sg_result):
    iv_w, ch_w = sg_result
    long = sgdata.melt(id_vars="id", value_vars=BDI_S1_S12, var_name="col", value_name="bdi")
    long["session"] = long["col"].str.extract(r"(\d+)$")[0].astype(int)
    ad = at.read_alliance(long, patient="id", session="session", score="bdi")
    iv_l, ch_l = at.sudden_changes(ad)
    pd.testing.assert_frame_equal(iv_l, iv_w)
    pd.testing.assert_frame_equal(ch_l, ch_w)
    # missing sessions as absent rows (not NaN rows) are missing scores too
    sparse = long.dropna(subset=["bdi"])
    iv_s, ch_s = at.sudden_changes(sparse, patient="id", session="session", score="bdi")
    pd.testing.assert_frame_equal(iv_s, iv_w)
    pd.testing.assert_frame_equal(ch_s, ch_w)
    # read_alliance's wide route gives the same
    ad_w = at.read_alliance(sgdata, patient="id", wide=True, session_columns=BDI_S1_S12)
    pd.testing.assert_frame_equal(at.sudden_changes(ad_w)[1], ch_w)


def test_session_gaps():
    # sessions 1, 2, 3, 5, 6, 7, 8: session 4 is missing for this patient
    df = pd.DataFrame({"patient": 1, "session": [1, 2, 3, 5, 6, 7, 8],
                       "alliance": [30, 31, 30, 20, 21, 20, 21]})
    iv, _ = at.sudden_changes(df)
    assert iv["pre_session"].tolist() == [2, 3, 4, 5, 6]
    assert iv.set_index("pre_session").loc[[3, 4], "sudden"].isna().all()
    iv_i, ch_i = at.sudden_changes(df, session_gaps="ignore")
    assert iv_i["pre_session"].tolist() == [2, 3, 5, 6]
    assert ch_i[["pre_session", "post_session"]].values.tolist() == [[3, 5]]
    frac = df.assign(session=df["session"] / 2)
    with pytest.raises(AllianceDataError, match="session_gaps"):
        at.sudden_changes(at.read_alliance(frac, ordinal_sessions=False))
    assert len(at.sudden_changes(at.read_alliance(frac, ordinal_sessions=False),
                                 session_gaps="ignore")[1]) == 1


def test_excluded_patients_and_raters():
    df = pd.DataFrame({"patient": [1] * 6 + [2] * 2, "session": [1, 2, 3, 4, 5, 6, 1, 2],
                       "alliance": [35, 37, 23, 23, 24, 21, 30, 20]})
    ad = at.read_alliance(df)
    assert ad.excluded["patient"].tolist() == [2]
    iv, _ = at.sudden_changes(ad)
    assert sorted(iv["patient"].unique()) == [1, 2]
    assert iv.loc[iv["patient"] == 2, "sudden"].isna().all()
    iv_x, _ = at.sudden_changes(ad, include_excluded=False)
    assert iv_x["patient"].unique().tolist() == [1]
    two = pd.concat([df.assign(rater="patient"), df.assign(rater="therapist")])
    with pytest.raises(AllianceDataError, match="select_rater"):
        at.sudden_changes(two)
    one = at.read_alliance(two, rater="rater").select_rater("patient")
    assert len(at.sudden_changes(one)[1]) == 1


def test_no_intervals_and_no_changes():
    short = pd.DataFrame({"patient": 1, "session": [1, 2, 3], "alliance": [4.0, 2.0, 4.0]})
    iv, ch = at.sudden_changes(short, cutoff=1)
    assert len(iv) == 0 and len(ch) == 0
    assert list(iv.columns) == list(at.INTERVAL_COLUMNS)
    assert list(ch.columns) == list(at.CHANGE_COLUMNS)
    flat = pd.DataFrame({"patient": 1, "session": range(1, 8), "alliance": 4.0})
    iv, ch = at.sudden_changes(flat, cutoff=1)
    desc = at.describe_sudden_changes(iv, ch)
    assert desc.loc["per_person", "n_changes"] == 0
    assert desc.loc["per_change", "n_patients"] == 1


# --------------------------------------------------------------------------- selection


def test_select_changes_ties_and_methods():
    ch = pd.DataFrame({"patient": ["a", "a", "a", "b", "b"], "pre_session": [2, 5, 8, 3, 6],
                       "magnitude": [9.0, 12.0, 12.0, 8.0, 8.0]})
    pick = {m: at.select_changes(ch, m)["pre_session"].tolist()
            for m in ("first", "last", "smallest", "largest")}
    assert pick == {"first": [2, 3], "last": [8, 6], "smallest": [2, 3], "largest": [5, 3]}
    with pytest.raises(ValueError):
        at.select_changes(ch, "median")


# --------------------------------------------------------------------------- CLI


def _parse(argv):
    parser = argparse.ArgumentParser(prog="alliancetrack")
    sudden_cmd.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_sudden(tmp_path, sgdata, capsys):
    long = sgdata.melt(id_vars="id", value_vars=BDI_S1_S12, var_name="col", value_name="bdi")
    long["week"] = long["col"].str.extract(r"(\d+)$")[0].astype(int)
    src = tmp_path / "bdi.csv"
    long.drop(columns="col").to_csv(src, index=False)
    out = tmp_path / "out"
    args = _parse(["sudden", str(src), "--patient", "id", "--session", "week", "--score", "bdi",
                   "--cutoff", "7", "--out", str(out)])
    assert args.func(args) == 0
    changes = pd.read_csv(out / "sudden_changes.csv")
    intervals = pd.read_csv(out / "sudden_intervals.csv")
    summary = pd.read_csv(out / "sudden_summary.csv", index_col=0)
    assert len(changes) == 24 and len(intervals) == 43 * 9
    assert summary.loc["per_person", "n_reversed"] == 3
    assert "24" in capsys.readouterr().out


def test_cli_sudden_wide_and_options(tmp_path, sgdata, capsys):
    src = tmp_path / "sg.csv"
    sgdata.to_csv(src, index=False)
    args = _parse(["sudden", str(src), "--patient", "id", "--wide", "--session-columns",
                   *BDI_S1_S12, "--direction", "increase", "--cutoff", "7",
                   "--crit3-method", "t-test"])
    assert args.func(args) == 0
    _, ch = at.sudden_changes(sgdata, "increase", patient="id", session_columns=BDI_S1_S12,
                              crit3_method="t-test")
    assert f"{len(ch)} sudden increase" in capsys.readouterr().out


def test_cli_bad_column_raises(tmp_path):
    src = tmp_path / "x.csv"
    pd.DataFrame({"id": [1], "s": [1], "a": [2.0]}).to_csv(src, index=False)
    args = _parse(["sudden", str(src), "--patient", "id", "--session", "s", "--score", "nope"])
    with pytest.raises(AllianceDataError):
        args.func(args)


# --------------------------------------------------------------------------- loop reference


def _reference_identify(values, cutoff, pct, crit3, alpha, adjust, critical, gains):
    """Plain loop over one patient's wide scores, following suddengains' identify_sg/sl."""
    x = [float(v) for v in values]
    ncol = len(x)
    out = []
    for col_j in range(3, ncol):  # 1-based post column, 3 .. ncol - 1
        a, b = x[col_j - 2], x[col_j - 1]  # pre (n) and post (n + 1)
        crits = []
        if cutoff is not None:
            crits.append(None if np.isnan(a) or np.isnan(b)
                         else (a - b >= cutoff if gains else a - b <= -cutoff))
        if pct is not None:
            crits.append(None if np.isnan(a) or np.isnan(b)
                         else (a - b >= pct * a if gains else a - b <= pct * a))
        if crit3:
            pre = [v for v in x[max(1, col_j - 3) - 1: col_j - 1] if not np.isnan(v)]
            post = [v for v in x[col_j - 1: min(ncol, col_j + 2)] if not np.isnan(v)]
            if len(pre) >= 2 and len(post) >= 2:
                dof = len(pre) + len(post) - 2
                cv = abs(stats.t.ppf(alpha / 2, dof)) if adjust else critical
                sp = np.sqrt(((len(pre) - 1) * np.var(pre, ddof=1)
                              + (len(post) - 1) * np.var(post, ddof=1)) / dof)
                d = np.mean(pre) - np.mean(post)
                crits.append(bool((d if gains else -d) > cv * sp))
            else:
                crits.append(None)
        out.append(None if any(c is None for c in crits) else int(all(crits)))
    return out


@pytest.mark.parametrize("cols", [BDI_S1_S12, BDI_S0_S12])
@pytest.mark.parametrize("direction", ["decrease", "increase"])
@pytest.mark.parametrize("cutoff, pct, crit3, alpha, adjust", [
    (7, 0.25, True, 0.05, True),
    (4.65703, 0.25, True, 0.01, True),
    (7, None, True, 0.05, False),
    (None, 0.5, False, 0.05, True),
    (5, 0.25, False, 0.05, True),
])
def test_matches_loop_reference(sgdata, cols, direction, cutoff, pct, crit3, alpha, adjust):
    intervals, _ = at.sudden_changes(sgdata, direction, cutoff=cutoff, pct=pct, crit3=crit3,
                                     alpha=alpha, crit3_adjust=adjust, critical_value=3.0,
                                     patient="id", session_columns=cols)
    expect = [_reference_identify(row, cutoff, pct, crit3, alpha, adjust, 3.0,
                                  direction == "decrease")
              for row in sgdata[cols].to_numpy()]
    assert sudden_matrix(intervals) == expect
