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

Sudden changes as rupture-repair episodes
-----------------------------------------
:class:`SuddenChangeDetector` (``detect_episodes(data, method="sudden")``)
reads episodes off the sudden changes: with ``direction="decrease"`` a
sudden drop is a rupture (``"increase"``: a sudden rise, for scales where
lower is better).  ``rupture_session`` is the first session after the drop
(``post_session``), ``pre_level`` the score before it, the nadir the lowest
score from the rupture to the repair (or the last session), and the
**repair** is the change's *reversal* (suddengains): the first session from
``n + reversal_start`` on whose score goes back past the middle of the drop
(``post_score ± magnitude / 2``).  A change that is never reversed is
unrepaired and censored (there is no repair window).  A sudden change inside
an earlier, still open episode deepens that episode; it does not open a new
one, so episodes never overlap.  Only analysed patients (not in
``data.excluded``) are searched.  :func:`select_changes` and
:func:`describe_sudden_changes` live in
:mod:`alliancetrack.detection.sudden_summary`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from alliancetrack.detection.base import (
    Check,
    Detector,
    flag,
    number,
    one_of,
    register_detector,
    whole,
)
from alliancetrack.detection.episodes import finalize_episodes
from alliancetrack.detection.sudden_summary import describe_sudden_changes, select_changes
from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.alliance import AllianceData, as_alliance_data, read_alliance

