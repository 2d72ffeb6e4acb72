"""3RS resolution strategies: registry, read_3rs(strategy=), link_strategies, per-patient counts."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import alliancetrack as at
from alliancetrack.reading.strategies import parse_strategies

sys.path.insert(0, str(Path(__file__).parent / "reference"))
from make_strategy_data import simulate  # noqa: E402

# patient 1: sessions 2, 3, 5 coded (4 not); patient 2: session 1 coded, nothing in it;
# patient 3: no codes at all
ROWS = pd.DataFrame({
    "patient": [1, 1, 1, 1, 2],
    "session": [2, 2, 3, 5, 1],
    "segment": [1, 2, 1, 1, 1],
    "type": ["W", None, None, None, None],
    "significance": [3, None, None, None, None],
    "resolution": [4, None, None, None, None],
    "therapist": ["T1", "T1", "T1", "T1", "T2"],
    "strategy": ["clarify", "Invite; 6", "REDIRECT", None, None],
})


def codes(rows=ROWS, **kw):
    return at.read_3rs(rows, resolution="resolution", therapist="therapist", strategy="strategy",
                       patients=[1, 2, 3], **kw)


def episodes():
    return pd.DataFrame({
        "patient": [1, 1, 1, 2, 3], "episode": [1, 2, 3, 1, 1], "method": "rules:test",
        "rupture_session": [2.0, 4.0, 5.0, 1.0, 2.0],
        "repair_session": [3.0, np.nan, np.nan, 2.0, np.nan],
        "repaired": [True, False, False, True, False], "depth": 1.0,
    })


# --------------------------------------------------------------------------- registry

def test_registry_classes_and_numbers():
    s = at.STRATEGIES
    assert sorted(x.number for x in s.values()) == list(range(1, 12))
    assert {x.strategy_class for x in s.values()} == {"immediate", "expressive"}
    for name in ("clarify", "change_task", "rationale", "redirect"):
        assert s[name].strategy_class == "immediate"
    for name in ("invite", "acknowledge", "disclose", "link_therapy", "link_other"):
        assert s[name].strategy_class == "expressive"
    assert "Judgement" in s["validate"].note  # judgements are documented
    assert all("Muran" in x.citation for x in s.values())
    with pytest.raises(ValueError, match="strategy_class"):
        at.Strategy("x", None, "x", "other")


def test_parse_names_numbers_wording_any_case():
    col = pd.Series(["CLARIFY", "therapist clarifies a misunderstanding", 1, "1.0",
                     "change-task | Link Other", " ", np.nan])
    got = parse_strategies(col, "s", False).tolist()
    assert got == [("clarify",), ("clarify",), ("clarify",), ("clarify",),
                   ("change_task", "link_other"), (), ()]


def test_unknown_strategies_named_with_known_list():
    rows = ROWS.assign(strategy=["clarify", "hug; 12", "hug", None, None])
    with pytest.raises(at.AllianceDataError) as err:
        codes(rows)
    msg = str(err.value)
    assert "'hug'" in msg and "'12'" in msg and "row 1" in msg and "row 2" in msg
    assert "1=clarify" in msg and "11=explore_new" in msg


def test_user_registered_strategy(monkeypatch):
    monkeypatch.setitem(at.STRATEGIES, "metacommunication",
                        at.Strategy("metacommunication", None, "Therapist metacommunicates",
                                    "expressive"))
    rows = ROWS.assign(strategy=["metacommunication", None, None, None, None])
    obs = codes(rows)
    assert obs.strategies["strategy"].tolist() == ["metacommunication"]
    assert obs.strategies["strategy_class"].tolist() == ["expressive"]


# --------------------------------------------------------------------------- read_3rs

def test_read_3rs_markers_and_strategies():
    obs = codes()
    st = obs.strategies
    assert st[["patient", "session", "segment", "strategy"]].values.tolist() == [
        [1, 2, 1, "clarify"], [1, 2, 2, "invite"], [1, 2, 2, "disclose"], [1, 3, 1, "redirect"]]
    assert st["strategy_class"].tolist() == ["immediate", "expressive", "expressive", "immediate"]
    assert st["therapist"].tolist() == ["T1"] * 4
    # markers unchanged by the strategy column: same frame and sessions as without it
    plain = at.read_3rs(ROWS.drop(columns="strategy"), resolution="resolution",
                        therapist="therapist", patients=[1, 2, 3])
    pd.testing.assert_frame_equal(obs.sessions, plain.sessions)
    pd.testing.assert_frame_equal(obs.frame, plain.frame)
    assert plain.strategies is None


def test_strategy_rows_of_their_own_in_a_marked_segment():
    # the marker row, then two strategy-only rows of the same segment; resolution on the last
    rows = pd.DataFrame({"patient": 1, "session": 2, "segment": [1, 1, 1],
                         "type": ["C", None, None], "significance": [2, None, None],
                         "resolution": [None, None, 5], "strategy": [None, "clarify", "acknowledge"],
                         "rating": [None, 3, 4]})
    obs = at.read_3rs(rows, resolution="resolution", strategy="strategy",
                      strategy_significance="rating")
    assert len(obs.frame) == 1 and obs.frame["type"].tolist() == ["confrontation"]
    assert obs.sessions["resolution"].tolist() == [5.0]  # kept from a strategy-only row
    assert obs.strategies["strategy"].tolist() == ["clarify", "acknowledge"]
    assert obs.strategies["strategy_significance"].tolist() == [3.0, 4.0]


def test_strategy_errors():
    dup = ROWS.assign(strategy=["clarify; clarify", None, None, None, None])
    with pytest.raises(at.AllianceDataError, match="once per segment"):
        codes(dup)
    stray = ROWS.assign(rating=[None, None, None, 3, None])
    with pytest.raises(at.AllianceDataError, match="rows without a strategy: row 3"):
        codes(stray, strategy_significance="rating")
    bad = ROWS.assign(rating=[7, None, None, None, None])
    with pytest.raises(at.AllianceDataError, match="outside 1-5"):
        codes(bad, strategy_significance="rating")
    with pytest.raises(at.AllianceDataError, match="'strat'"):
        at.read_3rs(ROWS, strategy="strat")
    sig = ROWS.assign(significance=[3, 2, None, None, None])  # significance on a strategy row
    with pytest.raises(at.AllianceDataError, match="without a marker type"):
        codes(sig)


# --------------------------------------------------------------------------- linking

def test_link_window_zero():
    out = at.link_strategies(episodes(), codes())
    assert list(out.columns[:3]) == ["patient", "episode", "method"]
    assert out["n_strategies"].tolist() == [3, pd.NA, 0, 0, pd.NA]
    assert out["n_immediate"].tolist() == [1, pd.NA, 0, 0, pd.NA]
    assert out["n_expressive"].tolist() == [2, pd.NA, 0, 0, pd.NA]
    assert out["strategies"].tolist() == ["clarify; invite; disclose", pd.NA, "", "", pd.NA]
    assert out["therapist"].iloc[:4].tolist() == ["T1", "T1", "T1", "T2"]
    assert pd.isna(out["therapist"].iloc[4])  # patient 3: no codes, therapist unknown
    assert out["sessions_coded"].tolist() == [1, 0, 1, 1, 0]


def test_link_window_stops_at_repair():
    out = at.link_strategies(episodes(), codes(), window=5)
    # episode 1: sessions 2-3 (repair at 3 closes the window): + redirect
    assert out.loc[0, ["n_strategies", "n_immediate", "n_expressive"]].tolist() == [4, 2, 2]
    assert out.loc[0, "window_end"] == 3.0
    assert out.loc[0, "sessions_coded"] == 2
    # episode 2: rupture session 4 not coded -> missing even though session 5 is coded
    assert pd.isna(out.loc[1, "n_strategies"]) and out.loc[1, "sessions_coded"] == 1
    assert out.loc[2, "window_end"] == 10.0


def test_link_window_one_and_class_override():
    out = at.link_strategies(episodes(), codes(), window=1,
                             classes={"redirect": "expressive"})
    assert out.loc[0, ["n_immediate", "n_expressive"]].tolist() == [1, 3]


def test_link_repair_in_same_session_observer_episodes():
    obs = codes()
    ep = at.detect_episodes(obs, method="observer")
    assert ep["repair_session"].tolist() == [2.0]
    out = at.link_strategies(ep, obs, window=3)  # never after the repair (session 2)
    assert out["n_strategies"].tolist() == [3] and out["window_end"].tolist() == [2.0]
    assert out["source"].tolist() == ["observer"]


def test_link_psq_episodes():
    psq = at.read_psq(pd.DataFrame({"patient": [1, 1, 1], "session": [2, 3, 4],
                                    "tension": ["yes", "yes", "yes"], "resolved": [2, 5, None]}))
    ep = at.detect_episodes(psq, method="self-report")
    out = at.link_strategies(ep, codes())
    assert out["n_strategies"].tolist() == [3, 1, pd.NA]
    assert out["repaired"].tolist() == [False, True, pd.NA]


def test_link_errors():
    obs = codes()
    for w in (-1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="window"):
            at.link_strategies(episodes(), obs, window=w)
    with pytest.raises(at.AllianceDataError, match="no resolution strategies"):
        at.link_strategies(episodes(), at.read_3rs(ROWS.drop(columns="strategy")))
    with pytest.raises(at.AllianceDataError, match="repair_session"):
        at.link_strategies(episodes().drop(columns="repair_session"), obs)
    with pytest.raises(at.AllianceDataError, match="ids agree"):
        at.link_strategies(episodes().assign(patient=["a", "a", "a", "b", "c"]), obs)
    with pytest.raises(TypeError, match="read_3rs"):
        at.link_strategies(episodes(), ROWS)
    with pytest.raises(ValueError, match="unknown"):
        at.link_strategies(episodes(), obs, classes={"hug": "expressive"})
    with pytest.raises(ValueError, match="'immediate' or 'expressive'"):
        at.link_strategies(episodes(), obs, classes={"clarify": "other"})


def test_link_empty_episode_table():
    out = at.link_strategies(episodes().iloc[0:0], codes())
    assert len(out) == 0 and "n_expressive" in out.columns


# --------------------------------------------------------------------------- predictors

def test_episode_predictors_carry_strategy_counts():
    df = pd.DataFrame({"patient": np.repeat([1, 2, 3], 6), "session": np.tile(np.arange(1, 7), 3),
                       "alliance": 4.0})
    data = at.read_alliance(df)
    linked = at.link_strategies(episodes(), codes(), window=5)
    pred = at.episode_predictors(data, episodes(), strategies=linked)
    assert pred["patient"].tolist() == [1, 2, 3]
    assert pred["n_strategy_episodes"].tolist() == [2, 1, 0]
    assert pred["n_strategies"].tolist() == [4, 0, pd.NA]
    assert pred["n_immediate"].tolist() == [2, 0, pd.NA]
    assert pred["n_expressive"].tolist() == [2, 0, pd.NA]
    plain = at.episode_predictors(data, episodes())
    pd.testing.assert_frame_equal(pred[plain.columns], plain)
    with pytest.raises(at.AllianceDataError, match="not in the data"):
        at.episode_predictors(at.read_alliance(df[df["patient"] < 3]),
                              episodes()[episodes()["patient"] < 3], strategies=linked)


# --------------------------------------------------------------------------- bundled example

def test_example_strategies_link_to_observer_episodes():
    ex = at.datasets.load_example()
    both = pd.concat([ex.observer, ex.strategies], ignore_index=True)
    codes_ = at.read_3rs(both, marker="marker", resolution="resolution", strategy="strategy")
    plain = at.read_3rs(ex.observer, marker="marker", resolution="resolution")
    pd.testing.assert_frame_equal(codes_.sessions, plain.sessions)  # markers unchanged
    assert len(codes_.strategies) == len(ex.strategies)
    ep = at.detect_episodes(codes_, method="observer")
    linked = at.link_strategies(ep, codes_)
    assert linked["n_strategies"].notna().all()  # observer episodes: always coded
    # the documented invented effect: more expressive uses in repaired episodes (coded
    # resolution >= 4)
    exp_ = linked["n_expressive"].astype(float)
    rep = linked["repaired"]
    assert exp_[rep == True].mean() > exp_[rep == False].mean()  # noqa: E712


def test_repair_rates_wilson():
    study = simulate()
    rates = at.repair_rates(study, by="pd")
    sub = study[study["pd"] == 1]
    both = sub[(sub["n_immediate"] > 0) & (sub["n_expressive"] > 0)]
    row = rates[(rates["pd"] == 1) & (rates["strategy_class"] == "both")].iloc[0]
    assert row["n"] == len(both) and row["repaired"] == both["repaired"].sum()
    # Wilson interval by hand
    n, p, z = len(both), both["repaired"].mean(), 1.959963984540054
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert row["ci_low"] == pytest.approx(centre - half)
    assert row["ci_high"] == pytest.approx(centre + half)
    assert rates["n"].sum() == len(study)


# --------------------------------------------------------------------------- plots

def test_timeline_strategy_lanes():
    df = pd.DataFrame({"patient": 1, "session": range(1, 7), "alliance": [4, 4, 2.5, 3, 4, 4.1]})
    data = at.read_alliance(df)
    obs = at.read_3rs(ROWS[ROWS["patient"] == 1], resolution="resolution", strategy="strategy")
    p = at.plot_sources_timeline(data, {"3RS": at.detect_episodes(obs, method="observer")},
                                 strategies=obs)
    frames = [getattr(layer, "data", None) if isinstance(getattr(layer, "data", None),
                                                         pd.DataFrame) else layer._data
              for layer in p.layers]
    ticks = [d for d in frames if isinstance(d, pd.DataFrame) and "strategy_class" in d]
    got = pd.concat(ticks)[["session", "strategy_class", "n"]].values.tolist()
    assert sorted(got) == [[2, "expressive", 2], [2, "immediate", 1], [3, "immediate", 1]]
    assert "expressive strategies" in p.scales.get_scales("y").labels
    with pytest.raises(at.AllianceDataError, match="no strategies"):
        at.plot_sources_timeline(data, {"3RS": at.detect_episodes(obs, method="observer")},
                                 strategies=at.read_3rs(ROWS.drop(columns="strategy")))


def test_plot_strategy_repair_counts():
    linked = at.link_strategies(episodes(), codes(), window=5).assign(pd_=[0, 0, 1, 1, 1])
    p = at.plot_strategy_repair(linked, by="pd_")
    assert p.data["n"].sum() == 3  # the two episodes without coded rupture session are left out
    with pytest.raises(at.AllianceDataError, match="No episode"):
        at.plot_strategy_repair(linked.iloc[[1, 4]])


# --------------------------------------------------------------------------- command line

def test_cli_strategies(tmp_path, capsys):
    from alliancetrack.cli import main

    markers = ROWS.drop(columns="strategy")
    strategies = ROWS.loc[ROWS["strategy"].notna(), ["patient", "session", "segment", "strategy"]]
    markers.to_csv(tmp_path / "markers.csv", index=False)
    strategies.to_csv(tmp_path / "strategies.csv", index=False)
    episodes().to_csv(tmp_path / "episodes.csv", index=False)
    rc = main(["strategies", str(tmp_path / "markers.csv"), str(tmp_path / "strategies.csv"),
               "--resolution", "resolution", "--therapist", "therapist", "--episodes",
               str(tmp_path / "episodes.csv"), "--window", "5", "--out", str(tmp_path / "o")])
    assert rc == 0
    linked = pd.read_csv(tmp_path / "o" / "strategies_linked.csv")
    expected = at.link_strategies(episodes(), codes(), window=5)
    assert linked["n_strategies"].tolist()[0] == 4
    np.testing.assert_array_equal(linked["n_expressive"].to_numpy(dtype=float),
                                  expected["n_expressive"].to_numpy(dtype=float, na_value=np.nan))
    assert (tmp_path / "o" / "strategy_repair_rates.png").exists()
    strategies.assign(strategy="hug").to_csv(tmp_path / "bad.csv", index=False)
    rc = main(["strategies", str(tmp_path / "markers.csv"), str(tmp_path / "bad.csv"),
               "--resolution", "resolution", "--out", str(tmp_path / "o2")])
    assert rc == 2
    assert "unknown strategy: 'hug'" in capsys.readouterr().err


# --------------------------------------------------------------------------- report

def test_report_strategy_section(tmp_path):
    ex = at.datasets.load_example()
    data = at.read_alliance(ex.sessions[ex.sessions["patient"] <= 30], therapist="therapist",
                            scale="wai-sr")
    obs = at.read_3rs(pd.concat([ex.observer, ex.strategies], ignore_index=True),
                      marker="marker", resolution="resolution", strategy="strategy",
                      patients=data.patients)
    paths = at.write_report(data, tmp_path, methods=["stiles-2sd"], strategy_codes=obs)
    page = paths["report"].read_text()
    assert "<h2>Repair strategies</h2>" in page and "associations, not effects" in page
    linked = pd.read_csv(paths["strategies_linked"])
    expected = at.link_strategies(at.detect_episodes(obs, method="observer"), obs)
    assert linked["n_expressive"].tolist() == expected["n_expressive"].tolist()
    assert "therapist" in linked.columns
