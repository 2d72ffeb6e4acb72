"""Figures of the validation tools (plotnine, Okabe-Ito colours).

* :func:`plot_validation`: detection accuracy against signal-to-noise by
  method (from :func:`alliancetrack.validation_study`).
* :func:`plot_power`: power against the number of patients, with detected and
  with true counts (from :func:`alliancetrack.power_analysis`).
* :func:`plot_specification_curve`: the estimate of interest under every
  rupture definition (from :func:`alliancetrack.sensitivity_analysis`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from plotnine import (
    aes,
    coord_flip,
    element_blank,
    element_text,
    facet_wrap,
    geom_errorbar,
    geom_hline,
    geom_line,
    geom_point,
    geom_pointrange,
    ggplot,
    labs,
    scale_color_manual,
    scale_linetype_manual,
    scale_shape_manual,
    scale_x_continuous,
    scale_x_log10,
    scale_y_continuous,
)

from alliancetrack.plotting.style import OKABE_ITO, colours, theme_alliance

__all__ = ["plot_power", "plot_specification_curve", "plot_validation"]

_METRIC_LABELS = {
    "f1": "F1 (rupture onsets)", "precision": "Precision", "recall": "Recall",
    "repaired_accuracy": "Repaired/unrepaired accuracy", "patient_kappa": "Patient-level kappa",
    "timing_abs_error": "Mean absolute timing error (sessions)",
    "depth_bias": "Depth bias (scale points)",
}


def _theme():
    return theme_alliance(10, strip_background=element_blank(),
                          strip_text=element_text(weight="bold"))


_colours = colours


def plot_validation(table: pd.DataFrame, metric: str = "f1") -> ggplot:
    """Detection accuracy against signal-to-noise (depth / noise SD), one line per method.

    One panel per dip depth: at a given signal-to-noise ratio, shallow dips
    sit closer to the scale's ceiling and floor grid, so depth matters on its
    own.

    Parameters
    ----------
    table : pandas.DataFrame
        ``ValidationResult.table`` (``noise_sd, depth, snr, method`` and the
        metric).
    metric : str, default "f1"
        Any metric column, e.g. ``"precision"``, ``"recall"``,
        ``"repaired_accuracy"``.

    Returns
    -------
    plotnine.ggplot

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"noise_sd": [0.1, 0.2] * 2, "depth": 1.0, "snr": [10, 5] * 2,
    ...                   "method": ["a", "a", "b", "b"], "f1": [0.9, 0.7, 0.8, 0.4]})
    >>> p = plot_validation(t)
    >>> type(p).__name__
    'ggplot'
    """
    if metric not in table:
        raise ValueError(f"metric {metric!r} is not a column of the table.")
    df = table.copy()
    methods = list(dict.fromkeys(df["method"]))
    df["method"] = pd.Categorical(df["method"], categories=methods)
    df["panel"] = pd.Categorical([f"dip depth {d:g}" for d in df["depth"]],
                                 categories=[f"dip depth {d:g}" for d in sorted(set(df["depth"]))])
    snr = np.sort(df["snr"].unique())
    breaks = [b for b in (0.5, 1, 2, 3, 5, 10, 20, 50) if snr.min() / 1.2 <= b <= snr.max() * 1.2]
    # a log axis needs two breaks at least (mizani's minor breaks)
    x_scale = scale_x_log10(breaks=breaks) if len(breaks) >= 2 else \
        scale_x_log10(breaks=list(snr)) if len(snr) >= 2 else scale_x_continuous(breaks=list(snr))
    p = (
        ggplot(df, aes("snr", metric, colour="method", shape="method"))
        + geom_point(size=2)
        + facet_wrap("~panel", nrow=1)
        + x_scale
        + scale_color_manual(values=_colours(len(methods)))
        + scale_shape_manual(values=["o", "s", "^", "D", "v", "P", "X", "*", "h"][:len(methods)])
        + labs(x="Signal-to-noise (dip depth / noise SD, log scale)",
               y=_METRIC_LABELS.get(metric, metric), colour="Method", shape="Method")
        + _theme()
    )
    if df.groupby(["panel", "method"], observed=True).size().max() > 1:
        p += geom_line(size=0.7)
    if metric in ("f1", "precision", "recall", "repaired_accuracy"):
        p += scale_y_continuous(limits=(0, 1))
    return p


def plot_power(table: pd.DataFrame, alpha: float = 0.05, target: float = 0.8) -> ggplot:
    """Power against the number of patients, with detected and with true counts.

    Error bars are ±1.96 Monte Carlo SEs.  The dashed line marks ``target``
    power, the dotted line ``alpha``.  A table of several detectors
    (concatenated ``PowerResult.table`` objects) gets one panel per detector.

    Parameters
    ----------
    table : pandas.DataFrame
        ``PowerResult.table``.
    alpha, target : float

    Returns
    -------
    plotnine.ggplot

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"n_patients": [50, 100] * 2, "counts": ["detected"] * 2 + ["true"] * 2,
    ...                   "power": [0.2, 0.4, 0.4, 0.7], "mc_se": 0.03})
    >>> type(plot_power(t)).__name__
    'ggplot'
    """
    df = table.copy()
    lab = {"detected": "detected episodes", "true": "true episodes"}
    df["counts"] = pd.Categorical(df["counts"].map(lab), categories=list(lab.values()))
    df["lo"] = (df["power"] - 1.96 * df["mc_se"]).clip(0, 1)
    df["hi"] = (df["power"] + 1.96 * df["mc_se"]).clip(0, 1)
    title, facets = None, None
    if "detector" in df:
        detectors = list(dict.fromkeys(df["detector"]))
        if len(detectors) == 1:
            title = f"Detector: {detectors[0]}"
        else:
            df["detector"] = pd.Categorical(df["detector"], categories=detectors)
            facets = facet_wrap("~detector", nrow=1)
    p = (
        ggplot(df, aes("n_patients", "power", colour="counts", linetype="counts"))
        + geom_hline(yintercept=target, linetype="dashed", colour="#999999")
        + geom_hline(yintercept=alpha, linetype="dotted", colour="#999999")
        + geom_line(size=0.8) + geom_point(size=2)
        + geom_errorbar(aes(ymin="lo", ymax="hi"), width=0, linetype="solid")
        + scale_x_continuous(breaks=sorted(df["n_patients"].unique()))
        + scale_y_continuous(limits=(0, 1), breaks=[0, 0.2, 0.4, 0.6, 0.8, 1.0])
        + scale_color_manual(values=[OKABE_ITO["vermillion"], OKABE_ITO["blue"]])
        + scale_linetype_manual(values=["solid", "dashed"])
        + labs(x="Patients", y="Power", colour="Counts from", linetype="Counts from",
               title=title)
        + _theme()
    )
    return p + facets if facets is not None else p


def plot_specification_curve(table: pd.DataFrame, term: str | None = None) -> ggplot:
    """The estimate (with its confidence interval) under every rupture definition.

    Definitions are sorted by estimate (a specification curve on its side);
    colour marks whether the estimate is significant.

    Parameters
    ----------
    table : pandas.DataFrame
        ``SensitivityResult.table``.
    term : str, optional
        Name of the coefficient, for the axis label.

    Returns
    -------
    plotnine.ggplot

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"specification": ["a", "b"], "estimate": [-2.0, -1.0],
    ...                   "ci_low": [-3.0, -2.5], "ci_high": [-1.0, 0.5],
    ...                   "significant": [True, False]})
    >>> type(plot_specification_curve(t, "n_repaired")).__name__
    'ggplot'
    """
    df = table.dropna(subset=["estimate"]).sort_values("estimate", kind="stable").copy()
    df["specification"] = pd.Categorical(df["specification"],
                                         categories=list(df["specification"]))
    df["significance"] = np.where(df["significant"], "p < alpha", "not significant")
    df["significance"] = pd.Categorical(df["significance"],
                                        categories=["p < alpha", "not significant"])
    return (
        ggplot(df, aes(x="specification", y="estimate", colour="significance"))
        + geom_hline(yintercept=0, linetype="dashed", colour="#999999")
        + geom_pointrange(aes(ymin="ci_low", ymax="ci_high"), size=0.4)
        + coord_flip()
        + scale_color_manual(values=[OKABE_ITO["blue"], OKABE_ITO["grey"]], drop=False)
        + labs(y=f"Estimate of {term} (95% CI)" if term else "Estimate (95% CI)",
               x="Rupture definition", colour="")
        + _theme()
    )
