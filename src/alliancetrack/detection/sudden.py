"""Sudden changes: the Tang & DeRubeis (1999) criteria, compatible with R's suddengains.

A *sudden change* is a large, relatively large and stable shift between two
consecutive sessions.  For alliance ratings a sudden **decrease** is a
candidate rupture; for symptom measures (where lower is better) a sudden
decrease is the classic "sudden gain".

The defaults reproduce the R package suddengains (Wiedemann et al., 2020):
``identify_sg`` / ``create_bysg`` / ``create_byperson`` / ``describe_sg`` for
``direction="decrease"`` and ``identify_sl`` for ``direction="increase"``.
Corrected variants are available as options (``crit3_method="t-test"``,
``crit2_method="relative"``).  See ``docs/sudden-changes.md``.

How sessions map to the "n-2 ... n+3" window
--------------------------------------------
suddengains works by column position on wide data.  Here every patient is
placed on one common session grid: all whole session numbers from the
smallest to the largest session in the data (``session_gaps="missing"``, the
default), so a session number that a patient lacks -- as a NaN row or not at
all -- is a missing score.  This is exactly the wide table suddengains would
see.  With ``session_gaps="ignore"`` the grid is the distinct session values
present, in order (needed for non-integer time codes, and to reproduce
suddengains on wide columns whose numbers skip, e.g. ``s1, s3, s5``).

For a grid of K sessions the intervals tested are from the 2nd to 3rd up to the
(K-2)th to (K-1)th grid session, as in suddengains; the first grid session is
never the pre-change session and the last is never the post-change session.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from scipy import stats

from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.alliance import AllianceData, as_alliance_data, read_alliance

__all__ = [
    "sudden_changes",
    "reliable_change_cutoff",
    "select_changes",
    "describe_sudden_changes",
    "INTERVAL_COLUMNS",
    "CHANGE_COLUMNS",
]

#: Columns of the ``intervals`` table returned by :func:`sudden_changes`.
INTERVAL_COLUMNS: tuple[str, ...] = (
    "patient", "pre_session", "post_session", "interval", "pre_score", "post_score",
    "change", "crit1", "crit2", "crit3", "sudden", "n_pre", "n_post", "pre_mean",
    "post_mean", "pre_sd", "post_sd", "crit3_statistic", "crit3_df",
    "crit3_critical_value",
)

#: Columns of the ``changes`` table returned by :func:`sudden_changes`.
CHANGE_COLUMNS: tuple[str, ...] = (
    "patient", "change_number", "n_changes", "pre_session", "post_session", "interval",
    "direction", "magnitude", "pre_score", "post_score", "x_n_minus2", "x_n_minus1",
    "x_n_plus2", "x_n_plus3", "pre_mean", "post_mean", "pre_sd", "post_sd", "n_pre",
    "n_post", "tx_change", "change_proportion", "reversal_value", "reversal",
    "reversal_session",
)

_SELECT_METHODS = ("first", "last", "smallest", "largest")


def reliable_change_cutoff(sd: float, reliability: float) -> float:
    """Reliable change cutoff for criterion 1 (Jacobson & Truax, 1991).

    ``1.96 * sqrt(2 * (sd * sqrt(1 - reliability))**2)``: the smallest
    difference between two scores that is unlikely (p < .05) to be measurement
    error.  ``sd`` is usually the pre-treatment (baseline) standard deviation.
    Same value as suddengains' ``define_crit1_cutoff()$reliable_change_value``.

    Parameters
    ----------
    sd : float
        Standard deviation of the scores (non-negative).
    reliability : float
        Reliability of the measure, between 0 and 1 (e.g. Cronbach's alpha).

    Returns
    -------
    float

    Examples
    --------
    >>> from alliancetrack import reliable_change_cutoff
    >>> round(reliable_change_cutoff(10.5, 0.961), 4)
    5.7477
    """
    sd = float(sd)
    reliability = float(reliability)
    if not np.isfinite(sd) or sd < 0:
        raise ValueError(f"sd must be a non-negative number, got {sd!r}.")
    if not 0 <= reliability <= 1:
        raise ValueError(f"reliability must be between 0 and 1, got {reliability!r}.")
    sem = sd * np.sqrt(1 - reliability)
    sdiff = np.sqrt(2 * sem**2)
    return float(1.96 * sdiff)


# --------------------------------------------------------------------------- input


def _to_alliance_data(data, patient, session, score, session_columns, wide,
                      rater) -> AllianceData:
    if isinstance(data, AllianceData):
        if any(v is not None for v in (patient, session, score, session_columns, wide)):
            raise TypeError(
                "patient=, session=, score=, session_columns= and wide= describe a raw "
                "DataFrame; data is already an AllianceData."
            )
        ad = data
    elif isinstance(data, pd.DataFrame):
        is_wide = bool(wide) or session_columns is not None
        named = any(v is not None for v in (patient, session, score, rater))
        if is_wide or named:
            ad = read_alliance(
                data, patient=patient or "patient", session=session or "session",
                score=score or "alliance", rater=rater, wide=is_wide,
                session_columns=session_columns,
            )
        else:
            ad = as_alliance_data(data)
    else:
        ad = as_alliance_data(data)  # raises a helpful TypeError
    if "rater" in ad.frame.columns and ad.frame["rater"].nunique() > 1:
        raise AllianceDataError(
            f"The data hold ratings from several raters {ad.raters}; sudden changes are found "
            "in one series per patient. Pick one with data.select_rater(...)."
        )
    return ad


def _session_grid(sessions: np.ndarray, session_gaps: str) -> np.ndarray:
    uniq = np.unique(sessions)
    if session_gaps == "ignore" or len(uniq) == 0:
        return uniq
    if not np.all(uniq == np.floor(uniq)):
        raise AllianceDataError(
            "Sessions are not whole numbers, so missing sessions cannot be filled in; pass "
            "session_gaps='ignore' to use the sessions present, in order."
        )
    return np.arange(uniq.min(), uniq.max() + 1).astype(uniq.dtype)


def _window_stats(win: np.ndarray):
    """n, mean, sd (ddof=1, NaN when n < 2) over the last axis, ignoring NaN."""
    ok = ~np.isnan(win)
    n = ok.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(ok, win, 0.0).sum(axis=-1) / n
        dev = np.where(ok, win - mean[..., None], 0.0)
        var = (dev**2).sum(axis=-1) / (n - 1)
    var = np.where(n >= 2, var, np.nan)
    return n, np.where(n >= 1, mean, np.nan), np.sqrt(var)


# --------------------------------------------------------------------------- main


def sudden_changes(
    data: AllianceData | pd.DataFrame,
    direction: Literal["decrease", "increase"] = "decrease",
    cutoff: float | None = 7,
    pct: float | None = 0.25,
    crit3: bool = True,
    crit3_adjust: bool = True,
    alpha: float = 0.05,
    critical_value: float = 2.776,
    crit3_method: Literal["suddengains", "t-test"] = "suddengains",
    first_session_baseline: bool = False,
    *,
    crit2_method: Literal["suddengains", "relative"] = "suddengains",
    reversal_start: int | None = None,
    session_gaps: Literal["missing", "ignore"] = "missing",
    include_excluded: bool = True,
    patient: str | None = None,
    session: str | None = None,
    score: str | None = None,
    session_columns: Sequence[str] | None = None,
    wide: bool | None = None,
    rater: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Find sudden changes with the Tang & DeRubeis (1999) criteria.

    For the interval from session n (pre) to n+1 (post), with the decrease
    direction (mirrored for ``"increase"``):

    1. ``x[n] - x[n+1] >= cutoff``;
    2. ``x[n] - x[n+1] >= pct * x[n]``;
    3. ``mean(x[n-2..n]) - mean(x[n+1..n+3]) > c * s_pooled`` with
       ``s_pooled = sqrt(((n1-1) s1^2 + (n2-1) s2^2) / (n1 + n2 - 2))`` over the
       available scores; only tested when both sides have >= 2 scores.

    An interval is NA when either adjacent score is missing or criterion 3 is
    untestable, even when another criterion failed (as in suddengains).

    Parameters
    ----------
    data : AllianceData or DataFrame
        An :class:`AllianceData`, a canonical long DataFrame (``patient,
        session, alliance``), a long DataFrame with other column names (give
        ``patient=, session=, score=``) or a wide one (give ``patient=`` and
        ``session_columns=[...]``; session numbers come from the trailing
        digits of the column names, else their order).
    direction : {"decrease", "increase"}
        ``"decrease"`` finds drops (an alliance rupture; a symptom "sudden
        gain", suddengains' ``identify_sg``); ``"increase"`` finds rises
        (suddengains' ``identify_sl``).
    cutoff : float or None
        Criterion 1: minimum absolute change (positive for both directions;
        see :func:`reliable_change_cutoff`).  The default 7 is the BDI value
        of Tang & DeRubeis -- choose one for your scale.  None switches the
        criterion off.
    pct : float or None
        Criterion 2: minimum change relative to the pre-change score.  None
        switches it off.
    crit3 : bool
        Apply criterion 3.
    crit3_adjust : bool
        Critical value = two-sided t quantile at ``alpha`` with
        ``n1 + n2 - 2`` df (2.776, 3.182, 4.303 for 4, 3, 2 df).  If False,
        ``critical_value`` for every interval.
    alpha : float
        Significance level for the adjusted critical value.
    critical_value : float
        Critical value when ``crit3_adjust=False``.
    crit3_method : {"suddengains", "t-test"}
        ``"suddengains"`` compares the mean difference with ``c * s_pooled``
        (as suddengains and Tang & DeRubeis); ``"t-test"`` uses the two-sample
        t statistic, i.e. ``c * s_pooled * sqrt(1/n1 + 1/n2)``.
    first_session_baseline : bool
        The first grid session is a pre-treatment baseline (suddengains'
        ``identify_sg_1to2 = TRUE`` with the baseline as first variable).  The
        intervals tested are the same -- the first grid session is never a
        pre-change session, but it enters criterion 3 of the first interval,
        so with a session-0 baseline sudden changes from session 1 to 2 are
        found -- and the ``interval`` labels count the baseline as 0.  As in
        suddengains, reversals are then looked for from n+2 on (not n+3).
    crit2_method : {"suddengains", "relative"}
        Only matters for ``direction="increase"``.  ``"suddengains"`` uses
        ``identify_sl``'s ``x[n] - x[n+1] <= pct * x[n]``, which any rise
        meets when scores are non-negative; ``"relative"`` requires
        ``x[n+1] - x[n] >= pct * x[n]`` (the 25 % rule mirrored).
    reversal_start : int, optional
        A change is reversed when a score from ``n + reversal_start`` to the
        last session goes back past ``x[n+1] +/- magnitude / 2``.  Default 3
        (2 with ``first_session_baseline``), as suddengains.
    session_gaps : {"missing", "ignore"}
        How the session grid is built (see the module notes).
    include_excluded : bool
        Analyse patients listed in ``data.excluded`` too (default, as
        suddengains: they have too few scores for most criteria, and their
        intervals simply come out NA).  False drops them from both tables.
    patient, session, score, session_columns, wide, rater
        Column names when ``data`` is a raw DataFrame (see ``read_alliance``).

    Returns
    -------
    intervals : DataFrame
        One row per patient and tested interval, patients in data order:
        ``patient, pre_session, post_session, interval`` (suddengains-style
        label ``"2to3"``), ``pre_score, post_score, change`` (post - pre),
        ``crit1, crit2, crit3, sudden`` (nullable booleans; a switched-off
        criterion is NA), the criterion-3 inputs ``n_pre, n_post, pre_mean,
        post_mean, pre_sd, post_sd`` and ``crit3_statistic`` (mean difference
        in the chosen direction over the denominator of ``crit3_method``),
        ``crit3_df`` and ``crit3_critical_value``.
    changes : DataFrame
        One row per sudden change: ``patient, change_number`` (1, 2, ... within
        patient), ``n_changes`` (per patient), ``pre_session, post_session,
        interval, direction``, ``magnitude`` (size of the change, positive),
        ``pre_score, post_score``, the scores ``x_n_minus2, x_n_minus1,
        x_n_plus2, x_n_plus3``, the criterion-3 means/SDs/counts,
        ``tx_change`` (first minus last grid score, in the direction of
        change), ``change_proportion`` (magnitude / tx_change),
        ``reversal_value, reversal`` and ``reversal_session`` (first session
        that reverses it).

    Examples
    --------
    >>> import pandas as pd, alliancetrack as at
    >>> df = pd.DataFrame({"patient": 1, "session": range(1, 7),
    ...                    "alliance": [35, 37, 23, 23, 24, 21]})
    >>> intervals, changes = at.sudden_changes(df, cutoff=7)
    >>> intervals[["pre_session", "post_session", "sudden"]]
       pre_session  post_session  sudden
    0            2             3    True
    1            3             4   False
    2            4             5   False
    >>> changes[["pre_session", "magnitude", "reversal_value", "reversal"]]
       pre_session  magnitude  reversal_value  reversal
    0            2       14.0            30.0     False
    """
    if direction not in ("decrease", "increase"):
        raise ValueError(f"direction must be 'decrease' or 'increase', got {direction!r}.")
    if crit3_method not in ("suddengains", "t-test"):
        raise ValueError(f"crit3_method must be 'suddengains' or 't-test', got {crit3_method!r}.")
    if crit2_method not in ("suddengains", "relative"):
        raise ValueError(
            f"crit2_method must be 'suddengains' or 'relative', got {crit2_method!r}."
        )
    if session_gaps not in ("missing", "ignore"):
        raise ValueError(f"session_gaps must be 'missing' or 'ignore', got {session_gaps!r}.")
    if cutoff is None and pct is None and not crit3:
        raise ValueError("All three criteria are switched off; give cutoff=, pct= or crit3=True.")
    if cutoff is not None and not cutoff >= 0:
        raise ValueError(
            f"cutoff must be a non-negative size (direction= sets the sign), got {cutoff!r}."
        )
    if crit3 and crit3_adjust and not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}.")
    if reversal_start is None:
        reversal_start = 2 if first_session_baseline else 3
    if reversal_start < 1:
        raise ValueError(f"reversal_start must be at least 1, got {reversal_start!r}.")

    ad = _to_alliance_data(data, patient, session, score, session_columns, wide, rater)
    frame = ad.frame
    patients = ad.patients if include_excluded else ad.analysed_patients
    frame = frame.loc[frame["patient"].isin(patients)]
    grid = _session_grid(frame["session"].to_numpy(), session_gaps)
    K = len(grid)
    X = (
        frame.pivot(index="patient", columns="session", values="alliance")
        .reindex(index=patients, columns=grid)
        .to_numpy(dtype="float64")
    )
    P = len(patients)
    n_int = max(K - 3, 0)  # pre positions 1 .. K-3 (0-based)
    pre_pos = np.arange(1, 1 + n_int)
    sign = 1.0 if direction == "decrease" else -1.0

    # scores at n and n+1
    x_n = X[:, pre_pos]
    x_n1 = X[:, pre_pos + 1]
    adjacent_na = np.isnan(x_n) | np.isnan(x_n1)
    drop = x_n - x_n1  # suddengains' difference, positive for a decrease
    rise = x_n1 - x_n
    shape = (P, n_int)

    c1 = c2 = c3 = None
    if cutoff is not None:
        c1 = ((drop if direction == "decrease" else rise) >= cutoff, adjacent_na)
    if pct is not None:
        if direction == "decrease":
            met2 = drop >= pct * x_n
        elif crit2_method == "suddengains":
            met2 = drop <= pct * x_n
        else:
            met2 = rise >= pct * x_n
        c2 = (met2, adjacent_na)

    # criterion 3 windows: n-2..n and n+1..n+3 (clipped to the grid by NaN padding)
    Xp = np.pad(X, ((0, 0), (2, 3)), constant_values=np.nan)
    W = sliding_window_view(Xp, 3, axis=1)  # W[:, j] = original j-2 .. j
    n_pre, m_pre, s_pre = _window_stats(W[:, pre_pos])
    n_post, m_post, s_post = _window_stats(W[:, pre_pos + 3])
    df3 = n_pre + n_post - 2
    testable = (n_pre >= 2) & (n_post >= 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = np.sqrt(((n_pre - 1) * s_pre**2 + (n_post - 1) * s_post**2) / df3)
        if crit3_method == "t-test":
            pooled = pooled * np.sqrt(1.0 / n_pre + 1.0 / n_post)
        diff = (m_pre - m_post) if direction == "decrease" else (m_post - m_pre)
        if crit3_adjust:
            crit_val = np.abs(stats.t.ppf(alpha / 2, np.where(testable, df3, 1)))
        else:
            crit_val = np.full(shape, float(critical_value))
        crit_val = np.where(testable, crit_val, np.nan)
        statistic = np.where(testable, diff / pooled, np.nan)
    if crit3:
        c3 = (diff > crit_val * pooled, ~testable)

    applied = [c for c in (c1, c2, c3) if c is not None]
    any_na = np.zeros(shape, dtype=bool)
    all_met = np.ones(shape, dtype=bool)
    for met, na in applied:
        any_na |= na
        all_met &= met

    def _bool_col(c) -> pd.arrays.BooleanArray:
        if c is None:
            return pd.array([pd.NA] * (P * n_int), dtype="boolean")
        met, na = c
        return pd.arrays.BooleanArray(met.ravel() & ~na.ravel(), na.ravel())

    pos0 = 0 if first_session_baseline else 1
    labels = np.array([f"{p + pos0}to{p + pos0 + 1}" for p in pre_pos], dtype=object)
    pid = np.repeat(patients.to_numpy(), n_int)
    intervals = pd.DataFrame({
        "patient": pd.Series(pid, dtype=patients.dtype),
        "pre_session": np.tile(grid[pre_pos], P),
        "post_session": np.tile(grid[pre_pos + 1], P),
        "interval": np.tile(labels, P),
        "pre_score": x_n.ravel(),
        "post_score": x_n1.ravel(),
        "change": rise.ravel(),
        "crit1": _bool_col(c1),
        "crit2": _bool_col(c2),
        "crit3": _bool_col(c3),
        "sudden": _bool_col((all_met, any_na)),
        "n_pre": n_pre.ravel().astype("int64"),
        "n_post": n_post.ravel().astype("int64"),
        "pre_mean": m_pre.ravel(),
        "post_mean": m_post.ravel(),
        "pre_sd": s_pre.ravel(),
        "post_sd": s_post.ravel(),
        "crit3_statistic": statistic.ravel(),
        "crit3_df": np.where(testable, df3, np.nan).ravel(),
        "crit3_critical_value": crit_val.ravel(),
    })

    # ------------------------------------------------------------------ changes
    hit = all_met & ~any_na
    r_idx, c_idx = np.nonzero(hit)  # row-major: patient order, then session order
    pos = pre_pos[c_idx]
    magnitude = sign * drop[r_idx, c_idx]
    post = x_n1[r_idx, c_idx]
    reversal_value = post + sign * magnitude / 2
    later = X[r_idx]  # (m, K)
    cols = np.arange(K)
    window = cols[None, :] >= (pos + reversal_start)[:, None]
    with np.errstate(invalid="ignore"):
        back = (sign * (later - reversal_value[:, None]) > 0) & window
    reversed_ = back.any(axis=1)
    first_back = back.argmax(axis=1) if K else np.zeros(0, dtype=int)
    rev_session = np.where(reversed_, grid.astype("float64")[first_back], np.nan)

    def _at(offset: int) -> np.ndarray:
        j = pos + offset
        ok = (j >= 0) & (j < K)
        return np.where(ok, X[r_idx, np.clip(j, 0, K - 1)], np.nan)

    tx = sign * (X[:, 0] - X[:, -1]) if K else np.full(P, np.nan)
    tx_change = tx[r_idx]
    with np.errstate(invalid="ignore", divide="ignore"):
        proportion = np.where(tx_change != 0, magnitude / tx_change, np.nan)
    counts = np.bincount(r_idx, minlength=P)
    number = np.ones(len(r_idx), dtype="int64")
    if len(r_idx):
        start = np.r_[0, np.flatnonzero(np.diff(r_idx)) + 1]
        number = np.arange(len(r_idx)) - np.repeat(start, np.diff(np.r_[start, len(r_idx)])) + 1
    changes = pd.DataFrame({
        "patient": pd.Series(patients.to_numpy()[r_idx], dtype=patients.dtype),
        "change_number": number.astype("int64"),
        "n_changes": counts[r_idx].astype("int64"),
        "pre_session": grid[pos],
        "post_session": grid[pos + 1],
        "interval": labels[c_idx],
        "direction": pd.Series([direction] * len(r_idx), dtype=object),
        "magnitude": magnitude,
        "pre_score": x_n[r_idx, c_idx],
        "post_score": post,
        "x_n_minus2": _at(-2),
        "x_n_minus1": _at(-1),
        "x_n_plus2": _at(2),
        "x_n_plus3": _at(3),
        "pre_mean": m_pre[r_idx, c_idx],
        "post_mean": m_post[r_idx, c_idx],
        "pre_sd": s_pre[r_idx, c_idx],
        "post_sd": s_post[r_idx, c_idx],
        "n_pre": n_pre[r_idx, c_idx].astype("int64"),
        "n_post": n_post[r_idx, c_idx].astype("int64"),
        "tx_change": tx_change,
        "change_proportion": proportion,
        "reversal_value": reversal_value,
        "reversal": reversed_.astype(bool),
        "reversal_session": rev_session,
    })
    return intervals, changes


# --------------------------------------------------------------------------- selection


def select_changes(
    changes: pd.DataFrame,
    method: Literal["first", "last", "smallest", "largest"] = "first",
) -> pd.DataFrame:
    """Keep one sudden change per patient.

    Parameters
    ----------
    changes : DataFrame
        The ``changes`` table of :func:`sudden_changes`.
    method : {"first", "last", "smallest", "largest"}
        Earliest or latest change, or the one with the smallest or largest
        ``magnitude``; ties go to the earliest.

    Returns
    -------
    DataFrame
        The selected rows, in the original order.

    Examples
    --------
    >>> import pandas as pd
    >>> from alliancetrack import select_changes
    >>> ch = pd.DataFrame({"patient": [1, 1, 1, 2], "pre_session": [2, 5, 8, 3],
    ...                    "magnitude": [9.0, 12.0, 12.0, 8.0]})
    >>> select_changes(ch, "largest")
       patient  pre_session  magnitude
    1        1            5       12.0
    3        2            3        8.0
    """
    if method not in _SELECT_METHODS:
        raise ValueError(f"method must be one of {_SELECT_METHODS}, got {method!r}.")
    missing = [c for c in ("patient", "pre_session", "magnitude") if c not in changes]
    if missing:
        raise ValueError(f"changes lacks column(s) {missing}; pass the table from sudden_changes.")
    if method in ("first", "last"):
        order = changes.sort_values("pre_session", ascending=method == "first", kind="stable")
    else:
        order = changes.sort_values(["magnitude", "pre_session"],
                                    ascending=[method == "smallest", True], kind="stable")
    return order.groupby("patient", sort=False, dropna=False).head(1).sort_index()


# --------------------------------------------------------------------------- description


def describe_sudden_changes(
    intervals: pd.DataFrame,
    changes: pd.DataFrame,
    select: Literal["first", "last", "smallest", "largest"] = "first",
) -> pd.DataFrame:
    """Summarise sudden changes per change and per person.

    The ``per_change`` row describes all changes (suddengains' ``describe_sg``
    on ``create_bysg``); the ``per_person`` row one change per patient chosen
    with :func:`select_changes` (``describe_sg`` on ``create_byperson``).
    Percentages are unrounded (suddengains rounds to 2 decimals).

    Parameters
    ----------
    intervals, changes : DataFrame
        The two tables from :func:`sudden_changes`.
    select : {"first", "last", "smallest", "largest"}
        Which change represents a patient with several.

    Returns
    -------
    DataFrame
        Index ``per_change, per_person``; columns ``n_patients``,
        ``n_intervals``, ``n_intervals_testable`` (sudden is not NA),
        ``n_patients_with_change``, ``pct_patients_with_change``,
        ``n_patients_multiple``, ``pct_patients_multiple``, ``n_changes_total``,
        ``n_changes`` (changes summarised on the row), ``pct_changes_in_multiple``
        (share of those from patients with several), ``n_reversed``,
        ``pct_reversed``, ``magnitude_mean``, ``magnitude_sd``.

    Examples
    --------
    >>> import pandas as pd, alliancetrack as at
    >>> df = pd.DataFrame({"patient": [1] * 6 + [2] * 6, "session": list(range(1, 7)) * 2,
    ...                    "alliance": [35, 37, 23, 23, 24, 21, 30, 31, 30, 31, 30, 31]})
    >>> summary = at.describe_sudden_changes(*at.sudden_changes(df))
    >>> summary[["n_patients", "n_changes", "pct_patients_with_change", "magnitude_mean"]]
                n_patients  n_changes  pct_patients_with_change  magnitude_mean
    per_change           2          1                      50.0            14.0
    per_person           2          1                      50.0            14.0
    """
    n_patients = int(intervals["patient"].nunique(dropna=False))
    n_intervals = len(intervals)
    n_testable = int(intervals["sudden"].notna().sum())
    per_patient = changes.groupby("patient", sort=False, dropna=False).size()
    n_with = int(len(per_patient))
    n_multiple = int((per_patient > 1).sum())
    selected = select_changes(changes, select) if len(changes) else changes

    def _pct(a: float, b: float) -> float:
        return float(100.0 * a / b) if b else float("nan")

    def _row(ch: pd.DataFrame) -> dict:
        in_multiple = ch["patient"].map(per_patient).gt(1).sum() if len(ch) else 0
        n_rev = int(ch["reversal"].astype(bool).sum()) if len(ch) else 0
        mag = ch["magnitude"].astype("float64")
        return {
            "n_patients": n_patients,
            "n_intervals": n_intervals,
            "n_intervals_testable": n_testable,
            "n_patients_with_change": n_with,
            "pct_patients_with_change": _pct(n_with, n_patients),
            "n_patients_multiple": n_multiple,
            "pct_patients_multiple": _pct(n_multiple, n_patients),
            "n_changes_total": len(changes),
            "n_changes": len(ch),
            "pct_changes_in_multiple": _pct(in_multiple, len(ch)),
            "n_reversed": n_rev,
            "pct_reversed": _pct(n_rev, len(ch)),
            "magnitude_mean": float(mag.mean()) if len(ch) else float("nan"),
            "magnitude_sd": float(mag.std(ddof=1)) if len(ch) > 1 else float("nan"),
        }

    return pd.DataFrame([_row(changes), _row(selected)], index=["per_change", "per_person"])
