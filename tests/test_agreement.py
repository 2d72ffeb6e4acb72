"""source_agreement on hand-made cases, kappas computed by hand (see the comments)."""

from __future__ import annotations

import pandas as pd
import pytest

import alliancetrack as at
from alliancetrack import AllianceDataError


@pytest.fixture
def three_sources():
    # scores: patients 1-4, sessions 1-6 all rated (24 sessions); ruptures p1 s2 (repaired),
    # p3 s5 (unrepaired)
    data = at.read_alliance(pd.DataFrame({"patient": [p for p in range(1, 5) for _ in range(6)],
                                          "session": list(range(1, 7)) * 4,
                                          "alliance": 4.0}))
    scores = pd.DataFrame({"patient": [1, 3], "rupture_session": [2.0, 5.0],
                           "repair_session": [3.0, None], "repaired": [True, False]})
    # PSQ: p1, p2 sessions 1-6 and p3 sessions 1-5 answered (17); p4 none;
    # ruptures p1 s2 (resolved 5), p2 s3 (resolved 1), p3 s5 (resolved unanswered)
    rows = []
    for p, last in ((1, 6), (2, 6), (3, 5)):
        for s in range(1, last + 1):
            hit = (p, s) in {(1, 2), (2, 3), (3, 5)}
            rows.append({"patient": p, "session": s, "tension": "yes" if hit else "no",
                         "resolved": {(1, 2): 5, (2, 3): 1}.get((p, s))})
    psq = at.read_psq(pd.DataFrame(rows), patients=[1, 2, 3, 4])
    # 3RS: coded p1 s1-2, p2 s3-4, p3 s5, p4 s1 (6 sessions); markers p1 s2 (resolution 4),
    # p3 s5 (resolution 2), p4 s1 (no resolution)
    codes = at.read_3rs(pd.DataFrame({
        "patient": [1, 1, 2, 2, 3, 4], "session": [1, 2, 3, 4, 5, 1], "segment": 1,
        "type": [None, "W", None, None, "C", "W"], "significance": [None, 3, None, None, 2, 1],
        "resolution": [None, 4, None, None, 2, None]}), resolution="resolution")
    return data, scores, psq, codes


def test_three_sources_hand_computed(three_sources):
    data, scores, psq, codes = three_sources
    ep_psq = at.detect_episodes(psq, method="self-report")
    ep_3rs = at.detect_episodes(codes, method="observer")
    tab = at.source_agreement({"scores": scores, "PSQ": ep_psq, "3RS": ep_3rs},
                              coverage={"scores": data})
    tab = tab.set_index(["source_a", "source_b"])
    assert list(tab.index) == [("scores", "PSQ"), ("scores", "3RS"), ("PSQ", "3RS")]

    r = tab.loc[("scores", "PSQ")]
    # 17 common sessions; TP 2, FP 0, FN 1, TN 14: po = 16/17, pe = (2*3 + 15*14)/17^2
    assert (r["n_sessions"], r["n_a"], r["n_b"], r["n_matched"]) == (17, 2, 3, 2)
    assert r["session_kappa"] == pytest.approx(56 / 73)
    assert (r["precision"], r["recall"]) == (1.0, pytest.approx(2 / 3))
    # patients 1-3: has rupture [T, F, T] vs [T, T, T]: po = 2/3 = pe
    assert r["n_patients"] == 3 and r["patient_kappa"] == pytest.approx(0.0)
    # groups (p3 unknown in PSQ): [repaired, no_rupture] vs [repaired, unrepaired]:
    # po = 1/2, pe = 1/4 -> 1/3
    assert r["n_group"] == 2 and r["group_kappa"] == pytest.approx(1 / 3)

    r = tab.loc[("scores", "3RS")]
    # 6 common sessions; TP 2, FP 0, FN 1, TN 3: po = 5/6, pe = 1/2
    assert (r["n_sessions"], r["n_a"], r["n_b"], r["n_matched"]) == (6, 2, 3, 2)
    assert r["session_kappa"] == pytest.approx(2 / 3)
    # patients 1-4: [T, F, T, F] vs [T, F, T, T]: po = 3/4, pe = 1/2
    assert r["n_patients"] == 4 and r["patient_kappa"] == pytest.approx(0.5)
    # groups known for p1-p3 and identical (three categories): kappa 1
    assert r["n_group"] == 3 and r["group_kappa"] == pytest.approx(1.0)
    # matched ruptures: repaired (T, T) and (F, F)
    assert r["repaired_kappa"] == pytest.approx(1.0)

    r = tab.loc[("PSQ", "3RS")]
    # 5 common sessions; TP 2, FP 1, FN 0, TN 2: po = 4/5, pe = 12/25
    assert (r["n_sessions"], r["n_a"], r["n_b"], r["n_matched"]) == (5, 3, 2, 2)
    assert r["session_kappa"] == pytest.approx(8 / 13)
    assert (r["precision"], r["recall"]) == (pytest.approx(2 / 3), 1.0)
    assert r["n_patients"] == 3 and r["patient_kappa"] == pytest.approx(0.0)
    assert r["n_group"] == 2 and r["group_kappa"] == pytest.approx(1 / 3)
    assert (tab["coverage"] == "common").all()


