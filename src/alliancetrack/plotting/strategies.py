"""Figures for resolution strategies: repair rate by strategy class (and moderator), and the
strategy ticks drawn under the alliance trajectory by :func:`plot_sources_timeline`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotnine as p9

from alliancetrack.detection.strategies import repair_rates
from alliancetrack.errors import AllianceDataError
from alliancetrack.plotting.style import OKABE_ITO, theme_alliance
from alliancetrack.reading.reported import ObserverData

__all__ = ["plot_strategy_repair", "strategy_ticks", "CLASS_COLOURS"]

#: Colours of the strategy classes (Okabe-Ito).
CLASS_COLOURS = {"none": OKABE_ITO["grey"], "immediate only": OKABE_ITO["orange"],
                 "expressive only": OKABE_ITO["bluish_green"], "both": OKABE_ITO["blue"],
                 "immediate": OKABE_ITO["orange"], "expressive": OKABE_ITO["bluish_green"]}


def plot_strategy_repair(linked: pd.DataFrame, outcome: str = "repaired", by: str | None = None,
                         *, level: float = 0.95, base_size: float = 8) -> p9.ggplot:
    """Repair rate by the strategy classes used, with Wilson intervals.

    One point per class (none, immediate only, expressive only, both; see
    :func:`alliancetrack.repair_rates`) with its interval and the number of
    episodes; with ``by`` (a moderator column, e.g. a personality-disorder
    indicator) one panel per value.  Raw rates: they ignore therapist and
    patient clustering (see :func:`alliancetrack.strategy_effects`).

    Parameters
    ----------
    linked : pandas.DataFrame
        From :func:`alliancetrack.link_strategies` (moderators merged in).
    outcome : str
        The 0/1 outcome column.
    by : str, optional
        A moderator column: one panel per value.
    level : float
        Confidence level of the intervals.
    base_size : float
        Base font size.

    Returns
    -------
    plotnine.ggplot

    Examples
    --------
    >>> import pandas as pd, alliancetrack as at
    >>> linked = pd.DataFrame({"n_immediate": [1, 0, 2, 0, 1], "n_expressive": [0, 1, 1, 0, 2],
    ...                        "repaired": [True, True, False, False, True], "pd": [0, 0, 1, 1, 1]})
    >>> p = at.plot_strategy_repair(linked, by="pd")
    >>> int(p.data["n"].sum())
    5
    """
    rates = repair_rates(linked, outcome=outcome, by=by, level=level)
    if rates.empty:
        raise AllianceDataError("No episode with coded strategies and a known outcome to plot.")
    rates["label"] = "n=" + rates["n"].astype(str)
    ncol = 1 if by is None else rates[by].nunique()
    p = (
        p9.ggplot(rates, p9.aes("strategy_class", "rate", color="strategy_class"))
        + p9.geom_errorbar(p9.aes(ymin="ci_low", ymax="ci_high"), width=0.2)
        + p9.geom_point(size=2.5)
        + p9.geom_text(p9.aes(y="ci_high", label="label"), nudge_y=0.06, size=base_size - 1,
                       color=OKABE_ITO["black"])
        + p9.scale_color_manual(values=CLASS_COLOURS, guide=None)
        + p9.scale_y_continuous(limits=(0, 1.12), breaks=[0, 0.25, 0.5, 0.75, 1])
        + p9.labs(x="strategies used in the episode", y=f"share {outcome} ({level:.0%} CI)")
        + theme_alliance(base_size, figure_size=(min(7.5, 1.5 + 3.2 * ncol), 2.8))
    )
    if by is not None:
        p += p9.facet_wrap(by, labeller=lambda v: f"{by} = {v}")
    return p


def strategy_ticks(strategies, patients) -> pd.DataFrame:
    """Strategy uses per patient, session and class (``patient, session, strategy_class, n``),
    for the timeline lanes.

    Examples
    --------
    >>> import pandas as pd
    >>> from alliancetrack.plotting.strategies import strategy_ticks
    >>> uses = pd.DataFrame({"patient": [1, 1, 1], "session": [2, 2, 3],
    ...                      "strategy_class": ["immediate", "immediate", "expressive"]})
    >>> strategy_ticks(uses, [1]).values.tolist()
    [[1, 2, 'immediate', 2], [1, 3, 'expressive', 1]]
    """
    if isinstance(strategies, ObserverData):
        if strategies.strategies is None:
            raise AllianceDataError("These 3RS codes carry no strategies; read them with "
                                    "read_3rs(..., strategy='<column>').")
        strategies = strategies.strategies
    if not isinstance(strategies, pd.DataFrame) or not {"patient", "session",
                                                        "strategy_class"} <= set(strategies):
        raise AllianceDataError("strategies= must be 3RS codes from read_3rs(..., strategy=...) "
                                "or their .strategies table.")
    s = strategies[strategies["patient"].isin(list(patients))]
    out = s.groupby(["patient", "session", "strategy_class"], sort=False).size()
    out = out.rename("n").reset_index()
    out["n"] = out["n"].astype(np.int64)
    return out
