"""Calibration of per-session rupture probabilities against simulated truth.

A probability is calibrated when, among sessions given probability about
*p*, a share of about *p* truly lies in a rupture.  :func:`in_rupture` marks
the sessions inside the true episodes of a simulated cohort and
:func:`calibration_table` bins predicted probabilities and compares each bin's
mean prediction with the observed share (a reliability diagram; Murphy &
Winkler 1977), with the Brier score.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["calibration_table", "in_rupture"]


def in_rupture(sessions: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
    """True for each row of ``sessions`` inside a true episode.

    A session is in a rupture from the rupture session up to (not including)
    the repair session, or to the end of treatment when unrepaired.

    Examples
    --------
    >>> import pandas as pd
    >>> s = pd.DataFrame({"patient": 1, "session": range(1, 7)})
    >>> t = pd.DataFrame({"patient": [1], "rupture_session": [3.0], "repair_session": [5.0]})
    >>> in_rupture(s, t).tolist()
    [False, False, True, True, False, False]
    """
    spans = truth[["patient", "rupture_session", "repair_session"]].copy()
    spans["repair_session"] = spans["repair_session"].fillna(np.inf)
    rows = sessions[["patient", "session"]].reset_index(drop=True).reset_index()
    merged = rows.merge(spans, on="patient", how="inner")
    hit = (merged["session"] >= merged["rupture_session"]) & \
        (merged["session"] < merged["repair_session"])
    out = np.zeros(len(rows), dtype=bool)
    out[merged.loc[hit, "index"].to_numpy()] = True
    return out


def calibration_table(probabilities: pd.DataFrame, truth: pd.DataFrame,
                      bins: int = 10) -> pd.DataFrame:
    """Reliability table of per-session rupture probabilities.

    Parameters
    ----------
    probabilities : DataFrame
        ``patient, session, p_rupture`` (from
        :func:`alliancetrack.rupture_probabilities`); rows with missing
        ``p_rupture`` are left out.
    truth : DataFrame
        True episodes (``patient, rupture_session, repair_session``).
    bins : int, default 10
        Equal-width probability bins on [0, 1].

    Returns
    -------
    DataFrame
        One row per non-empty bin: ``bin_low, bin_high, n, mean_p,
        observed`` (share of those sessions truly in a rupture) and
        ``gap = observed - mean_p``; ``attrs["brier"]`` is the Brier score.

    Examples
    --------
    >>> import pandas as pd
    >>> p = pd.DataFrame({"patient": 1, "session": [1, 2, 3, 4],
    ...                   "p_rupture": [0.05, 0.02, 0.9, 0.7]})
    >>> t = pd.DataFrame({"patient": [1], "rupture_session": [3.0], "repair_session": [4.0]})
    >>> calibration_table(p, t, bins=2)[["bin_low", "n", "observed"]]
       bin_low  n  observed
    0      0.0  2       0.0
    1      0.5  2       0.5
    """
    p = probabilities.dropna(subset=["p_rupture"]).reset_index(drop=True)
    y = in_rupture(p, truth).astype(float)
    prob = p["p_rupture"].to_numpy(dtype=float)
    idx = np.minimum((prob * bins).astype(int), bins - 1)
    df = pd.DataFrame({"bin": idx, "p": prob, "y": y})
    g = df.groupby("bin").agg(n=("y", "size"), mean_p=("p", "mean"), observed=("y", "mean"))
    g = g.reset_index()
    out = pd.DataFrame({"bin_low": g["bin"] / bins, "bin_high": (g["bin"] + 1) / bins,
                        "n": g["n"].astype(int), "mean_p": g["mean_p"],
                        "observed": g["observed"]})
    out["gap"] = out["observed"] - out["mean_p"]
    out.attrs["brier"] = float(np.mean((prob - y) ** 2)) if len(prob) else np.nan
    return out
