"""Real-world input: missing-value codes, identifiers, dates, session bounds, file formats.

Each test pins one case of issue 16 (it fails on the code before the fix).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import alliancetrack as at
from alliancetrack.errors import AllianceDataError


def _long(scores, patients=(1, 2), sessions=None):
    rows = []
    for p in patients:
        for i, s in enumerate(scores):
            rows.append({"patient": p, "session": (sessions or range(1, len(scores) + 1))[i],
                         "alliance": s})
    return pd.DataFrame(rows)


SCORES = [5.0, 5.5, 6.0, -99, 5.0, 999, 6.0, 5.5]


# --------------------------------------------------------------------------- missing-value codes

def test_codes_without_scale_are_an_error_naming_them_and_the_option():
    with pytest.raises(AllianceDataError) as err:
        at.read_alliance(_long(SCORES))
    msg = str(err.value)
    assert "-99" in msg and "999" in msg and "missing_values=[-99, 999]" in msg
    assert "--missing -99 999" in msg


def test_missing_values_become_missing_ratings():
    d = at.read_alliance(_long(SCORES), missing_values=[-99, 999])
    assert d.frame["alliance"].isna().sum() == 4
    real = [s for s in SCORES if s not in (-99, 999)]
    assert d.frame["alliance"].mean() == pytest.approx(np.mean(real))
    # episodes never see the codes
    ep = at.detect_episodes(d, rule="strauss-1sd")
    assert (ep["pre_level"].dropna() <= 6.0).all() if len(ep) else True


def test_missing_values_as_text_in_a_csv(tmp_path):
    p = tmp_path / "r.csv"
    _long(SCORES).astype({"alliance": object}).replace({-99: "NA", 999: "999"}).to_csv(
        p, index=False)
    d = at.read_alliance(p, missing_values=["NA", 999])
    assert d.frame["alliance"].isna().sum() == 4


def test_empty_missing_values_keeps_real_extreme_scores():
    d = at.read_alliance(_long([1.0, 2, 3, 500]), missing_values=[])
    assert d.frame["alliance"].max() == 500


def test_scale_range_error_hints_at_missing_codes():
    with pytest.raises(AllianceDataError, match=r"missing-value codes, pass missing_values=\[-99, 999\]"):
        at.read_alliance(_long([4.0, 3.0, -99, 999]), scale="wai-sr")


def test_real_dips_are_not_taken_for_codes():
    d = at.read_alliance(_long([4.0, 3.9, 4.0, 3.9, 2.1, 2.0, 4.0]))
    assert d.frame["alliance"].min() == 2.0


def test_psq_and_3rs_missing_values():
    psq = pd.DataFrame({"patient": [1, 1, 1], "session": [1, 2, 3], "tension": [1, 4, -9],
                        "resolved": [3, 4, 99]})
    with pytest.raises(AllianceDataError, match="missing_values="):
        at.read_psq(psq, tension_format="rating")
    got = at.read_psq(psq, tension_format="rating", missing_values=[-9, 99])
    assert got.frame["tension"].isna().tolist() == [False, False, True]
    assert got.frame["resolved"].isna().tolist() == [False, False, True]
    codes = pd.DataFrame({"patient": [1, 1], "session": [1, 2], "segment": [1, 1],
                          "type": ["W", None], "significance": [3, -9]})
    obs = at.read_3rs(codes, missing_values=[-9])
    assert obs.frame["significance"].isna().tolist() == [False, True]


# --------------------------------------------------------------------------- identifiers

def test_identifiers_keep_their_text(tmp_path):
    p = tmp_path / "ids.csv"
    p.write_text("patient,session,alliance\n" + "".join(
        f"{pid},{s},{4 + s / 10}\n" for pid in ("001", "01", "007") for s in (1, 2, 3)))
    d = at.read_alliance(p)
    assert d.patients.tolist() == ["001", "007", "01"]
    assert set(d.frame["patient"]) == {"001", "01", "007"}


def test_plain_number_identifiers_stay_numbers(tmp_path):
    p = tmp_path / "ids.csv"
    _long([4.0, 4.5, 5.0], patients=(1, 2, 10)).to_csv(p, index=False)
    assert at.read_alliance(p).patients.tolist() == [1, 2, 10]


# --------------------------------------------------------------------------- dates

@pytest.mark.parametrize("kind", ["iso", "datetime", "date"])
def test_dates_order_and_number_sessions(kind):
    dates = pd.to_datetime(["2024-03-01", "2024-01-15", "2024-02-01", "2024-01-20"])
    df = pd.DataFrame({"patient": ["a", "a", "a", "b"], "alliance": [3.0, 1.0, 2.0, 4.0]})
    df["session"] = {"iso": dates.strftime("%Y-%m-%d"), "datetime": dates,
                     "date": list(dates.date)}[kind]
    d = at.read_alliance(df, min_timepoints=1)
    f = d.frame
    assert f["session"].tolist() == [1, 2, 3, 1]
    assert f["alliance"].tolist() == [1.0, 2.0, 3.0, 4.0]        # ordered by date
    assert f["date"].dt.strftime("%Y-%m-%d").tolist() == [
        "2024-01-15", "2024-02-01", "2024-03-01", "2024-01-20"]


def test_episode_tables_carry_the_date():
    days = pd.date_range("2024-01-01", periods=8, freq="7D")
    df = pd.DataFrame({"patient": 1, "session": days.strftime("%Y-%m-%d"),
                       "alliance": [4, 4.1, 4, 2, 2.1, 4, 4.2, 4.1]})
    ep = at.detect_episodes(at.read_alliance(df, scale="wai-sr"), rule="strauss-1sd")
    assert len(ep) == 1
    assert ep["date"].iloc[0] == days[int(ep["rupture_session"].iloc[0]) - 1]


def test_duplicate_dates_are_an_error():
    df = pd.DataFrame({"patient": 1, "session": ["2024-01-01", "2024-01-01", "2024-01-08"],
                       "alliance": [3.0, 4.0, 5.0]})
    with pytest.raises(AllianceDataError, match="duplicated"):
        at.read_alliance(df)


# --------------------------------------------------------------------------- session bounds

def test_huge_session_numbers_are_refused_before_the_cast():
    df = _long([4.0, 4.5, 5.0], patients=(1,), sessions=[1, 2, 1e19])
    with pytest.raises(AllianceDataError, match="too large"):
        at.read_alliance(df)


# --------------------------------------------------------------------------- file formats

def test_semicolon_csv_and_comma_txt_are_sniffed(tmp_path):
    df = _long([4.0, 4.5, 5.0])
    (tmp_path / "semi.csv").write_text(df.to_csv(index=False, sep=";"))
    (tmp_path / "comma.txt").write_text(df.to_csv(index=False))
    for name in ("semi.csv", "comma.txt"):
        d = at.read_alliance(tmp_path / name)
        assert d.frame["alliance"].tolist() == df["alliance"].tolist()


def test_latin1_csv_hints_at_the_encoding(tmp_path):
    p = tmp_path / "l1.csv"
    p.write_bytes("patient,session,alliance\nJosé,1,4\nJosé,2,5\nJosé,3,4\n".encode("latin-1"))
    with pytest.raises(AllianceDataError, match="encoding='latin-1'"):
        at.read_alliance(p)
    assert at.read_alliance(p, encoding="latin-1").patients.tolist() == ["José"]


def test_single_column_parse_hints_at_the_delimiter(tmp_path):
    p = tmp_path / "odd.csv"
    p.write_text("patient;session;alliance\n")
    with pytest.raises(AllianceDataError, match=r"sep=';'"):
        at.read_alliance(p, sep=",")


def test_xls_reader_message(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake(name, *a, **k):
        if name == "xlrd":
            raise ImportError("no xlrd")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    p = tmp_path / "old.xls"
    p.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504)
    with pytest.raises(AllianceDataError) as err:
        at.read_alliance(p)
    msg = str(err.value)
    assert "xlrd" in msg and "pip install 'alliancetrack[excel]'" in msg


# --------------------------------------------------------------------------- API boundary

@pytest.mark.parametrize("source", [None, [1, 2], {"patient": [1]}, np.zeros((2, 3))])
def test_read_alliance_rejects_non_tables_clearly(source):
    with pytest.raises(AllianceDataError, match="needs a pandas DataFrame or the path"):
        at.read_alliance(source)


def test_duplicate_column_names():
    df = pd.DataFrame([[1, 1, 4.0, 3.0]], columns=["patient", "session", "alliance", "alliance"])
    with pytest.raises(AllianceDataError, match="more than once"):
        at.read_alliance(df)


def test_wide_errors_name_the_users_column_and_patient():
    df = pd.DataFrame({"id": ["p1", "p2"], "WAI_T1": [4.0, 3.0], "WAI_T2": [4.0, 3.5],
                       "WAI_T3": [4.0, "n/a"]})
    with pytest.raises(AllianceDataError) as err:
        at.read_alliance(df, patient="id", wide=True)
    msg = str(err.value)
    assert "WAI_T3" in msg and "'p2'" in msg and "__score" not in msg
    df["WAI_T3"] = [4.0, 9.0]
    with pytest.raises(AllianceDataError, match=r"patient 'p2', column 'WAI_T3': 9"):
        at.read_alliance(df, patient="id", wide=True, scale="wai-sr")


# --------------------------------------------------------------------------- downstream APIs

def _alliance_cohort(n=12, seed=3):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n):
        x = np.clip(4 + rng.normal(0, 0.3, 10), 1, 5)
        if p % 3 == 0:
            x[5] = 1.5
        for s, v in enumerate(x, 1):
            rows.append({"patient": p, "session": s, "alliance": round(float(v), 2),
                         "therapist": f"t{p % 4}"})
    return pd.DataFrame(rows)


def test_sudden_changes_on_an_alliance_scale_uses_the_rci_and_says_so():
    df = _alliance_cohort()
    data = at.read_alliance(df, therapist="therapist", scale="wai-sr")
    first = df.loc[df["session"] == 1, "alliance"].std(ddof=1)
    expected = at.reliable_change_cutoff(first, 0.91)
    with pytest.warns(UserWarning, match=r"reliable-change cutoff of wai-sr"):
        iv, ch = at.sudden_changes(data, crit3=False, pct=None)
    drops = (iv.set_index(["patient", "pre_session"])["crit1"]).astype(bool)
    x = df.set_index(["patient", "session"])["alliance"]
    for (p, s), flag in drops.items():
        assert flag == (x[(p, s)] - x[(p, s + 1)] >= expected)
    assert len(ch) > 0


def test_sudden_changes_without_scale_says_it_uses_the_bdi_cutoff():
    with pytest.warns(UserWarning, match=r"cutoff=7, the BDI value.*can never be met"):
        at.sudden_changes(_alliance_cohort())
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # an explicit cutoff: nothing to announce
        iv, _ = at.sudden_changes(_alliance_cohort(), cutoff=1.0)
    assert len(iv) > 0


def test_predictors_keep_the_therapist_and_outcome_model_uses_it():
    df = _alliance_cohort(24)
    data = at.read_alliance(df, therapist="therapist", scale="wai-sr")
    pred = at.episode_predictors(data, at.detect_episodes(data, rule="strauss-1sd"))
    th = df.drop_duplicates("patient").set_index("patient")["therapist"]
    assert pred["therapist"].tolist() == th.loc[pred["patient"]].tolist()
    rng = np.random.default_rng(0)
    out = pd.DataFrame({"patient": pred["patient"], "bdi_pre": rng.normal(25, 5, len(pred))})
    out["bdi_post"] = out["bdi_pre"] * 0.7 + rng.normal(0, 3, len(pred))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = at.outcome_model(pred, out)
    assert fit.model == "mixed"


def test_outcome_model_with_a_text_outcome_names_the_column():
    pred = pd.DataFrame({"patient": range(6), "status": "analysed", "n_repaired": [0, 1] * 3,
                         "n_unrepaired": [1, 0, 0, 1, 0, 0]})
    out = pd.DataFrame({"patient": range(6), "bdi_pre": [20.0] * 6,
                        "bdi_post": ["improved", 10, 12, 9, 11, 13]})
    with pytest.raises(AllianceDataError, match=r"'bdi_post' must hold numbers.*patient 0: 'improved'"):
        at.outcome_model(pred, out, groups=None)


def test_plot_trajectories_with_no_patients_is_a_clear_error():
    data = at.read_alliance(_alliance_cohort(), scale="wai-sr")
    with pytest.raises(ValueError, match="patients=\\[\\] selects nobody"):
        at.plot_trajectories(data, patients=[])
