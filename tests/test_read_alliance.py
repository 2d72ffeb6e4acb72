"""Ingestion and validation: every bad input gets a clear AllianceDataError naming what and where."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import alliancetrack as at


def frame(**cols):
    base = {"patient": [1, 1, 1, 2, 2, 2], "session": [1, 2, 3, 1, 2, 3],
            "alliance": [4.0, 3.5, 4.2, 3.0, 3.1, 3.3]}
    base.update(cols)
    return pd.DataFrame(base)


def test_canonical_frame_sorted_with_missing_rows_kept():
    df = frame(alliance=[4.0, np.nan, 4.2, 3.0, 3.1, 3.3]).iloc[::-1]
    data = at.read_alliance(df, min_timepoints=2)
    assert data.frame.columns.tolist() == ["patient", "session", "alliance"]
    assert data.frame["patient"].tolist() == [1, 1, 1, 2, 2, 2]
    assert data.frame["session"].tolist() == [1, 2, 3, 1, 2, 3]
    assert np.isnan(data.frame["alliance"].iloc[1])
    assert data.patients.tolist() == [1, 2] and len(data.excluded) == 0


def test_renamed_columns_and_optional_columns():
    df = frame().rename(columns={"patient": "id", "session": "week", "alliance": "wai"})
    df["ther"] = ["T1"] * 3 + ["T2"] * 3
    data = at.read_alliance(df, patient="id", session="week", score="wai", therapist="ther",
                            scale="wai-sr")
    assert data.frame.columns.tolist() == ["patient", "session", "alliance", "therapist"]
    assert data.scale is at.SCALES["wai-sr"]


def test_missing_column_lists_what_is_there():
    with pytest.raises(at.AllianceDataError) as err:
        at.read_alliance(frame(), score="wai")
    msg = str(err.value)
    assert "'wai'" in msg and "'alliance'" in msg and "score=" in msg


def test_wide_hint_when_columns_look_wide():
    wide = pd.DataFrame({"patient": [1], "wai_s1": [4.0], "wai_s2": [4.0]})
    with pytest.raises(at.AllianceDataError, match="wide=True"):
        at.read_alliance(wide)


def test_non_numeric_scores_name_rows_and_values():
    df = frame(alliance=["4", "3,5", "4.2", "n/a", "3.1", " "])
    with pytest.raises(at.AllianceDataError) as err:
        at.read_alliance(df)
    msg = str(err.value)
    assert "2 non-numeric" in msg and "row 1: '3,5'" in msg and "row 3: 'n/a'" in msg


def test_blank_strings_are_missing_ratings():
    df = frame(alliance=["4", "", "4.2", "3", "3.1", " "])
    data = at.read_alliance(df, min_timepoints=2)
    assert data.frame["alliance"].isna().sum() == 2


def test_duplicates_are_listed():
    df = frame(session=[1, 2, 2, 1, 1, 3])
    with pytest.raises(at.AllianceDataError) as err:
        at.read_alliance(df)
    msg = str(err.value)
    assert "2 duplicated patient/session" in msg
    assert "(patient=1, session=2)" in msg and "(patient=2, session=1)" in msg
    assert "rater=" in msg


def test_out_of_range_scores_name_rows():
    df = frame(alliance=[4.0, 5.5, 4.2, 0.5, 3.1, 3.3])
    with pytest.raises(at.AllianceDataError) as err:
        at.read_alliance(df, scale="wai-sr")
    msg = str(err.value)
    assert "outside the wai-sr range 1-5" in msg and "row 1: 5.5" in msg and "row 3: 0.5" in msg
    # the same data are fine on the 0-40 SRS
    assert len(at.read_alliance(df, scale="srs").frame) == 6


@pytest.mark.parametrize("sessions, word", [
    ([1, 2, -3, 1, 2, 3], "-3"),
    ([1, 2, 2.5, 1, 2, 3], "2.5"),
])
def test_session_numbers_must_be_ordinal(sessions, word):
    with pytest.raises(at.AllianceDataError) as err:
        at.read_alliance(frame(session=sessions))
    assert f"row 2: {word}" in str(err.value)
    data = at.read_alliance(frame(session=[0.5, 1.5, 2.5, 1, 2, 3]), ordinal_sessions=False)
    assert data.frame["session"].tolist() == [0.5, 1.5, 2.5, 1, 2, 3]


def test_missing_patient_or_session_named():
    with pytest.raises(at.AllianceDataError, match="row 4"):
        at.read_alliance(frame(patient=[1, 1, 1, 2, None, 2]))
    with pytest.raises(at.AllianceDataError, match="session number"):
        at.read_alliance(frame(session=[1, 2, None, 1, 2, 3]))
    with pytest.raises(at.AllianceDataError, match="non-numeric"):
        at.read_alliance(frame(session=["1", "2", "x", "1", "2", "3"]))


def test_empty_input():
    with pytest.raises(at.AllianceDataError, match="no rows"):
        at.read_alliance(frame().iloc[0:0])


def test_infinite_and_boolean_scores_rejected():
    with pytest.raises(at.AllianceDataError, match="infinite"):
        at.read_alliance(frame(alliance=[4.0, np.inf, 4.2, 3.0, 3.1, 3.3]))
    with pytest.raises(at.AllianceDataError, match="true/false"):
        at.read_alliance(frame(alliance=[True, False, True, True, False, True]))


def test_too_few_timepoints_excluded_not_dropped():
    df = frame(alliance=[4.0, np.nan, 4.2, np.nan, np.nan, np.nan])
    data = at.read_alliance(df)
    assert data.excluded["patient"].tolist() == [1, 2]
    assert data.excluded["reason"].tolist() == ["fewer than 3 rated sessions (2 rated)",
                                                "no rated sessions"]
    assert len(data.frame) == 6  # rows stay
    ep = at.detect_episodes(data)
    assert len(ep) == 0
    pred = at.episode_predictors(data, ep)
    assert pred["patient"].tolist() == [1, 2]
    assert pred["status"].tolist() == data.excluded["reason"].tolist()
    assert pred["n_ruptures"].isna().all() and pred["n_sessions"].tolist() == [2, 0]


def test_wide_input_melts_by_trailing_number():
    wide = pd.DataFrame({"id": ["a", "b"], "ther": ["T1", "T1"], "wai_s1": [4.0, 3.0],
                         "wai_s2": [3.0, np.nan], "wai_s3": [4.5, 3.5]})
    data = at.read_alliance(wide, patient="id", therapist="ther", wide=True)
    f = data.frame
    assert f["patient"].tolist() == ["a"] * 3 + ["b"] * 3
    assert f["session"].tolist() == [1, 2, 3] * 2
    assert f["alliance"].iloc[:3].tolist() == [4.0, 3.0, 4.5]
    assert np.isnan(f["alliance"].iloc[4]) and f["therapist"].unique().tolist() == ["T1"]
    assert data.excluded["patient"].tolist() == ["b"]


def test_wide_with_several_questionnaires_needs_session_columns():
    sg = pd.read_csv(pytest.shared / "data" / "sgdata.csv")
    with pytest.raises(at.AllianceDataError, match="session_columns"):
        at.read_alliance(sg, patient="id", wide=True)
    cols = [f"bdi_s{i}" for i in range(1, 13)]
    data = at.read_alliance(sg, patient="id", wide=True, session_columns=cols)
    assert len(data.patients) == 43 and len(data.frame) == 43 * 12
    assert data.frame.loc[data.frame["patient"] == 1, "alliance"].tolist() == \
        sg.loc[0, cols].tolist()


def test_wide_duplicate_patients_rejected():
    wide = pd.DataFrame({"patient": [1, 1], "s1": [4.0, 3.0], "s2": [4.0, 3.0]})
    with pytest.raises(at.AllianceDataError, match="one row per patient"):
        at.read_alliance(wide, wide=True)


def test_raters_keep_pairs_apart():
    df = pd.concat([frame().assign(rater="patient"), frame().assign(rater="therapist")])
    data = at.read_alliance(df, rater="rater")
    assert data.raters == ["patient", "therapist"] and len(data.frame) == 12
    assert data.select_rater("patient").frame["alliance"].tolist() == frame()["alliance"].tolist()
    with pytest.raises(at.AllianceDataError, match="Unknown rater"):
        data.select_rater("observer")


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".xlsx", ".sav", ".dta"])
def test_file_formats_round_trip(tmp_path, suffix):
    df = frame(alliance=[4.0, np.nan, 4.2, 3.0, 3.1, 3.3])
    path = tmp_path / f"data{suffix}"
    if suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix == ".tsv":
        df.to_csv(path, sep="\t", index=False)
    elif suffix == ".parquet":
        df.to_parquet(path)
    elif suffix == ".xlsx":
        df.to_excel(path, index=False)
    elif suffix == ".sav":
        import pyreadstat

        pyreadstat.write_sav(df, str(path))
    else:
        df.to_stata(path, write_index=False)
    data = at.read_alliance(path, min_timepoints=2)
    np.testing.assert_allclose(data.frame["alliance"], df["alliance"])
    assert data.frame["session"].tolist() == df["session"].tolist()


def test_file_errors_name_lines(tmp_path):
    path = tmp_path / "bad.csv"
    frame(alliance=[4, 4, 4, "oops", 3, 3]).to_csv(path, index=False)
    with pytest.raises(at.AllianceDataError, match="line 5: 'oops'"):
        at.read_alliance(path)
    with pytest.raises(at.AllianceDataError, match="File not found"):
        at.read_alliance(tmp_path / "nope.csv")
    with pytest.raises(at.AllianceDataError, match="unknown suffix"):
        at.read_alliance(tmp_path / "bad.json")


def test_scale_registry_and_custom_scale():
    for name, (low, high) in {"wai-sr": (1, 5), "wai-s": (1, 7), "srs": (0, 40),
                              "arm-12": (1, 7), "calpas": (1, 7), "haq-ii": (1, 6)}.items():
        s = at.SCALES[name]
        assert (s.low, s.high) == (low, high) and 0 < s.reliability < 1 and s.citation
    with pytest.raises(ValueError, match="Unknown scale"):
        at.read_alliance(frame(), scale="wai")
    with pytest.raises(ValueError, match="reliability"):
        at.Scale("x", 1, 5, reliability=1.2)


def test_as_alliance_data_checks_the_range_when_it_swaps_the_scale():
    from alliancetrack.reading.alliance import as_alliance_data

    data = at.read_alliance(pd.DataFrame({"patient": [1, 1, 2], "session": [1, 2, 1],
                                          "alliance": [4.0, 6.5, 3.0]}))
    assert as_alliance_data(data, scale="srs").scale.name == "srs"  # SRS: 0-40
    with pytest.raises(at.AllianceDataError, match=r"wai-sr range 1-5: patient 1 session 2: 6.5"):
        as_alliance_data(data, scale="wai-sr")