__all__ = [
    "SuddenChangeDetector",
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



def _criteria_ok(det) -> bool:
    return not (det.cutoff is None and det.pct is None and not det.crit3)


@register_detector
@dataclass(frozen=True)
class SuddenChangeDetector(Detector):
    """The Tang & DeRubeis (1999) criteria as a detector (``method="sudden"``).

    The parameters of :func:`sudden_changes` that define a sudden change (not
    the column names of raw data); see there for their meaning.
    :meth:`find` gives the two tables of :func:`sudden_changes`,
    :meth:`detect` the rupture-repair episodes (module notes: a sudden change
    in ``direction`` is a rupture, its reversal the repair).  Label:
    ``"sudden:<direction>[<changed fields>]"``.

    Examples
    --------
    >>> import pandas as pd, alliancetrack as at
    >>> df = pd.DataFrame({"patient": 1, "session": range(1, 9),
    ...                    "alliance": [35, 37, 36, 23, 23, 24, 33, 36]})
    >>> det = at.SuddenChangeDetector(cutoff=5)
    >>> det.label
    'sudden:decrease[cutoff=5]'
    >>> det.detect(df)[["rupture_session", "pre_level", "nadir_level", "repair_session"]]
       rupture_session  pre_level  nadir_level  repair_session
    0              4.0       36.0         23.0             7.0
    """

    method: ClassVar[str] = "sudden"
    name_field: ClassVar[str | None] = "direction"
    checks: ClassVar[dict[str, Check]] = {
        "direction": one_of("decrease", "increase"),
        "cutoff": Check(lambda v: v == "auto" or (isinstance(v, int | float)
                                                  and not isinstance(v, bool) and v >= 0),
                        "be a non-negative size (direction= sets the sign) or 'auto'",
                        optional=True),
        "pct": number(optional=True),
        "crit3": flag(),
        "crit3_adjust": flag(),
        "critical_value": number(),
        "crit3_method": one_of("suddengains", "t-test"),
        "first_session_baseline": flag(),
        "crit2_method": one_of("suddengains", "relative"),
        "reversal_start": whole(1, optional=True),
        "session_gaps": one_of("missing", "ignore"),
        "include_excluded": flag(),
    }

    direction: Literal["decrease", "increase"] = "decrease"
    cutoff: float | Literal["auto"] | None = "auto"
    pct: float | None = 0.25
    crit3: bool = True
    crit3_adjust: bool = True
    alpha: float = 0.05
    critical_value: float = 2.776
    crit3_method: Literal["suddengains", "t-test"] = "suddengains"
    first_session_baseline: bool = False
    crit2_method: Literal["suddengains", "relative"] = "suddengains"
    reversal_start: int | None = None
    session_gaps: Literal["missing", "ignore"] = "missing"
    include_excluded: bool = True

    def _check_combination(self) -> None:
        if not _criteria_ok(self):
            raise ValueError(
                "All three criteria are switched off; give cutoff=, pct= or crit3=True."
            )
        if self.crit3 and self.crit3_adjust and not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1, got {self.alpha!r}.")

    @property
    def reversal_from(self) -> int:
        """``reversal_start``, or its default (3; 2 with ``first_session_baseline``)."""
        if self.reversal_start is not None:
            return self.reversal_start
        return 2 if self.first_session_baseline else 3

    def find(self, data: AllianceData) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The ``intervals`` and ``changes`` tables of :func:`sudden_changes`."""
        from scipy import stats  # noqa: PLC0415 - scipy.stats is imported only when used

        det = replace(self, cutoff=_auto_cutoff(data)) if self.cutoff == "auto" else self
        grid = _ScoreGrid.of(data, det.include_excluded, det.session_gaps)
        crit = _criteria(grid.X, det, stats.t)
        return _interval_table(grid, crit, det), _change_table(grid, crit, det)

    def detect(self, data: Any) -> pd.DataFrame:
        """Rupture-repair episodes from the sudden changes (see the module notes)."""
        ad = _to_alliance_data(data, None, None, None, None, None, None)
        _, changes = self.find(ad)
        changes = changes.loc[changes["patient"].isin(ad.analysed_patients)]
        return _episodes_from_changes(ad, changes, self)


# --------------------------------------------------------------------------- main


def _auto_cutoff(ad: AllianceData) -> float:
    """Criterion 1 when no cutoff was given: the scale's RCI, or 7 for BDI-like data."""
    scale = ad.scale
    scores = ad.frame["alliance"].dropna()
    if scale is not None and "bdi" not in scale.name.lower():
        if scale.reliability is None:
            raise ValueError(
                f"sudden_changes needs cutoff= for scale {scale.name!r}, which has no "
                "reliability: pass cutoff= (e.g. reliable_change_cutoff(sd, reliability)).")
        sd = scale.sd
        if sd is None:
            first = ad.frame.dropna(subset=["alliance"]).groupby("patient", sort=False).head(1)
            sd = float(first["alliance"].std(ddof=1)) if len(first) > 1 else float("nan")
        if not np.isfinite(sd) or sd <= 0:
            raise ValueError(f"sudden_changes cannot derive a cutoff for scale {scale.name!r} "
                             "(no SD); pass cutoff=.")
        value = reliable_change_cutoff(sd, scale.reliability)
        warnings.warn(
            f"sudden_changes: cutoff={value:.4g}, the reliable-change cutoff of {scale.name} "
            f"(1.96*sqrt(2)*SD*sqrt(1-r), SD {sd:.4g}, reliability {scale.reliability:g}); "
            "pass cutoff= to choose another.", UserWarning, stacklevel=3)
        return value
    span = float(scores.max() - scores.min()) if len(scores) else 0.0
    never = (f" The scores span only {span:g} points, so it can never be met."
             if span < 7 else "")
    warnings.warn(
        "sudden_changes: cutoff=7, the BDI value of Tang & DeRubeis (1999), because no cutoff= "
        f"was given and the data have no scale.{never} Pass cutoff= for your scale (e.g. "
        "reliable_change_cutoff(sd, reliability)), or read the data with scale= to use its "
        "reliable-change cutoff.", UserWarning, stacklevel=3)
    return 7.0


def sudden_changes(
    data: AllianceData | pd.DataFrame,
    direction: Literal["decrease", "increase"] = "decrease",
    cutoff: float | Literal["auto"] | None = "auto",
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

    The criteria's parameters form a :class:`SuddenChangeDetector`;
    ``detect_episodes(data, method="sudden", ...)`` turns the changes into
    rupture-repair episodes.

    For the interval from session n (pre) to n+1 (post), with the decrease
    direction (mirrored for ``"increase"``):

    1. ``x[n] - x[n+1] >= cutoff``;
    2. ``x[n] - x[n+1] >= pct * x[n]``;
    3. ``mean(x[n-2..n]) - mean(x[n+1..n+3]) > c * s_pooled`` with
       ``s_pooled = sqrt(((n1-1) s1^2 + (n2-1) s2^2) / (n1 + n2 - 2))``.

    An interval is NA when either adjacent score is missing or criterion 3 is
    untestable, even when another criterion failed (as in suddengains).

    Parameters
    ----------
    data : AllianceData or DataFrame
        An :class:`AllianceData`, a canonical long DataFrame (``patient,
        session, alliance``), or a raw long or wide one with the column
        arguments below (as for :func:`read_alliance`).
    direction : {"decrease", "increase"}
        ``"decrease"`` finds drops (an alliance rupture; a symptom "sudden
        gain", suddengains' ``identify_sg``); ``"increase"`` finds rises
        (suddengains' ``identify_sl``).
    cutoff : float, "auto" or None
        Criterion 1: minimum absolute change (positive for both directions).
        ``"auto"`` (default): with a scale, the reliable-change cutoff
        ``1.96 * sqrt(2) * SD * sqrt(1 - reliability)`` (Jacobson & Truax
        1991; SD: the scale's ``sd``, else that of the first rated session;
        :func:`reliable_change_cutoff`); without one, 7 (the BDI value of Tang
        & DeRubeis); a warning says which.  None switches the criterion off.
    pct : float or None
        Criterion 2: minimum change relative to the pre-change score (None: off).
    crit3 : bool
        Apply criterion 3 (on the available scores; tested when both sides have >= 2).
    crit3_adjust : bool
        Critical value = two-sided t quantile at ``alpha`` with ``n1 + n2 - 2``
        df (2.776, 3.182, 4.303 for 4, 3, 2 df); if False, ``critical_value``.
    alpha : float
        Significance level of the adjusted critical value.
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
        How the session grid is built (module notes).
    include_excluded : bool
        Analyse patients in ``data.excluded`` too (default, as suddengains:
        their intervals come out NA).  False drops them from both tables.
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
    detector = SuddenChangeDetector(
        direction=direction, cutoff=cutoff, pct=pct, crit3=crit3, crit3_adjust=crit3_adjust,
        alpha=alpha, critical_value=critical_value, crit3_method=crit3_method,
        first_session_baseline=first_session_baseline, crit2_method=crit2_method,
        reversal_start=reversal_start, session_gaps=session_gaps,
        include_excluded=include_excluded,
    )
    ad = _to_alliance_data(data, patient, session, score, session_columns, wide, rater)
    return detector.find(ad)


# --------------------------------------------------------------------------- computation
@dataclass(frozen=True)
class _ScoreGrid:
    """Every patient's scores on the common session grid (module notes)."""

    patients: pd.Index
    grid: np.ndarray
    X: np.ndarray  # patients x grid sessions, NaN where missing

    @classmethod
    def of(cls, ad: AllianceData, include_excluded: bool, session_gaps: str) -> _ScoreGrid:
        frame = ad.frame
        patients = ad.patients if include_excluded else ad.analysed_patients
        frame = frame.loc[frame["patient"].isin(patients)]
        grid = _session_grid(frame["session"].to_numpy(), session_gaps)
        X = (
            frame.pivot(index="patient", columns="session", values="alliance")
            .reindex(index=patients, columns=grid)
            .to_numpy(dtype="float64")
        )
        return cls(patients, grid, X)

    @property
    def pre_pos(self) -> np.ndarray:
        """Grid positions of the pre-change sessions tested: 1 .. K-3 (0-based)."""
        return np.arange(1, 1 + max(len(self.grid) - 3, 0))


def _criteria(X: np.ndarray, det: SuddenChangeDetector, t_dist) -> dict[str, Any]:
    """The three criteria for every patient and interval (arrays patients x intervals)."""
    n_int = max(X.shape[1] - 3, 0)
    pre_pos = np.arange(1, 1 + n_int)
    x_n, x_n1 = X[:, pre_pos], X[:, pre_pos + 1]
    adjacent_na = np.isnan(x_n) | np.isnan(x_n1)
    drop = x_n - x_n1  # suddengains' difference, positive for a decrease
    rise = x_n1 - x_n
    shape = (X.shape[0], n_int)
    c1 = c2 = c3 = None
    if det.cutoff is not None:
        c1 = ((drop if det.direction == "decrease" else rise) >= det.cutoff, adjacent_na)
    if det.pct is not None:
        if det.direction == "decrease":
            met2 = drop >= det.pct * x_n
        elif det.crit2_method == "suddengains":
            met2 = drop <= det.pct * x_n
        else:
            met2 = rise >= det.pct * x_n
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
        if det.crit3_method == "t-test":
            pooled = pooled * np.sqrt(1.0 / n_pre + 1.0 / n_post)
        diff = (m_pre - m_post) if det.direction == "decrease" else (m_post - m_pre)
        if det.crit3_adjust:
            crit_val = np.abs(t_dist.ppf(det.alpha / 2, np.where(testable, df3, 1)))
        else:
            crit_val = np.full(shape, float(det.critical_value))
        crit_val = np.where(testable, crit_val, np.nan)
        statistic = np.where(testable, diff / pooled, np.nan)
    if det.crit3:
        c3 = (diff > crit_val * pooled, ~testable)
    any_na = np.zeros(shape, dtype=bool)
    all_met = np.ones(shape, dtype=bool)
    for met, na in (c for c in (c1, c2, c3) if c is not None):
        any_na |= na
        all_met &= met
    return {"x_n": x_n, "x_n1": x_n1, "drop": drop, "rise": rise, "c1": c1, "c2": c2,
            "c3": c3, "sudden": (all_met, any_na), "n_pre": n_pre, "n_post": n_post,
            "m_pre": m_pre, "m_post": m_post, "s_pre": s_pre, "s_post": s_post,
            "df3": df3, "testable": testable, "crit_val": crit_val, "statistic": statistic}


def _bool_col(c, size: int) -> pd.arrays.BooleanArray:
    if c is None:
        return pd.array([pd.NA] * size, dtype="boolean")
    met, na = c
    return pd.arrays.BooleanArray(met.ravel() & ~na.ravel(), na.ravel())


def _labels(g: _ScoreGrid, det: SuddenChangeDetector) -> np.ndarray:
    pos0 = 0 if det.first_session_baseline else 1
    return np.array([f"{p + pos0}to{p + pos0 + 1}" for p in g.pre_pos], dtype=object)


def _interval_table(g: _ScoreGrid, c: dict[str, Any], det: SuddenChangeDetector) -> pd.DataFrame:
    P, pre_pos = len(g.patients), g.pre_pos
    size = P * len(pre_pos)
    return pd.DataFrame({
        "patient": pd.Series(np.repeat(g.patients.to_numpy(), len(pre_pos)),
                             dtype=g.patients.dtype),
        "pre_session": np.tile(g.grid[pre_pos], P),
        "post_session": np.tile(g.grid[pre_pos + 1], P),
        "interval": np.tile(_labels(g, det), P),
        "pre_score": c["x_n"].ravel(),
        "post_score": c["x_n1"].ravel(),
        "change": c["rise"].ravel(),
        "crit1": _bool_col(c["c1"], size),
        "crit2": _bool_col(c["c2"], size),
        "crit3": _bool_col(c["c3"], size),
        "sudden": _bool_col(c["sudden"], size),
        "n_pre": c["n_pre"].ravel().astype("int64"),
        "n_post": c["n_post"].ravel().astype("int64"),
        "pre_mean": c["m_pre"].ravel(),
        "post_mean": c["m_post"].ravel(),
        "pre_sd": c["s_pre"].ravel(),
        "post_sd": c["s_post"].ravel(),
        "crit3_statistic": c["statistic"].ravel(),
        "crit3_df": np.where(c["testable"], c["df3"], np.nan).ravel(),
        "crit3_critical_value": c["crit_val"].ravel(),
    })


def _change_table(g: _ScoreGrid, c: dict[str, Any], det: SuddenChangeDetector) -> pd.DataFrame:
    X, K, P = g.X, len(g.grid), len(g.patients)
    sign = 1.0 if det.direction == "decrease" else -1.0
    all_met, any_na = c["sudden"]
    r_idx, c_idx = np.nonzero(all_met & ~any_na)  # row-major: patient, then session order
    pos = g.pre_pos[c_idx]
    magnitude = sign * c["drop"][r_idx, c_idx]
    post = c["x_n1"][r_idx, c_idx]
    reversal_value = post + sign * magnitude / 2
    window = np.arange(K)[None, :] >= (pos + det.reversal_from)[:, None]
    with np.errstate(invalid="ignore"):
        back = (sign * (X[r_idx] - reversal_value[:, None]) > 0) & window
    reversed_ = back.any(axis=1)
    first_back = back.argmax(axis=1) if K else np.zeros(0, dtype=int)
    rev_session = np.where(reversed_, g.grid.astype("float64")[first_back], np.nan)

    def _at(offset: int) -> np.ndarray:
        j = pos + offset
        ok = (j >= 0) & (j < K)
        return np.where(ok, X[r_idx, np.clip(j, 0, K - 1)], np.nan)

    tx_change = (sign * (X[:, 0] - X[:, -1]) if K else np.full(P, np.nan))[r_idx]
    with np.errstate(invalid="ignore", divide="ignore"):
        proportion = np.where(tx_change != 0, magnitude / tx_change, np.nan)
    counts = np.bincount(r_idx, minlength=P)
    number = np.ones(len(r_idx), dtype="int64")
    if len(r_idx):
        start = np.r_[0, np.flatnonzero(np.diff(r_idx)) + 1]
        number = np.arange(len(r_idx)) - np.repeat(start, np.diff(np.r_[start, len(r_idx)])) + 1
    at = (r_idx, c_idx)
    return pd.DataFrame({
        "patient": pd.Series(g.patients.to_numpy()[r_idx], dtype=g.patients.dtype),
        "change_number": number.astype("int64"),
        "n_changes": counts[r_idx].astype("int64"),
        "pre_session": g.grid[pos],
        "post_session": g.grid[pos + 1],
        "interval": _labels(g, det)[c_idx],
        "direction": pd.Series([det.direction] * len(r_idx), dtype=object),
        "magnitude": magnitude,
        "pre_score": c["x_n"][at],
        "post_score": post,
        "x_n_minus2": _at(-2),
        "x_n_minus1": _at(-1),
        "x_n_plus2": _at(2),
        "x_n_plus3": _at(3),
        "pre_mean": c["m_pre"][at],
        "post_mean": c["m_post"][at],
        "pre_sd": c["s_pre"][at],
        "post_sd": c["s_post"][at],
        "n_pre": c["n_pre"][at].astype("int64"),
        "n_post": c["n_post"][at].astype("int64"),
        "tx_change": tx_change,
        "change_proportion": proportion,
        "reversal_value": reversal_value,
        "reversal": reversed_.astype(bool),
        "reversal_session": rev_session,
    })


def _episodes_from_changes(ad: AllianceData, changes: pd.DataFrame,
                           det: SuddenChangeDetector) -> pd.DataFrame:
    """Rupture-repair episodes from the sudden changes (module notes); no overlaps."""
    sign = 1.0 if det.direction == "decrease" else -1.0
    rated = ad.frame.loc[ad.frame["alliance"].notna()]
    by_patient = {p: g for p, g in rated.groupby("patient", sort=False)}
    rows = []
    for p, ch in changes.groupby("patient", sort=False):
        g = by_patient[p]
        sess, score = g["session"].to_numpy(dtype="float64"), g["alliance"].to_numpy(float)
        end = -np.inf
        for r in ch.itertuples(index=False):
            if r.post_session <= end:
                continue  # inside the previous, still open episode: it deepens that one
            repaired = bool(r.reversal)
            stop = r.reversal_session if repaired else np.inf
            span = (sess >= r.post_session) & (sess < stop)
            k = int(np.argmax(-sign * score[span]))
            nadir_s, nadir = sess[span][k], score[span][k]
            rows.append({"patient": p, "rupture_session": r.post_session,
                         "nadir_session": nadir_s, "nadir_level": nadir,
                         "pre_level": r.pre_score, "depth": sign * (r.pre_score - nadir),
                         "repair_session": stop if repaired else np.nan,
                         "repaired": repaired, "censored": not repaired})
            end = stop
    raw = pd.DataFrame(rows, columns=["patient", "rupture_session", "nadir_session",
                                      "nadir_level", "pre_level", "depth", "repair_session",
                                      "repaired", "censored"])
    if len(raw) == 0:
        raw["patient"] = raw["patient"].astype(ad.patients.dtype)
    raw["method"] = det.label
    raw["source"] = "scores"
    return finalize_episodes(raw, patient_dtype=ad.patients.dtype)
