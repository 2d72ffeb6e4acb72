"""Figures for rupture measurement sources: agreement heat map and per-patient timelines.

Colours are Okabe-Ito (colour-blind safe), the theme that of
:mod:`alliancetrack.plotting.trajectories`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotnine as p9

from alliancetrack.agreement.sources import _coverage_of, _prepared
from alliancetrack.errors import AllianceDataError
from alliancetrack.plotting.strategies import CLASS_COLOURS, strategy_ticks
from alliancetrack.plotting.style import OKABE_ITO, theme_alliance
from alliancetrack.reading.alliance import as_alliance_data

__all__ = ["plot_source_agreement", "plot_sources_timeline"]

_STAT_LABELS = {"session_kappa": "session kappa", "patient_kappa": "patient kappa",
                "group_kappa": "group kappa", "precision": "precision", "recall": "recall",
                "f1": "F1", "repaired_kappa": "repaired kappa"}
_STATUS_COLOURS = {"repaired": OKABE_ITO["blue"], "unrepaired": OKABE_ITO["vermillion"],
                   "repair unknown": OKABE_ITO["grey"]}
_STATUS_SHAPES = {"repaired": "o", "unrepaired": "X", "repair unknown": "D"}


def plot_source_agreement(table: pd.DataFrame,
                          statistics: Sequence[str] = ("session_kappa", "patient_kappa",
                                                       "group_kappa"),
                          *, digits: int = 2, base_size: float = 8) -> p9.ggplot:
    """Heat map of pairwise agreement between sources (from :func:`source_agreement`).

    One panel per statistic; a tile per pair of sources (kappas are
    symmetric, so both halves are filled; precision and recall are shown with
    the row source as ``a``), labelled with its value and coloured from
    vermillion (-1) through white (0) to blue (1).  Grey tiles: undefined.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`alliancetrack.source_agreement`.
    statistics : sequence of str
        Columns to show, default session, patient and group kappa.
    digits : int
        Decimals of the labels.
    base_size : float
        Base font size.

    Returns
    -------
    plotnine.ggplot

    Examples
    --------
    >>> import pandas as pd, alliancetrack as at
    >>> tab = pd.DataFrame({"source_a": ["A", "A", "B"], "source_b": ["B", "C", "C"],
    ...                     "session_kappa": [0.5, 0.2, -0.1], "patient_kappa": [0.4, 0.1, 0.0],
    ...                     "group_kappa": [0.3, None, 0.2]})
    >>> p = at.plot_source_agreement(tab)
    >>> sorted(p.data["statistic"].unique().tolist())
    ['group kappa', 'patient kappa', 'session kappa']
    """
    missing = [c for c in ("source_a", "source_b", *statistics) if c not in table.columns]
    if missing:
        raise AllianceDataError(f"The agreement table lacks column(s) {missing}; pass the "
                                "output of alliancetrack.source_agreement.")
    order = list(dict.fromkeys([*table["source_a"], *table["source_b"]]))
    long = []
    for stat in statistics:
        symmetric = stat not in ("precision", "recall")
        for row in table.itertuples(index=False):
            r = row._asdict()
            v = float(r[stat]) if pd.notna(r[stat]) else np.nan
            long.append((r["source_a"], r["source_b"], stat, v))
            if symmetric:
                long.append((r["source_b"], r["source_a"], stat, v))
            elif stat == "precision":  # b's precision against a is a's recall
                long.append((r["source_b"], r["source_a"], stat, float(r["recall"])
                             if "recall" in r and pd.notna(r["recall"]) else np.nan))
            else:
                long.append((r["source_b"], r["source_a"], stat, float(r["precision"])
                             if "precision" in r and pd.notna(r["precision"]) else np.nan))
    df = pd.DataFrame(long, columns=["row", "column", "statistic", "value"])
    df["label"] = [("–" if np.isnan(v) else f"{v:.{digits}f}") for v in df["value"]]
    df["row"] = pd.Categorical(df["row"], categories=order[::-1])
    df["column"] = pd.Categorical(df["column"], categories=order)
    df["statistic"] = pd.Categorical([_STAT_LABELS.get(s, s) for s in df["statistic"]],
                                     categories=[_STAT_LABELS.get(s, s) for s in statistics])
    df["dark"] = df["value"].abs() > 0.6
    k = len(order)
    n = len(statistics)
    width = min(9.0, 1.2 + n * (0.9 + 0.55 * k))
    return (
        p9.ggplot(df, p9.aes("column", "row", fill="value"))
        + p9.geom_tile(color="white", size=0.8)
        + p9.geom_text(p9.aes(label="label", color="dark"), size=base_size - 1, show_legend=False)
        + p9.scale_color_manual(values={False: "black", True: "white"})
        + p9.scale_fill_gradient2(low=OKABE_ITO["vermillion"], mid="#FFFFFF",
                                  high=OKABE_ITO["blue"], midpoint=0, limits=(-1, 1),
                                  na_value="#DDDDDD", name="agreement")
        + p9.facet_wrap("statistic", nrow=1)
        + p9.labs(x="", y="")
        + theme_alliance(base_size, figure_size=(width, 0.9 + 0.45 * k),
                         axis_text_x=p9.element_text(rotation=30, ha="right"),
                         panel_grid=p9.element_blank(), legend_position="right")
    )


def plot_sources_timeline(data, sources: Mapping[str, pd.DataFrame], *, patients=None,
                          coverage: Mapping | None = None, ncol: int = 2,
                          base_size: float = 8, strategies=None) -> p9.ggplot:
    """Per-patient timeline: the sources' ruptures stacked under the alliance trajectory.

    One panel per patient.  The alliance scores are drawn on top (a gap at a
    missing rating); below, one lane per source: grey boxes for the sessions
    the source covers (answered questionnaires, coded sessions, rated
    sessions; see :func:`alliancetrack.source_agreement` for how coverage is
    found), a point at each rupture coloured and shaped by its repair status,
    and for score-based episodes a line from rupture to repair session.

    Parameters
    ----------
    data : AllianceData or DataFrame
        The alliance ratings.
    sources : dict of str to DataFrame
        Episode tables by source name (one rater each), lanes in this order.
    patients : sequence, optional
        Patients to show; default: up to four patients with episodes in the
        most sources.
    coverage : dict, optional
        Coverage of some sources, as in :func:`source_agreement`; score-based
        sources without one are taken to cover the rated sessions of ``data``.
    ncol : int
        Panels per row.
    base_size : float
        Base font size.
    strategies : ObserverData or DataFrame, optional
        3RS codes read with ``strategy=`` (or their ``.strategies``): two more
        lanes with a tick at each session where immediate / expressive
        resolution strategies were coded (tick size: number of uses).

    Returns
    -------
    plotnine.ggplot

    Examples
    --------
    >>> import pandas as pd, alliancetrack as at
    >>> data = at.read_alliance(pd.DataFrame({"patient": 1, "session": range(1, 7),
    ...                                       "alliance": [4, 4, 2.5, 3, 4, 4.1]}))
    >>> psq = at.read_psq(pd.DataFrame({"patient": 1, "session": [2, 3, 4],
    ...                                 "tension": ["no", "yes", "no"], "resolved": [None, 2, None]}))
    >>> p = at.plot_sources_timeline(data, {"scores": at.detect_episodes(data, rule="strauss-1sd"),
    ...                                     "PSQ": at.detect_episodes(psq, method="self-report")})
    >>> sorted(p.data["lane"].unique().tolist())
    ['PSQ', 'scores']
    """
    ad = as_alliance_data(data)
    if not isinstance(sources, Mapping) or not sources:
        raise AllianceDataError("sources must be a dict {name: episode table, ...}.")
    coverage = dict(coverage or {})
    names = [str(n) for n in sources]
    tables = {n: _prepared(n, sources[n]) for n in sources}
    covs = {}
    for n in sources:
        cov = _coverage_of(n, sources[n], coverage.get(n))
        if cov is None:
            cov = _coverage_of(n, sources[n], ad)
        covs[n] = cov
    chosen = _chosen_patients(ad, tables, patients)
    frame = ad.frame[ad.frame["patient"].isin(chosen)]
    if "rater" in frame.columns and frame["rater"].nunique() > 1:
        raise AllianceDataError("The alliance data have several raters; select one with "
                                "data.select_rater(...) first.")
    low, high = (ad.scale.low, ad.scale.high) if ad.scale is not None else \
        (float(np.nanmin(ad.frame["alliance"])), float(np.nanmax(ad.frame["alliance"])))
    gap = (high - low) * 0.2
    lanes = names + (["immediate strategies", "expressive strategies"]
                     if strategies is not None else [])
    lane_y = {n: low - (i + 1) * gap for i, n in enumerate(lanes)}

    scores = frame[["patient", "session", "alliance"]].copy()
    scores["run"] = scores["alliance"].isna().groupby(scores["patient"]).cumsum()
    scores = scores.dropna(subset=["alliance"])
    boxes, points, spans = _lane_frames(names, sources, tables, covs, chosen, lane_y)
    order = [str(p) for p in chosen]
    for df in (scores, boxes, points, spans):
        df["patient"] = pd.Categorical(df["patient"].astype(str), categories=order)
    points["status"] = pd.Categorical(points["status"], categories=list(_STATUS_COLOURS))

    ticks = [v for v in np.arange(np.ceil(low), np.floor(high) + 1)]
    breaks = ticks + [lane_y[n] for n in lanes]
    labels = [f"{v:g}" for v in ticks] + lanes
    nrow = int(np.ceil(len(chosen) / max(1, ncol)))
    width = min(7.5, 1.6 + 3.0 * min(ncol, len(chosen)))
    height = 0.9 + nrow * (1.3 + 0.22 * len(lanes))
    p = (
        p9.ggplot(points)
        + p9.geom_hline(yintercept=low - gap / 2, color="#BBBBBB", size=0.3)
        + p9.geom_tile(p9.aes("session", "y"), data=boxes, width=0.9, height=gap * 0.7,
                       fill="#E5E5E5")
        + p9.geom_segment(p9.aes(x="x", xend="xend", y="y", yend="y"), data=spans,
                          color=OKABE_ITO["sky_blue"], size=1.2)
        + p9.geom_line(p9.aes("session", "alliance", group="run"), data=scores,
                       color=OKABE_ITO["black"], size=0.5)
        + p9.geom_point(p9.aes("session", "alliance"), data=scores, size=0.8)
        + p9.geom_point(p9.aes("session", "y", color="status", shape="status"), size=2.2,
                        fill="white")
        + p9.scale_color_manual(values=_STATUS_COLOURS, drop=False, name="rupture")
        + p9.scale_shape_manual(values=_STATUS_SHAPES, drop=False, name="rupture")
        + p9.scale_y_continuous(breaks=breaks, labels=labels,
                                limits=(low - (len(lanes) + 0.5) * gap, high))
        + p9.facet_wrap("patient", ncol=ncol, labeller=lambda s: f"patient {s}")
        + p9.labs(x="session", y="alliance / source")
        + theme_alliance(base_size, figure_size=(width, height))
    )
    if strategies is not None:  # one lane per class, a tick per session with strategies
        tk = strategy_ticks(strategies, chosen)
        tk["y"] = tk["strategy_class"].map(lambda c: lane_y[f"{c} strategies"])
        tk["patient"] = pd.Categorical(tk["patient"].astype(str), categories=order)
        for cls in ("immediate", "expressive"):
            p += p9.geom_point(p9.aes("session", "y", size="n"),
                               data=tk[tk["strategy_class"] == cls], shape="|",
                               color=CLASS_COLOURS[cls], show_legend=False)
        p += p9.scale_size_continuous(range=(3, 6), guide=None)
    return p


def _chosen_patients(ad, tables: dict[str, pd.DataFrame], patients) -> list:
    """The patients to draw: those given (checked), else the 4 analysed with most sources."""
    if patients is None:
        counts = pd.Series(0, index=ad.analysed_patients)
        for t in tables.values():
            counts = counts.add(pd.Series(1, index=pd.unique(t["patient"])), fill_value=0)
        counts = counts.reindex(ad.analysed_patients).fillna(0)
        return counts.sort_values(ascending=False, kind="stable").index[:4].tolist()
    chosen = list(patients)
    unknown = [p for p in chosen if p not in set(ad.patients)]
    if unknown:
        raise AllianceDataError(f"Patients {unknown} are not in the data.")
    return chosen


def _lane_frames(names, sources, tables, covs, chosen, lane_y):
    """Per-source lane layers of the chosen patients: coverage boxes, rupture points, repair spans."""
    boxes, points, spans = [], [], []
    for n in names:
        cov = covs[n]
        if cov is not None:
            c = cov[cov["patient"].isin(chosen)]
            boxes.append(pd.DataFrame({"patient": c["patient"].to_numpy(),
                                       "session": c["session"].to_numpy(), "y": lane_y[n]}))
        t = tables[n]
        t = t[t["patient"].isin(chosen)]
        rep = t["repaired"]
        status = np.where(rep.isna(), "repair unknown",
                          np.where(rep.fillna(False), "repaired", "unrepaired"))
        points.append(pd.DataFrame({"patient": t["patient"].to_numpy(),
                                    "session": t["rupture_session"].to_numpy(),
                                    "y": lane_y[n], "status": status, "lane": n}))
        orig = sources[n]
        if "repair_session" in orig.columns:
            o = orig[orig["patient"].isin(chosen)]
            rs = pd.to_numeric(o["repair_session"]).to_numpy(dtype="float64")
            start = pd.to_numeric(o["rupture_session"]).to_numpy(dtype="float64")
            keep = rs > start
            spans.append(pd.DataFrame({"patient": o["patient"].to_numpy()[keep],
                                       "x": start[keep], "xend": rs[keep], "y": lane_y[n]}))
    boxes = pd.concat(boxes, ignore_index=True) if boxes else \
        pd.DataFrame(columns=["patient", "session", "y"])
    points = pd.concat(points, ignore_index=True)
    spans = pd.concat(spans, ignore_index=True) if spans else \
        pd.DataFrame(columns=["patient", "x", "xend", "y"])
    return boxes, points, spans
