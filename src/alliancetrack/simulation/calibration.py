"""Calibration of per-session rupture probabilities against simulated truth.

A probability is calibrated when, among sessions given probability about
*p*, a share of about *p* truly lies in a rupture.  :func:`in_rupture` marks
the sessions inside the true episodes of a simulated cohort and
:func:`calibration_table` bins predicted probabilities and compares each bin's
mean prediction with the observed share (a reliability diagram; Murphy &
Winkler 1977), with the Brier score and intervals from a bootstrap over
patients.
"""

from __future__ import annotations

import warnings

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
                      bins: int = 10, *, n_boot: int = 1000, level: float = 0.95,
                      seed: int = 0) -> pd.DataFrame:
    """Reliability table of per-session rupture probabilities.

    Sessions of one patient are not independent (a rupture spans several of
    them), so the uncertainty of each bin's observed share is estimated by a
    cluster bootstrap over patients (Davison & Hinkley 1997, sec. 3.8):
    patients are drawn with replacement, all their sessions with them, and
    the percentile interval of the bin's observed share is reported.  With
    few patients in a bin (fewer than about 10) the interval is too narrow:
    when all of them agree it collapses onto the observed share.

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
    n_boot : int, default 1000
        Bootstrap resamples of patients; 0 skips the intervals (NaN).
    level : float, default 0.95
        Coverage of the percentile intervals.
    seed : int, default 0
        Seed of the resampling: the same seed gives the same intervals.

    Returns
    -------
    DataFrame
        One row per non-empty bin: ``bin_low, bin_high, n`` (sessions),
        ``n_patients`` (patients with a session in the bin), ``mean_p``,
        ``observed`` (share of those sessions truly in a rupture),
        ``ci_low, ci_high`` (bootstrap interval of ``observed``; over the
        resamples in which the bin is not empty) and
        ``gap = observed - mean_p``.  ``attrs["brier"]`` is the Brier score,
        ``attrs["brier_ci"]`` its bootstrap interval.

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
    if not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a whole number of at least 1, got {bins!r}.")
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ValueError(f"n_boot must be a whole number of at least 0, got {n_boot!r}.")
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}.")
    for frame, name, cols in ((probabilities, "probabilities", ("patient", "session", "p_rupture")),
                              (truth, "truth", ("patient", "rupture_session", "repair_session"))):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks the column(s) {missing}; it needs {list(cols)} "
                             "(from rupture_probabilities and a simulated cohort's truth).")
    p = probabilities.dropna(subset=["p_rupture"]).reset_index(drop=True)
    y = in_rupture(p, truth).astype(float)
    prob = p["p_rupture"].to_numpy(dtype=float)
    if np.any((prob < 0) | (prob > 1)):
        raise ValueError("p_rupture must lie between 0 and 1; rows "
                         f"{np.flatnonzero((prob < 0) | (prob > 1))[:10].tolist()} do not.")
    idx = np.minimum((prob * bins).astype(int), bins - 1)
    pid = pd.factorize(p["patient"])[0]
    n_pat = int(pid.max()) + 1 if len(pid) else 0
    # per patient and bin: sessions, hits and predicted mass (the bootstrap's units)
    cells = np.zeros((3, n_pat, bins))
    for k, values in enumerate((np.ones_like(y), y, prob)):
        np.add.at(cells[k], (pid, idx), values)
    n, hits, mass = cells.sum(axis=1)
    keep = np.flatnonzero(n > 0)
    out = pd.DataFrame({"bin_low": keep / bins, "bin_high": (keep + 1) / bins,
                        "n": n[keep].astype(int),
                        "n_patients": (cells[0] > 0).sum(axis=0)[keep].astype(int),
                        "mean_p": mass[keep] / n[keep], "observed": hits[keep] / n[keep]})
    lo = hi = np.full(len(keep), np.nan)
    brier_ci = (np.nan, np.nan)
    if n_boot and n_pat:
        share, brier = _bootstrap(cells[:, :, keep], (prob - y) ** 2, pid, n_boot, seed)
        q = [50 * (1 - level), 50 * (1 + level)]
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a bin empty in every resample
            lo, hi = np.nanpercentile(share, q, axis=0)
        brier_ci = tuple(float(v) for v in np.percentile(brier, q))
    out["ci_low"], out["ci_high"] = lo, hi
    out["gap"] = out["observed"] - out["mean_p"]
    out.attrs["brier"] = float(np.mean((prob - y) ** 2)) if len(prob) else np.nan
    out.attrs["brier_ci"] = brier_ci
    return out


def _bootstrap(cells: np.ndarray, sq_err: np.ndarray, pid: np.ndarray, n_boot: int,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Observed share per bin and Brier score in ``n_boot`` patient resamples."""
    n_pat = cells.shape[1]
    per_patient = np.stack([np.bincount(pid, weights=sq_err, minlength=n_pat),
                            np.bincount(pid, minlength=n_pat)], axis=1)
    rng = np.random.default_rng(seed)
    share = np.empty((n_boot, cells.shape[2]))
    brier = np.empty(n_boot)
    step = int(max(1, min(200, 20_000_000 // n_pat)))  # bounded memory: resamples at a time
    for lo in range(0, n_boot, step):
        w = rng.multinomial(n_pat, np.full(n_pat, 1 / n_pat), size=min(step, n_boot - lo))
        w = w.astype(float)
        sessions, hits = w @ cells[0], w @ cells[1]
        with np.errstate(invalid="ignore", divide="ignore"):
            share[lo:lo + len(w)] = np.where(sessions > 0, hits / sessions, np.nan)
        err = w @ per_patient
        brier[lo:lo + len(w)] = err[:, 0] / err[:, 1]
    return share, brier
