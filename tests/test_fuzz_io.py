"""Fuzz: random messy tables through read_alliance and the command line.

Every table (wrong types, missing-value codes, duplicates, dates, huge numbers, empty strings,
unicode ids) gives either a clear AllianceDataError / ValueError or an analysis whose values are
exactly the input's -- never a traceback from deep inside, never a silently changed value.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alliancetrack import AllianceDataError, read_alliance
from alliancetrack.cli import main

IDS = st.one_of(st.integers(0, 30), st.sampled_from(["001", "01", "1", "007", "ä", "患者", "",
                                                     " ", "p-1"]),
                st.text(min_size=1, max_size=4), st.none())
SESSIONS = st.one_of(st.integers(0, 40), st.floats(allow_nan=True, allow_infinity=True),
                     st.sampled_from([1e19, -1, 2.5, "2024-01-05", "2024-02-30", "x", "",
                                      "2024-01-05T10:00"]), st.none())
SCORES = st.one_of(st.floats(1, 5), st.sampled_from([-99, 999, -9, "", "NA", "n/a", "3,5",
                                                     float("inf"), 1e300]),
                   st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=3),
                   st.none())
MESSY = st.lists(st.tuples(IDS, SESSIONS, SCORES), min_size=1, max_size=25)
# mostly usable tables, so that many examples get through to a full analysis
CLEANISH = st.lists(st.tuples(st.sampled_from(["001", "01", "7", "ä", "患者"]),
                              st.one_of(st.integers(1, 12), st.sampled_from(["2024-01-05",
                                                                             "2024-03-01"])),
                              st.one_of(st.floats(1, 5), st.sampled_from([-99, 999, None]))),
                    min_size=1, max_size=25)
ROWS = st.one_of(MESSY, CLEANISH)


def _table(rows):
    return pd.DataFrame(rows, columns=["patient", "session", "alliance"], dtype=object)


def _as_number(v):
    if v is None:
        return math.nan
    if isinstance(v, str):
        v = v.strip()
        if v == "":
            return math.nan
    return float(v)


def _check_result(data, df):
    """A successful read keeps every row and every score exactly."""
    f = data.frame
    assert len(f) == len(df)
    got = sorted(x for x in f["alliance"].tolist() if not math.isnan(x))
    want = sorted(x for x in (_as_number(v) for v in df["alliance"]) if not math.isnan(x))
    assert got == pytest.approx(want, rel=0, abs=0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ROWS)
def test_read_alliance_dataframe_never_crashes_or_changes_values(rows):
    df = _table(rows)
    try:
        data = read_alliance(df, min_timepoints=1)
    except AllianceDataError as err:
        assert str(err).strip()
        return
    _check_result(data, df)
    assert set(map(str, data.patients)) == set(map(str, df["patient"]))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ROWS)
def test_read_alliance_from_csv_keeps_ids_and_values(tmp_path_factory, rows):
    df = _table(rows)
    path = tmp_path_factory.mktemp("fuzz") / "r.csv"
    df.to_csv(path, index=False)
    try:
        data = read_alliance(path, min_timepoints=1)
    except AllianceDataError as err:
        assert str(err).strip()
        return
    back = pd.read_csv(path, dtype=str, keep_default_na=False)
    # scores as a CSV reader sees them: "", "NA", "n/a", ... are missing ratings
    scores = pd.read_csv(path, dtype=str)["alliance"].astype(object)
    _check_result(data, back.assign(alliance=scores.where(scores.notna(), None)))
    # identifiers: the text in the file, or the same whole numbers
    file_ids = {s.strip() for s in back["patient"]}
    assert {str(p) for p in data.patients} == file_ids


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ROWS)
def test_cli_gives_a_result_or_one_line_error(tmp_path_factory, capsys, rows):
    d = tmp_path_factory.mktemp("cli")
    path = d / "r.csv"
    _table(rows).to_csv(path, index=False)
    code = main(["detect", str(path), "--min-timepoints", "1", "--out", str(d / "ep.csv")])
    err = capsys.readouterr().err
    assert code in (0, 2)
    if code == 2:
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert err.startswith("alliancetrack: error: ")
    else:
        assert (d / "ep.csv").exists()
