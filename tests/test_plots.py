"""Properties of the built figures (layers, facets, spans, gaps) and saving; no pixel tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotnine as p9
import pytest

import alliancetrack as at
from alliancetrack.plotting.trajectories import changepoint_segments


@pytest.fixture(scope="module")
def small():
    ex = at.datasets.load_example()
    keep = list(range(1, 31))
    sessions = ex.sessions.loc[ex.sessions["patient"].isin(keep)]
    data = at.read_alliance(sessions, therapist="therapist", scale="wai-sr")
    ep = at.detect_episodes(data, rule="stiles-2sd")
    return data, ep


def _layers(p, geom):
    return [layer for layer in p.layers if isinstance(layer.geom, geom)]


def _data(layer) -> pd.DataFrame:
    """A layer's own data (plotnine keeps it in ``_data``)."""
    d = getattr(layer, "data", None)
    return d if isinstance(d, pd.DataFrame) else layer._data


def _build(p):
    """Draw the figure (catches errors that only appear when rendering)."""
    fig = p.draw()
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_trajectories_facets_are_the_chosen_patients(small):
    data, ep = small
    p = at.plot_trajectories(data, ep, patients=[6, 1, 9], ncol=2)
    assert p.data["patient"].cat.categories.tolist() == [6, 1, 9]
    assert isinstance(p.facet, p9.facet_wrap)
    # every layer only holds the chosen patients
    for layer in p.layers:
        if isinstance(_data(layer), pd.DataFrame) and "patient" in _data(layer):
            assert set(_data(layer)["patient"].astype(int)) <= {6, 1, 9}
    _build(p)


def test_trajectories_spans_match_episode_table(small):
    data, ep = small
    pats = ep["patient"].unique()[:6].tolist()
    p = at.plot_trajectories(data, ep, patients=pats)
    (rect,) = _layers(p, p9.geom_rect)
    spans = _data(rect).sort_values(["patient", "rupture_session"])
    want = ep.loc[ep["patient"].isin(pats)].sort_values(["patient", "rupture_session"])
    assert len(spans) == len(want)
    np.testing.assert_array_equal(spans["xmin"].to_numpy(), want["rupture_session"] - 0.5)
    last = data.frame.groupby("patient")["session"].max()
    end = np.where(want["repaired"], want["repair_session"],
                   want["patient"].map(last).astype(float))
    np.testing.assert_array_equal(spans["xmax"].to_numpy(), end + 0.5)
    assert (spans["status"] == np.where(want["repaired"], "repaired", "unrepaired")).all()
    # dashed pre-rupture level at the episode's pre_level
    dashed = [s for s in _layers(p, p9.geom_segment)
              if s.geom.aes_params.get("linetype") == "dashed"]
    assert len(dashed) == 1
    np.testing.assert_allclose(np.sort(_data(dashed[0])["pre_level"].to_numpy()),
                               np.sort(want["pre_level"].to_numpy()))


def test_unrepaired_ruptures_are_marked(small):
    data, ep = small
    unrep = ep.loc[~ep["repaired"]]
    assert len(unrep)
    pats = unrep["patient"].unique()[:3].tolist()
    p = at.plot_trajectories(data, ep, patients=pats)
    crosses = [pt for pt in _layers(p, p9.geom_point) if pt.geom.aes_params.get("shape") == "x"]
    assert len(crosses) == 1
    got = _data(crosses[0])[["patient", "rupture_session"]].astype(float)
    want = unrep.loc[unrep["patient"].isin(pats), ["patient", "rupture_session"]].astype(float)
    assert sorted(map(tuple, got.to_numpy())) == sorted(map(tuple, want.to_numpy()))


def test_line_breaks_at_missing_ratings():
    df = pd.DataFrame({"patient": 1, "session": range(1, 9),
                       "alliance": [4.0, 4.1, np.nan, 4.0, 2.5, np.nan, 4.1, 4.0]})
    p = at.plot_trajectories(df)
    (path,) = _layers(p, p9.geom_path)
    runs = _data(path).groupby("run")["session"].apply(list).tolist()
    assert runs == [[1, 2], [4, 5], [7, 8]]
    assert _data(path)["alliance"].notna().all()
    (rug,) = _layers(p, p9.geom_rug)
    assert _data(rug)["session"].tolist() == [3, 6]
    _build(p)