def test_coverage_from_data_objects_equals_coverage_from_attrs(three_sources):
    data, scores, psq, codes = three_sources
    ep_psq = at.detect_episodes(psq, method="self-report")
    ep_3rs = at.detect_episodes(codes, method="observer")
    a = at.source_agreement({"PSQ": ep_psq, "3RS": ep_3rs})
    plain_psq, plain_3rs = ep_psq.copy(), ep_3rs.copy()
    plain_psq.attrs, plain_3rs.attrs = {}, {}
    b = at.source_agreement({"PSQ": plain_psq, "3RS": plain_3rs},
                            coverage={"PSQ": psq, "3RS": codes})
    pd.testing.assert_frame_equal(a, b)


def test_tolerance():
    # a rupture at session 2 vs session 3, sessions 1-4 covered by both
    cov = pd.DataFrame({"patient": 1, "session": [1, 2, 3, 4]})
    a = pd.DataFrame({"patient": [1], "rupture_session": [2.0], "repaired": [True]})
    b = pd.DataFrame({"patient": [1], "rupture_session": [3.0], "repaired": [True]})
    t0 = at.source_agreement({"a": a, "b": b}, coverage={"a": cov, "b": cov}).iloc[0]
    # TP 0, FP 1, FN 1, TN 2: po = 1/2, pe = 1/16 + 9/16 -> -1/3
    assert t0["n_matched"] == 0 and t0["session_kappa"] == pytest.approx(-1 / 3)
    t1 = at.source_agreement({"a": a, "b": b}, tolerance=1,
                             coverage={"a": cov, "b": cov}).iloc[0]
    assert t1["n_matched"] == 1 and t1["session_kappa"] == pytest.approx(1.0)


def test_patient_vs_therapist_over_sessions_both_answered():
    # the therapist did not answer session 3; the patient's rupture there does not count
    df = pd.DataFrame({
        "patient": 1, "session": [1, 1, 2, 2, 3, 3, 4, 4],
        "rater": ["patient", "therapist"] * 4,
        "tension": ["yes", "yes", "no", "yes", "yes", None, "no", "no"],
        "resolved": None})
    ep = at.detect_episodes(at.read_psq(df, rater="rater"), method="self-report")
    r = at.source_agreement(ep).iloc[0]
    assert (r["source_a"], r["source_b"]) == ("patient", "therapist")
    # sessions 1, 2, 4: patient [1, 0, 0], therapist [1, 1, 0]: po = 2/3,
    # pe = 1/3 * 2/3 + 2/3 * 1/3 = 4/9 -> kappa = (2/3 - 4/9) / (5/9) = 2/5
    assert (r["n_sessions"], r["n_a"], r["n_b"], r["n_matched"]) == (3, 1, 2, 1)
    assert r["session_kappa"] == pytest.approx(0.4)


def test_unknown_and_one_sided_coverage():
    a = pd.DataFrame({"patient": [1, 2], "rupture_session": [2.0, 3.0], "repaired": True})
    b = pd.DataFrame({"patient": [1], "rupture_session": [2.0], "repaired": True})
    r = at.source_agreement({"a": a, "b": b}).iloc[0]
    assert r["coverage"] == "unknown" and pd.isna(r["session_kappa"])
    assert (r["n_matched"], r["precision"], r["recall"]) == (1, 0.5, 1.0)
    cov = pd.DataFrame({"patient": [1, 1, 1], "session": [1, 2, 3]})
    r = at.source_agreement({"a": a, "b": b}, coverage={"b": cov}).iloc[0]
    # only patient 1's sessions 1-3: both have the rupture at 2 -> perfect agreement
    assert r["coverage"] == "one source" and r["n_a"] == 1 and r["n_sessions"] == 3
    assert r["session_kappa"] == pytest.approx(1.0)


def test_bad_calls():
    a = pd.DataFrame({"patient": [1], "rupture_session": [2.0], "repaired": True})
    with pytest.raises(AllianceDataError, match="at least two"):
        at.source_agreement({"a": a})
    with pytest.raises(AllianceDataError, match="rater column"):
        at.source_agreement(a)
    with pytest.raises(AllianceDataError, match="unknown source"):
        at.source_agreement({"a": a, "b": a}, coverage={"c": a})
    two = a.assign(rater="patient")
    two = pd.concat([two, two.assign(rater="therapist")])
    with pytest.raises(AllianceDataError, match="several raters"):
        at.source_agreement({"a": a, "b": two})
    with pytest.raises(AllianceDataError, match="tolerance"):
        at.source_agreement({"a": a, "b": a}, tolerance=-1)


def test_figures(three_sources):
    data, scores, psq, codes = three_sources
    eps = {"scores": scores, "PSQ": at.detect_episodes(psq, method="self-report"),
           "3RS": at.detect_episodes(codes, method="observer")}
    tab = at.source_agreement(eps, coverage={"scores": data})
    p = at.plot_source_agreement(tab)
    d = p.data
    # symmetric kappas: both halves of each panel, three panels
    assert len(d) == 2 * len(tab) * 3
    one = d[(d["row"] == "PSQ") & (d["column"] == "3RS") & (d["statistic"] == "session kappa")]
    assert one["value"].iloc[0] == pytest.approx(8 / 13)
    t = at.plot_sources_timeline(data, eps, patients=[1, 3], coverage={"scores": data})
    pts = t.data
    assert set(pts["patient"].astype(int)) == {1, 3}
    assert sorted(pts.loc[pts["lane"] == "3RS", "session"]) == [2.0, 5.0]
    assert set(pts.loc[pts["lane"] == "PSQ", "status"].astype(str)) == {"repaired",
                                                                         "repair unknown"}
    with pytest.raises(AllianceDataError, match="not in the data"):
        at.plot_sources_timeline(data, eps, patients=[9])
