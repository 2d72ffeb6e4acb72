"""compare_episodes: kappa, matching and precision/recall on hand-made cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import alliancetrack as at
from alliancetrack.agreement.compare import cohen_kappa, compare_episodes

REF = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def ep(rows):
    return pd.DataFrame(rows, columns=["patient", "rupture_session", "repaired"])


def test_cohen_kappa_by_hand():
    # 2x2 table: both yes 2, a only 1, b only 0, both no 3 -> po = 5/6
    a = [1, 1, 1, 0, 0, 0]
    b = [1, 1, 0, 0, 0, 0]
    # pe = (3/6)(2/6) + (3/6)(4/6) = 1/6 + 2/6 = 1/2 -> kappa = (5/6 - 1/2) / (1/2) = 2/3
    assert cohen_kappa(a, b) == pytest.approx(2 / 3)
    assert cohen_kappa([1, 0], [0, 1]) == pytest.approx(-1.0)
    assert np.isnan(cohen_kappa([1, 1], [1, 1]))  # one category only: undefined
    with pytest.raises(at.AllianceDataError):
        cohen_kappa([1], [1, 0])


def test_patients_without_episodes_change_kappa():
    a = ep([(1, 4, True), (2, 6, False), (3, 5, True)])
    b = ep([(1, 5, True), (2, 9, False), (4, 3, True)])
    # union of patients 1-4: has_a = 1 1 1 0, has_b = 1 1 0 1
    # po = 2/4; pe = (3/4)(3/4) + (1/4)(1/4) = 10/16 -> kappa = (8/16 - 10/16) / (6/16) = -1/3
    res = compare_episodes(a, b)
    assert res.overall.loc[0, "n_patients"] == 4
    assert res.overall.loc[0, "kappa"] == pytest.approx(-1 / 3)
    # adding patients 5-8 without episodes anywhere: has_a = 11100000, has_b = 11010000
    # po = 6/8; pe = (3/8)^2 + (5/8)^2 = 34/64 -> kappa = (48/64 - 34/64) / (30/64) = 7/15
    res = compare_episodes(a, b, patients=range(1, 9))
    assert res.overall.loc[0, "kappa"] == pytest.approx(7 / 15)
    assert res.overall.loc[0, "patient_agreement"] == pytest.approx(6 / 8)


def test_session_matching_within_tolerance_one_to_one():
    a = ep([(1, 4, True), (1, 5, False), (1, 12, True), (2, 3, True)])
    b = ep([(1, 5, True), (1, 11, False), (2, 8, True)])
    res = compare_episodes(a, b, tolerance=1)
    m = res.matches
    # patient 1: 4 and 5 both within 1 of 5 but only one may match it; 12 matches 11
    assert len(m) == 2 and sorted(m["rupture_session_b"]) == [5, 11]
    assert m.loc[m["rupture_session_b"] == 5, "rupture_session_a"].item() == 5  # closest
    o = res.overall.iloc[0]
    assert (o["n_episodes_a"], o["n_episodes_b"], o["n_matched"]) == (4, 3, 2)
    assert o["precision"] == pytest.approx(2 / 4)
    assert o["recall"] == pytest.approx(2 / 3)
    assert o["f1"] == pytest.approx(2 * 2 / (4 + 3))
    # repaired status of matched pairs: (False, True) and (True, False): both disagree
    assert o["repaired_agreement"] == 0.0
    per = res.per_patient.set_index("patient")
    assert per.loc[1, "precision"] == pytest.approx(2 / 3) and per.loc[1, "recall"] == 1.0
    assert per.loc[2, "n_matched"] == 0 and per.loc[2, "recall"] == 0.0
    # tolerance 0: only the exact 5-5 match
    assert compare_episodes(a, b, tolerance=0).overall.loc[0, "n_matched"] == 1
    # tolerance 5 reaches patient 2 as well
    assert compare_episodes(a, b, tolerance=5).overall.loc[0, "n_matched"] == 3


def test_maximum_matching_not_greedy():
    # greedy nearest-first would pair a=5 with b=5 and leave a=4/b=6 ... both still fine;
    # here greedy on a in order (4->5) would block 5->? : a = 4, 6 ; b = 5, 7
    a = ep([(1, 4, True), (1, 6, True)])
    b = ep([(1, 5, True), (1, 7, True)])
    assert compare_episodes(a, b, tolerance=1).overall.loc[0, "n_matched"] == 2


def test_truth_table_and_allianceData_patients():
    ad = at.read_alliance(REF / "cohort101_sessions.csv", therapist="therapist")
    truth = pd.read_csv(REF / "cohort101_truth.csv")
    same = compare_episodes(truth, truth, patients=ad)
    o = same.overall.iloc[0]
    assert o["n_patients"] == 120
    assert (o["precision"], o["recall"], o["f1"], o["kappa"]) == (1.0, 1.0, 1.0, 1.0)
    assert o["repaired_agreement"] == 1.0
    # a table with only patient/rupture_session/repair_session (repaired derived)
    light = truth[["patient", "rupture_session", "repair_session"]]
    res = compare_episodes(light, truth, patients=ad)
    assert res.overall.loc[0, "repaired_agreement"] == 1.0
    # string ids vs integer ids are matched
    as_str = truth.assign(patient=truth["patient"].astype(str))
    assert compare_episodes(as_str, truth).overall.loc[0, "n_matched"] == len(truth)


def test_detector_output_is_accepted():
    ad = at.read_alliance(REF / "cohort101_sessions.csv", therapist="therapist")
    from alliancetrack.detection.changepoint import detect_changepoint

    det = detect_changepoint(ad)
    res = compare_episodes(det, det, patients=ad)
    assert res.overall.loc[0, "f1"] == 1.0
    assert len(res.per_patient) == 120
    assert res["overall"] is res.overall


def test_input_errors():
    good = ep([(1, 4, True)])
    with pytest.raises(at.AllianceDataError, match="rupture_session"):
        compare_episodes(good, pd.DataFrame({"patient": [1]}))
    with pytest.raises(at.AllianceDataError, match="tolerance"):
        compare_episodes(good, good, tolerance=-1)
    with pytest.raises(at.AllianceDataError, match="patients"):
        compare_episodes(good, good, patients=5)