def test_choose_by_group_and_sample_reproducible(small):
    data, ep = small
    pred = at.episode_predictors(data, ep)
    p = at.plot_trajectories(data, ep, group="unrepaired")
    shown = set(p.data["patient"].astype(int))
    assert shown <= set(pred.loc[pred["group"] == "unrepaired", "patient"])
    a = at.plot_trajectories(data, ep, sample=5, seed=3).data["patient"].cat.categories
    b = at.plot_trajectories(data, ep, sample=5, seed=3).data["patient"].cat.categories
    assert list(a) == list(b) and len(a) == 5
    # default: at most 12 panels
    assert at.plot_trajectories(data).data["patient"].nunique() == 12
    with pytest.raises(at.AllianceDataError, match="not in the data"):
        at.plot_trajectories(data, ep, patients=[999])
    both = pd.concat([ep, at.detect_episodes(data, rule="rci")])
    with pytest.raises(at.AllianceDataError, match="mixes methods"):
        at.plot_trajectories(data, both, patients=[1])
    p = at.plot_trajectories(data, both, patients=[1], method="rules:rci")
    assert (_data(_layers(p, p9.geom_rect)[0])["method"] == "rules:rci").all()


def test_changepoint_overlay_matches_detector(small):
    data, _ = small
    cp = at.detect_episodes(data, method="changepoint")
    segs = changepoint_segments(data)
    # every detected change-point rupture and repair starts a segment of the overlay
    starts = set(map(tuple, segs[["patient", "start_session"]].astype(float).to_numpy()))
    for row in cp.itertuples(index=False):
        assert (row.patient, row.rupture_session) in starts
        if row.repaired:
            assert (row.patient, row.repair_session) in starts
    # segment means are the means of the rated sessions they cover
    frame = data.frame.dropna(subset=["alliance"])
    for row in segs.head(20).itertuples(index=False):
        f = frame.loc[(frame["patient"] == row.patient)
                      & frame["session"].between(row.start_session, row.end_session)]
        assert len(f) == row.n and f["alliance"].mean() == pytest.approx(row.mean)
    p = at.plot_trajectories(data, cp, patients=[1, 2], changepoints=True)
    overlay = [s for s in _layers(p, p9.geom_segment) if "mean" in _data(s)]
    assert len(overlay) == 1 and set(_data(overlay[0])["patient"].astype(int)) == {1, 2}
    _build(p)


def test_cohort_groups_and_band(small):
    data, ep = small
    pred = at.episode_predictors(data, ep)
    p = at.plot_cohort(data, pred, min_n=2)
    (ribbon,) = _layers(p, p9.geom_ribbon)
    d = _data(ribbon)
    assert (d["ci_low"] <= d["mean"]).all() and (d["mean"] <= d["ci_high"]).all()
    assert (d["count"] >= 2).all()
    # the means are the group means at each session
    g = pred.set_index("patient")["group"]
    rated = data.frame.dropna(subset=["alliance"])
    grp = rated["patient"].map(g).map({"no_rupture": "no rupture", "repaired": "repaired",
                                       "unrepaired": "unrepaired"})
    want = rated.groupby([grp, rated["session"]])["alliance"].mean()
    for row in d.itertuples():
        assert row.mean == pytest.approx(want[(row.group, row.session)])
    _build(p)


def test_episode_summary_by_method(small):
    data, ep = small
    eps = pd.concat([ep, at.detect_episodes(data, rule="strauss-1sd"),
                     at.detect_episodes(data, method="changepoint")])
    p = at.plot_episode_summary(eps, data)
    assert p.data["method"].nunique() == 3
    assert p.data["method"].cat.categories[-1] == f"rules:stiles-2sd (n={len(ep)})"
    assert set(p.data["measure"].unique()) == {
        "Depth (scale points)", "Sessions to repair", "Timing (phase of treatment)"}
    timing = p.data.loc[p.data["measure"] == "Timing (phase of treatment)", "value"]
    assert ((timing > 0) & (timing <= 1)).all() and len(timing) == len(eps)
    assert (p.data.loc[p.data["measure"] == "Sessions to repair", "value"] >= 1).all()
    p2 = at.plot_episode_summary(ep)  # without data: timing = rupture session
    assert "Timing (rupture session)" in set(p2.data["measure"])
    _build(p)


