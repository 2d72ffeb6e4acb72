"""Figures with plotnine: trajectories, cohort means, episode summaries, forest plots.

Every function returns a :class:`plotnine.ggplot`, so it can be extended with
``+`` (``+ p9.labs(title=...)``, ``+ p9.theme(...)``) and saved with
``.save("fig.png", dpi=300)`` (PNG, SVG and PDF work).

Colours and theme come from :mod:`alliancetrack.plotting.style` (Okabe-Ito,
8-pt text); the default figure sizes grow with the number of panels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotnine as p9

from alliancetrack.errors import AllianceDataError
from alliancetrack.plotting.style import COLOUR_CYCLE, GROUP_COLOURS, OKABE_ITO, theme_alliance
from alliancetrack.predictors import episode_predictors
from alliancetrack.reading.alliance import AllianceData, as_alliance_data

__all__ = [
    "OKABE_ITO",
    "GROUP_COLOURS",
    "changepoint_segments",
    "plot_trajectories",
    "plot_cohort",
    "plot_episode_summary",
    "plot_coefficients",
    "theme_alliance",
]

_GROUP_LABELS = {"no_rupture": "no rupture", "repaired": "repaired",
                 "unrepaired": "unrepaired"}
_METHOD_CYCLE = COLOUR_CYCLE[:8]
_EPISODE_FILL = {"repaired": OKABE_ITO["sky_blue"], "unrepaired": OKABE_ITO["vermillion"]}
_EPISODE_LABELS = {"repaired": "rupture → repair", "unrepaired": "unrepaired rupture"}
#: Patients shown by :func:`plot_trajectories` when none are chosen.
DEFAULT_MAX_PATIENTS = 12


# --------------------------------------------------------------------------- helpers
def _one_method(episodes: pd.DataFrame, method: str | None) -> pd.DataFrame:
    methods = episodes["method"].dropna().unique().tolist() if "method" in episodes else []
    if method is not None:
        if method not in methods and len(episodes):
            raise AllianceDataError(
                f"method {method!r} is not in the episode table; it has {methods}."
            )
        return episodes.loc[episodes["method"] == method]
    if len(methods) > 1:
        raise AllianceDataError(
            f"The episode table mixes methods {methods}; choose one with method=... "
            "(plot_episode_summary compares methods)."
        )
    return episodes


def _choose_patients(ad: AllianceData, episodes: pd.DataFrame | None, patients, group,
                     sample, seed, predictors: pd.DataFrame | None) -> list:
    available = list(ad.patients)
    if patients is not None:
        chosen = [patients] if np.isscalar(patients) else list(patients)
        if not chosen:
            raise ValueError("patients=[] selects nobody to plot; give patient ids, or leave "
                             "patients=None for the first 12 analysed patients.")
        have = set(available)
        unknown = [p for p in chosen if p not in have]
        if unknown:
            raise AllianceDataError(f"patients not in the data: {unknown[:10]}.")
    elif group is not None:
        if predictors is None:
            if episodes is None:
                raise AllianceDataError(
                    "choosing patients by group needs the episodes (or predictors=...).")
            predictors = episode_predictors(ad, episodes)
        groups = [group] if isinstance(group, str) else list(group)
        bad = [g for g in groups if g not in GROUP_COLOURS]
        if bad:
            raise AllianceDataError(
                f"group must be among {list(GROUP_COLOURS)}, got {bad}.")
        chosen = predictors.loc[predictors["group"].isin(groups), "patient"].tolist()
        if not chosen:
            raise AllianceDataError(f"no patient is in group(s) {groups}.")
    else:
        chosen = [p for p in available if p in set(ad.analysed_patients)] or available
    if sample is not None:
        k = int(sample)
        if k < 1:
            raise AllianceDataError(f"sample must be a positive number of patients, got {sample}.")
        if k < len(chosen):
            rng = np.random.default_rng(seed)
            idx = np.sort(rng.choice(len(chosen), size=k, replace=False))
            chosen = [chosen[i] for i in idx]
    elif patients is None and len(chosen) > DEFAULT_MAX_PATIENTS:
        chosen = chosen[:DEFAULT_MAX_PATIENTS]
    return chosen


def _path_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """Rated sessions with a ``run`` id that changes after every missing rating."""
    f = frame.sort_values(["patient", "session"], kind="stable")
    gap = f["alliance"].isna()
    run = gap.groupby(f["patient"], sort=False, observed=True).cumsum()
    out = f.loc[~gap].copy()
    out["run"] = out["patient"].astype(str) + "#" + run.loc[~gap].astype(str)
    return out


def changepoint_segments(data, *, model: str = "l2", penalty: str | float = "bic",
                         bic_factor: float = 2.0, min_size: int = 1) -> pd.DataFrame:
    """Segments of constant level found by change-point detection, with their means.

    Uses the same segmentation as ``detect_episodes(method="changepoint")``
    with the default options (PELT, ``jump=1``, BIC penalty from each
    patient's robust noise SD, pooled across patients for short or coarse
    series), on the rated sessions of each analysed patient.

    Parameters
    ----------
    data : AllianceData or DataFrame
    model : {"l2", "l1", "rbf", "normal"}, default "l2"
    penalty : "bic" or float, default "bic"
    bic_factor : float, default 2.0
    min_size : int, default 1

    Returns
    -------
    pandas.DataFrame
        ``patient, segment, start_session, end_session, n, mean``.

    Examples
    --------
    >>> import pandas as pd
    >>> from alliancetrack.plotting.trajectories import changepoint_segments
    >>> df = pd.DataFrame({"patient": 1, "session": range(1, 11),
    ...                    "alliance": [4.0, 4.1, 3.9, 4.0, 2.1, 2.0, 2.2, 4.0, 3.9, 4.1]})
    >>> changepoint_segments(df)[["start_session", "end_session", "mean"]].round(2)
       start_session  end_session  mean
    0              1            4   4.0
    1              5            7   2.1
    2              8           10   4.0
    """
    from alliancetrack.detection.changepoint import (  # noqa: PLC0415 - ruptures is imported only when used
        MIN_NOISE_N,
        ChangepointSegmenter,
        bic_penalty,
        noise_sd,
    )

    ad = as_alliance_data(data)
    frame = ad.analysed_frame
    frame = frame.loc[frame["alliance"].notna(), ["patient", "session", "alliance"]]
    series = [(p, g["session"].to_numpy(), g["alliance"].to_numpy(dtype=float))
              for p, g in frame.groupby("patient", sort=False)]
    sig = np.array([noise_sd(x) for _, _, x in series])
    # the detector pools the noise SD of patients whose own estimate is unreliable
    reliable = np.array([
        len(x) >= MIN_NOISE_N and np.median(np.abs(np.diff(x))) > 1e-9 * max(1, np.abs(x).max())
        for _, _, x in series
    ], dtype=bool)
    if reliable.any():
        sig = np.where(reliable, sig, float(np.median(sig[reliable])))
    rows = []
    for (p, s, x), sd in zip(series, sig, strict=True):
        sd = sd if sd > 0 else 1e-3 * max(1.0, float(np.abs(x).max()))
        if isinstance(penalty, str):
            pen = float(bic_penalty(sd, max(len(x), 2), model, bic_factor))
        else:
            pen = float(penalty)
        bkps = ChangepointSegmenter(model=model, min_size=min_size).fit(x).predict(pen=pen)
        start = 0
        for k, end in enumerate(bkps, start=1):
            rows.append({"patient": p, "segment": k, "start_session": s[start],
                         "end_session": s[end - 1], "n": end - start,
                         "mean": float(np.mean(x[start:end]))})
            start = end
    cols = ["patient", "segment", "start_session", "end_session", "n", "mean"]
    return pd.DataFrame(rows, columns=cols)


def _panel_size(n_panels: int, ncol: int) -> tuple[float, float]:
    ncol = max(1, min(ncol, n_panels))
    nrow = math.ceil(n_panels / ncol)
    width = min(7.0, 0.6 + 1.65 * ncol)
    return width, 0.9 + 1.35 * nrow


def _probability_layers(probabilities: pd.DataFrame, chosen: list,
                        cat: pd.CategoricalDtype) -> list:
    """Per-session shading by ``p_rupture`` (a rect layer and its alpha scale)."""
    if not isinstance(probabilities, pd.DataFrame):
        raise ValueError("probabilities must be a DataFrame with columns patient, session, "
                         f"p_rupture (from at.rupture_probabilities), got "
                         f"{type(probabilities).__name__}.")
    need = ["patient", "session", "p_rupture"]
    lacking = [c for c in need if c not in probabilities.columns]
    if lacking:
        raise AllianceDataError(
            f"probabilities lacks column(s) {lacking}; it needs {need} "
            "(the output of at.rupture_probabilities).")
    pr = probabilities.loc[probabilities["patient"].isin(chosen), need].copy()
    pr.attrs = {}
    pr["p_rupture"] = pd.to_numeric(pr["p_rupture"], errors="coerce")
    pr = pr.loc[pr["p_rupture"].notna()]
    bad = pr.loc[~pr["p_rupture"].between(0.0, 1.0)]
    if len(bad):
        rows = bad[["patient", "session"]].head(5).to_dict("records")
        raise AllianceDataError(
            f"p_rupture must lie in [0, 1]; {len(bad)} row(s) do not, e.g. {rows}.")
    pr["patient"] = pr["patient"].astype(cat)
    pr["xmin"] = pr["session"] - 0.5
    pr["xmax"] = pr["session"] + 0.5
    return [
        p9.geom_rect(p9.aes(xmin="xmin", xmax="xmax", alpha="p_rupture"), data=pr,
                     ymin=-np.inf, ymax=np.inf, fill=OKABE_ITO["reddish_purple"],
                     inherit_aes=False),
        p9.scale_alpha_continuous(range=(0.0, 0.5), limits=(0.0, 1.0), name="P(rupture)"),
    ]


# --------------------------------------------------------------------------- trajectories
def plot_trajectories(
    data,
    episodes: pd.DataFrame | None = None,
    patients: Sequence | None = None,
    ncol: int = 4,
    group: str | Sequence[str] | None = None,
    sample: int | None = None,
    seed: int | None = None,
    changepoints: bool | Mapping[str, Any] | pd.DataFrame = False,
    *,
    method: str | None = None,
    predictors: pd.DataFrame | None = None,
    pre_level: bool = True,
    base_size: float = 8,
    probabilities: pd.DataFrame | None = None,
) -> p9.ggplot:
    """Alliance trajectories, one panel per patient, with rupture-repair episodes.

    Each panel shows the ratings over sessions (points joined by lines; the
    line breaks at a missing rating, and missing sessions are ticked on the
    session axis).  Repaired episodes are shaded blue from the rupture session
    to the repair session; unrepaired ruptures are shaded vermillion from the
    rupture session to the end of treatment and marked with a cross.  The
    pre-rupture reference level is a dashed segment.  Optionally, the segment
    means of change-point detection are drawn as orange steps, and each rated
    session is shaded (reddish purple, more opaque = more probable) by its
    posterior probability of lying in a rupture.

    Parameters
    ----------
    data : AllianceData or DataFrame
        The ratings (from :func:`alliancetrack.read_alliance`).
    episodes : DataFrame, optional
        An episode table of one method (or give ``method=`` to pick one).
    patients : sequence, optional
        Patient ids to show, in this order.
    ncol : int, default 4
        Panels per row.
    group : str or sequence of str, optional
        Show the patients of predictor group(s) ``"no_rupture"``,
        ``"repaired"``, ``"unrepaired"`` (computed from ``episodes`` unless
        ``predictors=`` is given).
    sample : int, optional
        Show a random sample of this many of the chosen patients.
    seed : int, optional
        Seed of the random sample (same seed, same patients).
    changepoints : bool, dict or DataFrame, default False
        Overlay change-point segment means: ``True`` with the default
        detector options, a dict of options for :func:`changepoint_segments`,
        or a table from it.
    method : str, optional
        Method to show when ``episodes`` holds several.
    predictors : DataFrame, optional
        Output of :func:`alliancetrack.episode_predictors`, for ``group=``.
    pre_level : bool, default True
        Draw the pre-rupture level.
    base_size : float, default 8
        Font size (points).
    probabilities : DataFrame, optional
        Per-session rupture probabilities, ``patient, session, p_rupture``
        (the output of :func:`alliancetrack.rupture_probabilities`): each
        session of the shown patients is shaded from ``session - 0.5`` to
        ``session + 0.5`` with opacity proportional to ``p_rupture``
        (transparent at 0, alpha 0.5 at 1).  Sessions with a NaN
        probability (missing ratings) are not shaded.

    Returns
    -------
    plotnine.ggplot
        Without a choice, the first 12 analysed patients are shown.

    Examples
    --------
    >>> import alliancetrack as at
    >>> ex = at.datasets.load_example()
    >>> data = at.read_alliance(ex.sessions, therapist="therapist", scale="wai-sr")
    >>> ep = at.detect_episodes(data, rule="stiles-2sd")
    >>> p = at.plot_trajectories(data, ep, patients=[1, 5, 6], ncol=3)
    >>> p.data["patient"].cat.categories.tolist()
    [1, 5, 6]
    >>> p = at.plot_trajectories(data, ep, group="unrepaired", sample=4, seed=1)
    >>> p.data["patient"].nunique()
    4
    >>> probs = at.rupture_probabilities(data, n_starts=1)
    >>> p = at.plot_trajectories(data, patients=[1, 5], probabilities=probs)
    >>> type(p.layers[0].geom).__name__
    'geom_rect'
    """
    ad = as_alliance_data(data)
    if episodes is not None:
        episodes = _one_method(episodes, method)
    chosen = _choose_patients(ad, episodes, patients, group, sample, seed, predictors)
    cat = pd.CategoricalDtype(chosen, ordered=True)

    frame = ad.frame.loc[ad.frame["patient"].isin(chosen),
                         ["patient", "session", "alliance"]].copy()
    frame["patient"] = frame["patient"].astype(cat)
    lines = _path_runs(frame)
    missing = frame.loc[frame["alliance"].isna()]

    p = p9.ggplot(frame, p9.aes("session", "alliance"))
    if probabilities is not None:
        p += _probability_layers(probabilities, chosen, cat)
    legend_fill: dict[str, str] = {}
    if episodes is not None and len(episodes):
        layers, legend_fill = _episode_layers(episodes, chosen, cat, frame, pre_level)
        p += layers
    if changepoints is not False and changepoints is not None:
        p += _changepoint_layers(ad, changepoints, chosen, cat)
    p += p9.geom_path(p9.aes(group="run"), data=lines, colour="#333333", size=0.45)
    p += p9.geom_point(data=lines, colour="#000000", size=0.9)
    if len(missing):
        p += p9.geom_rug(p9.aes(x="session"), data=missing, sides="b", colour="#888888",
                         length=0.06, size=0.5, inherit_aes=False)
    if legend_fill:
        p += p9.scale_fill_manual(values=legend_fill, name="",
                                  labels=[_EPISODE_LABELS[k] for k in legend_fill])
    ylabel = "Alliance" + (f" ({ad.scale.name})" if ad.scale is not None else "")
    width, height = _panel_size(len(chosen), ncol)
    p += p9.facet_wrap("patient", ncol=min(ncol, len(chosen)) or 1,
                       labeller=lambda s: f"patient {s}")
    p += p9.labs(x="Session", y=ylabel)
    p += theme_alliance(base_size, figure_size=(width, height),
                        legend_title=p9.element_blank())
    if ad.scale is not None:
        p += p9.scale_y_continuous(limits=(ad.scale.low, ad.scale.high))
    return p


# --------------------------------------------------------------------------- cohort
def plot_cohort(data, predictors: pd.DataFrame, *, level: float = 0.95, min_n: int = 5,
                base_size: float = 8) -> p9.ggplot:
    """All trajectories (faint) with the mean trajectory per group and its confidence band.

    Groups are those of :func:`alliancetrack.episode_predictors`: no rupture,
    all ruptures repaired, any rupture unrepaired.  The band is the pointwise
    t-based confidence interval of the mean at each session; sessions where a
    group has fewer than ``min_n`` ratings get no mean.  The legend gives the
    number of patients per group.

    Parameters
    ----------
    data : AllianceData or DataFrame
    predictors : DataFrame
        From :func:`alliancetrack.episode_predictors` (one method).
    level : float, default 0.95
        Confidence level of the band.
    min_n : int, default 5
        Minimum number of ratings at a session for a group mean.
    base_size : float, default 8

    Returns
    -------
    plotnine.ggplot

    Examples
    --------
    >>> import alliancetrack as at
    >>> ex = at.datasets.load_example()
    >>> data = at.read_alliance(ex.sessions, therapist="therapist", scale="wai-sr")
    >>> pred = at.episode_predictors(data, at.detect_episodes(data))
    >>> p = at.plot_cohort(data, pred)
    >>> sorted(p.data["group"].unique())
    ['no rupture', 'repaired', 'unrepaired']
    """
    from scipy import stats  # noqa: PLC0415

    ad = as_alliance_data(data)
    if not {"patient", "group"} <= set(predictors.columns):
        raise AllianceDataError(
            "predictors must have columns patient and group (from at.episode_predictors).")
    if "method" in predictors and predictors["method"].dropna().nunique() > 1:
        raise AllianceDataError("predictors mix several methods; pass one method's table.")
    grp = predictors.dropna(subset=["group"]).set_index("patient")["group"]
    frame = ad.frame.loc[ad.frame["patient"].isin(grp.index),
                         ["patient", "session", "alliance"]].copy()
    order = [g for g in GROUP_COLOURS if g in set(grp)]
    labels = [_GROUP_LABELS[g] for g in order]
    frame["group"] = pd.Categorical(frame["patient"].map(grp).map(_GROUP_LABELS),
                                    categories=labels)
    lines = _path_runs(frame)
    rated = frame.dropna(subset=["alliance"])
    summ = rated.groupby(["group", "session"], observed=True)["alliance"].agg(
        ["mean", "std", "count"]).reset_index()
    summ = summ.loc[summ["count"] >= min_n].copy()
    tq = stats.t.ppf(0.5 + level / 2, np.maximum(summ["count"] - 1, 1))
    half = tq * summ["std"] / np.sqrt(summ["count"])
    summ["ci_low"] = summ["mean"] - half
    summ["ci_high"] = summ["mean"] + half
    counts = grp.value_counts()
    colours = {_GROUP_LABELS[g]: GROUP_COLOURS[g] for g in order}
    legend = [f"{_GROUP_LABELS[g]} ({counts[g]})" for g in order]

    p = (
        p9.ggplot(frame, p9.aes("session", "alliance", colour="group"))
        + p9.geom_path(p9.aes(group="run"), data=lines, alpha=0.12, size=0.3)
        + p9.geom_ribbon(p9.aes(x="session", ymin="ci_low", ymax="ci_high", fill="group"),
                         data=summ, alpha=0.25, colour=None, inherit_aes=False)
        + p9.geom_line(p9.aes(x="session", y="mean", colour="group"), data=summ, size=0.9,
                       inherit_aes=False)
        + p9.scale_colour_manual(values=colours, labels=legend, name="")
        + p9.scale_fill_manual(values=colours, labels=legend, name="")
        + p9.labs(x="Session",
                  y="Alliance" + (f" ({ad.scale.name})" if ad.scale is not None else ""))
        + theme_alliance(base_size, figure_size=(3.5, 3.0), legend_title=p9.element_blank())
    )
    if ad.scale is not None:
        p += p9.scale_y_continuous(limits=(ad.scale.low, ad.scale.high))
    return p


# --------------------------------------------------------------------------- episode summary
_SUMMARY_PANELS = {
    "depth": "Depth (scale points)",
    "sessions_to_repair": "Sessions to repair",
    "timing": "Timing (phase of treatment)",
}


def _rupture_phase(ep: pd.DataFrame, ad: AllianceData) -> pd.Series:
    """Rank of the rupture session among the patient's rated sessions / n rated."""
    rated = ad.frame.loc[ad.frame["alliance"].notna(), ["patient", "session"]].copy()
    rated["rank"] = rated.groupby("patient", sort=False).cumcount() + 1
    rated["n"] = rated.groupby("patient", sort=False)["session"].transform("size")
    rated["phase"] = rated["rank"] / rated["n"]
    key = ep[["patient", "rupture_session"]].reset_index()
    merged = key.merge(rated[["patient", "session", "phase"]], how="left",
                       left_on=["patient", "rupture_session"], right_on=["patient", "session"])
    return pd.Series(merged["phase"].to_numpy(), index=merged["index"].to_numpy())