def test_coefficients_forest():
    coefs = pd.DataFrame({"term": ["(Intercept)", "a", "b"], "estimate": [1.0, 0.5, -0.2],
                          "ci_low": [0.0, 0.1, -0.6], "ci_high": [2.0, 0.9, 0.2]})
    p = at.plot_coefficients(coefs)
    assert p.data["term"].astype(str).tolist() == ["a", "b"]
    assert _layers(p, p9.geom_pointrange)
    p = at.plot_coefficients({"m1": coefs, "m2": coefs.assign(estimate=coefs["estimate"] + 1)},
                             intercept=True)
    assert len(p.data) == 6 and set(p.data["model"]) == {"m1", "m2"}
    with pytest.raises(at.AllianceDataError):
        at.plot_coefficients(pd.DataFrame({"term": ["a"]}))
    _build(p)


@pytest.mark.parametrize("suffix", ["png", "svg", "pdf"])
def test_save_formats(small, tmp_path, suffix):
    data, ep = small
    p = at.plot_trajectories(data, ep, patients=[1, 2]) + p9.labs(title="extended with +")
    out = tmp_path / f"fig.{suffix}"
    p.save(out, dpi=72, verbose=False)
    head = out.read_bytes()[:8]
    assert out.stat().st_size > 1000
    assert {"png": b"\x89PNG", "svg": b"<?xml", "pdf": b"%PDF"}[suffix] in head


def test_trajectories_shade_sessions_by_rupture_probability():
    df = pd.DataFrame({"patient": np.repeat([1, 2], 6), "session": np.tile(range(1, 7), 2),
                       "alliance": [4, 4.1, 2, 2.1, 4, 4, 3.9, 4, 4.1, np.nan, 4, 3.9]})
    probs = df[["patient", "session"]].assign(
        p_rupture=[0, 0.1, 0.9, 1.0, 0.2, 0, 0, 0, 0.4, np.nan, 0.6, 0.05])
    p = at.plot_trajectories(df, probabilities=probs, patients=[2, 1])
    (rect,) = _layers(p, p9.geom_rect)
    shade = _data(rect)
    # one tile per rated session with a probability (the missing rating is not shaded)
    want = probs.dropna()
    assert len(shade) == len(want) == 11
    got = shade.assign(patient=shade["patient"].astype(int)).sort_values(["patient", "session"])
    np.testing.assert_array_equal(got["xmin"], want["session"] - 0.5)
    np.testing.assert_array_equal(got["xmax"], want["session"] + 0.5)
    np.testing.assert_array_equal(got["p_rupture"], want["p_rupture"])
    # drawn opacity is linear in p: 0 -> transparent, 1 -> 0.5, whatever the range in the data
    p.draw()
    import matplotlib.pyplot as plt

    plt.close("all")
    built = p.layers.data[0]
    assert sorted(np.round(built["alpha"], 6)) == sorted(np.round(0.5 * want["p_rupture"], 6))
    assert set(built["fill"]) == {"#CC79A7"}
    # episodes still get their own spans on top of the shading
    ep = at.detect_episodes(df, rule="stiles-2sd")
    with_ep = at.plot_trajectories(df, ep, probabilities=probs)
    assert len(_layers(with_ep, p9.geom_rect)) == 1 + (len(ep) > 0)


def test_trajectories_probabilities_are_checked():
    df = pd.DataFrame({"patient": 1, "session": range(1, 7),
                       "alliance": [4.0, 4.1, 2.0, 2.1, 4.0, 4.0]})
    with pytest.raises(at.AllianceDataError, match="p_rupture"):
        at.plot_trajectories(df, probabilities=df[["patient", "session"]])
    bad = df[["patient", "session"]].assign(p_rupture=[0, 0, 1.5, 0, 0, 0])
    with pytest.raises(at.AllianceDataError, match=r"\[0, 1\]"):
        at.plot_trajectories(df, probabilities=bad)
    with pytest.raises(ValueError, match="DataFrame"):
        at.plot_trajectories(df, probabilities=[0.1] * 6)