def plot_episode_summary(episodes: pd.DataFrame, data=None, *,
                         base_size: float = 8) -> p9.ggplot:
    """Distribution of episode depth, duration and timing, by method.

    Three panels, one row per method: depth (``pre_level - nadir_level``),
    duration (``sessions_to_repair``, repaired episodes only) and timing of
    the rupture.  Timing is the phase of treatment (rank of the rupture
    session among the patient's rated sessions divided by their number, as
    ``first_rupture_phase`` in :func:`alliancetrack.episode_predictors`) when
    ``data`` is given, else the rupture session number.  Boxes show the
    quartiles; every episode is a point; the number of episodes of each method
    is given beside its name.

    Parameters
    ----------
    episodes : DataFrame
        One episode table, or several methods' tables concatenated
        (``pd.concat([ep1, ep2])``).
    data : AllianceData or DataFrame, optional
        The ratings, for timing as a phase of treatment.
    base_size : float, default 8

    Returns
    -------
    plotnine.ggplot

    Examples
    --------
    >>> import pandas as pd, alliancetrack as at
    >>> ex = at.datasets.load_example()
    >>> data = at.read_alliance(ex.sessions, therapist="therapist", scale="wai-sr")
    >>> eps = pd.concat([at.detect_episodes(data, rule=r) for r in ["stiles-2sd", "rci"]])
    >>> p = at.plot_episode_summary(eps, data)
    >>> p.data["method"].cat.categories.tolist()  # first method on top
    ['rules:rci (n=103)', 'rules:stiles-2sd (n=118)']
    """
    needed = {"method", "depth", "rupture_session", "repaired"}
    if not needed <= set(episodes.columns):
        raise AllianceDataError(
            f"episodes lack column(s) {sorted(needed - set(episodes.columns))}; pass episode "
            "tables from at.detect_episodes.")
    ep = episodes.reset_index(drop=True).copy()
    ep.attrs = {}
    if "sessions_to_repair" not in ep:
        ep["sessions_to_repair"] = (ep["repair_session"] - ep["rupture_session"]).where(
            ep["repaired"].astype(bool))
    if data is not None:
        ep["timing"] = _rupture_phase(ep, as_alliance_data(data))
        timing_label = _SUMMARY_PANELS["timing"]
    else:
        ep["timing"] = ep["rupture_session"]
        timing_label = "Timing (rupture session)"
    methods = list(dict.fromkeys(ep["method"].tolist()))
    labels = {"depth": _SUMMARY_PANELS["depth"],
              "sessions_to_repair": _SUMMARY_PANELS["sessions_to_repair"],
              "timing": timing_label}
    long = ep.melt(id_vars=["method"], value_vars=list(labels), var_name="measure")
    long = long.dropna(subset=["value"])
    long["value"] = long["value"].astype(float)
    long["measure"] = pd.Categorical(long["measure"].map(labels),
                                     categories=list(labels.values()))
    n_ep = ep.groupby("method", sort=False).size()
    names = {m: f"{m} (n={n_ep[m]})" for m in methods}
    long["method"] = pd.Categorical(long["method"].map(names),
                                    categories=[names[m] for m in methods[::-1]])
    colours = dict(zip(names.values(), _METHOD_CYCLE * (1 + len(methods) // 8), strict=False))

    height = 0.9 + 0.32 * len(methods)
    p = (
        p9.ggplot(long, p9.aes("method", "value", colour="method"))
        + p9.geom_boxplot(outlier_shape="", width=0.6, size=0.4, fill="white")
        + p9.geom_jitter(width=0.18, height=0, size=0.6, alpha=0.45, random_state=1)
        + p9.facet_wrap("measure", scales="free_x", nrow=1)
        + p9.coord_flip()
        + p9.scale_colour_manual(values=colours, guide=None)
        + p9.labs(x="", y="")
        + theme_alliance(base_size, figure_size=(7.0, max(2.0, height)))
    )
    return p


# --------------------------------------------------------------------------- coefficients
def _coef_table(fit_or_coefs) -> pd.DataFrame:
    coefs = getattr(fit_or_coefs, "coefs", fit_or_coefs)
    if isinstance(coefs, pd.DataFrame) and "term" not in coefs and "contrast" in coefs:
        coefs = coefs.assign(term=coefs["contrast"])  # at.group_contrasts
    if not isinstance(coefs, pd.DataFrame):
        raise AllianceDataError(
            "plot_coefficients needs a fitted result with .coefs or a DataFrame with columns "
            "term, estimate, ci_low, ci_high.")
    missing = [c for c in ("term", "estimate", "ci_low", "ci_high") if c not in coefs]
    if missing:
        raise AllianceDataError(f"the coefficient table lacks column(s) {missing}.")
    return coefs.copy()


def plot_coefficients(fit_or_coefs, *, intercept: bool = False,
                      terms: Sequence[str] | None = None, xlabel: str = "Estimate (95% CI)",
                      base_size: float = 8) -> p9.ggplot:
    """Forest plot of a fitted model's coefficients with confidence intervals.

    Parameters
    ----------
    fit_or_coefs : result, DataFrame or dict
        A result with ``.coefs`` (from :func:`alliancetrack.outcome_model`,
        :func:`alliancetrack.fit_mixed`, ...), its ``coefs`` table (``term,
        estimate, ci_low, ci_high``; the table of
        :func:`alliancetrack.group_contrasts` works too, with its ``contrast``
        as the term), or a dict ``{label: result}`` to compare several models
        (coloured, side by side).
    intercept : bool, default False
        Show the intercept.
    terms : sequence of str, optional
        Terms to show, in this order (top to bottom).
    xlabel : str
        Axis title.
    base_size : float, default 8

    Returns
    -------
    plotnine.ggplot

    Examples
    --------
    >>> import pandas as pd, alliancetrack as at
    >>> coefs = pd.DataFrame({"term": ["(Intercept)", "n_repaired", "n_unrepaired"],
    ...                       "estimate": [10.0, -1.2, 2.5], "ci_low": [6.0, -2.3, 0.9],
    ...                       "ci_high": [14.0, -0.1, 4.1]})
    >>> p = at.plot_coefficients(coefs)
    >>> p.data["term"].tolist()
    ['n_repaired', 'n_unrepaired']
    """
    if isinstance(fit_or_coefs, Mapping):
        parts = []
        for label, fit in fit_or_coefs.items():
            parts.append(_coef_table(fit).assign(model=str(label)))
        coefs = pd.concat(parts, ignore_index=True)
    else:
        coefs = _coef_table(fit_or_coefs)
        coefs["model"] = "model"
    if not intercept:
        coefs = coefs.loc[~coefs["term"].isin(["(Intercept)", "Intercept", "const"])]
    if terms is not None:
        coefs = coefs.loc[coefs["term"].isin(list(terms))]
        order = list(terms)
    else:
        order = list(dict.fromkeys(coefs["term"].tolist()))
    if coefs.empty:
        raise AllianceDataError("no coefficient left to plot.")
    models = list(dict.fromkeys(coefs["model"].tolist()))
    coefs = coefs.reset_index(drop=True)
    k = len(models)
    coefs["term"] = pd.Categorical(coefs["term"], categories=order[::-1])  # first on top
    coefs["model"] = pd.Categorical(coefs["model"], categories=models[::-1])
    colours = (dict(zip(models, _METHOD_CYCLE * (1 + k // 8), strict=False)) if k > 1
               else {models[0]: "#000000"})
    dodge = p9.position_dodge(width=0.55)
    width = 3.5 if k == 1 else 4.5
    p = (
        p9.ggplot(coefs, p9.aes("term", "estimate", colour="model"))
        + p9.geom_hline(yintercept=0, linetype="dashed", colour="#7F7F7F", size=0.4)
        + p9.geom_pointrange(p9.aes(ymin="ci_low", ymax="ci_high"), position=dodge,
                             size=0.45, fatten=3)
        + p9.coord_flip()
        + p9.scale_colour_manual(values=colours, name="", breaks=models,
                                 guide=None if k == 1 else "legend")
        + p9.labs(x="", y=xlabel)
        + theme_alliance(base_size, figure_size=(width, 0.9 + 0.4 * len(order) * max(1, k / 2)),
                         legend_title=p9.element_blank())
    )
    return p


def _episode_layers(episodes: pd.DataFrame, chosen: list, cat: pd.CategoricalDtype,
                    frame: pd.DataFrame, pre_level: bool) -> tuple[list, dict[str, str]]:
    """Rupture-to-repair spans, pre-rupture levels and unrepaired-rupture crosses."""
    last = frame.groupby("patient", observed=True)["session"].max()
    ep = episodes.loc[episodes["patient"].isin(chosen)].copy()
    ep.attrs = {}
    ep["patient"] = ep["patient"].astype(cat)
    ep["status"] = np.where(ep["repaired"].astype(bool), "repaired", "unrepaired")
    end = ep["repair_session"].where(ep["repaired"].astype(bool))
    ep["span_end"] = end.fillna(ep["patient"].map(last).astype(float))
    ep["xmin"] = ep["rupture_session"] - 0.5
    ep["xmax"] = ep["span_end"] + 0.5
    if not len(ep):
        return [], {}
    legend_fill = {k: v for k, v in _EPISODE_FILL.items() if k in set(ep["status"])}
    layers = [p9.geom_rect(
        p9.aes(xmin="xmin", xmax="xmax", fill="status"), data=ep,
        ymin=-np.inf, ymax=np.inf, alpha=0.25, inherit_aes=False,
    )]
    if pre_level:
        pre = ep.assign(x0=ep["rupture_session"] - 1.0, x1=ep["span_end"])
        layers.append(p9.geom_segment(
            p9.aes(x="x0", xend="x1", y="pre_level", yend="pre_level"), data=pre,
            linetype="dashed", colour="#555555", size=0.4, inherit_aes=False,
        ))
    unrep = ep.loc[ep["status"] == "unrepaired"].merge(
        frame[["patient", "session", "alliance"]],
        left_on=["patient", "rupture_session"], right_on=["patient", "session"], how="left",
    )
    if len(unrep):
        layers.append(p9.geom_point(
            p9.aes("rupture_session", "alliance"), data=unrep, shape="x",
            colour=OKABE_ITO["vermillion"], size=3.2, stroke=0.9, inherit_aes=False,
        ))
    return layers, legend_fill


def _changepoint_layers(ad: AllianceData, changepoints, chosen: list,
                        cat: pd.CategoricalDtype) -> list:
    """Change-point segment levels (given, or detected on the chosen patients)."""
    if isinstance(changepoints, pd.DataFrame):
        segs = changepoints
    else:
        opts = dict(changepoints) if isinstance(changepoints, Mapping) else {}
        sub = AllianceData(frame=ad.frame.loc[ad.frame["patient"].isin(chosen)],
                           excluded=ad.excluded, scale=ad.scale, patients=ad.patients,
                           min_timepoints=ad.min_timepoints,
                           higher_is_better=ad.higher_is_better)
        segs = changepoint_segments(sub if len(chosen) < len(ad.patients) else ad, **opts)
    segs = segs.loc[segs["patient"].isin(chosen)].copy()
    segs["patient"] = segs["patient"].astype(cat)
    segs["x0"] = segs["start_session"] - 0.5
    segs["x1"] = segs["end_session"] + 0.5
    segs["overlay"] = "change-point level"
    return [
        p9.geom_segment(
            p9.aes(x="x0", xend="x1", y="mean", yend="mean", colour="overlay"), data=segs,
            size=1.0, alpha=0.85, inherit_aes=False,
        ),
        p9.scale_colour_manual(values={"change-point level": OKABE_ITO["orange"]}),
    ]
