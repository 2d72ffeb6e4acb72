"""Fitting the cohort hidden Markov model of alliance ruptures (arrays in, arrays out).

The model is in :mod:`alliancetrack.detection.hmm_model`.  It is fitted by
expectation-conditional-maximisation (EM with the t written as a normal scale
mixture; Liu & Rubin 1995) over the whole cohort at once: E-step by the
forward-backward recursion, M-step for the patients' stable paths and noise
scales, the dip, and the shared transitions; the patients' stable paths are
moved to the best of a few candidates at a few early iterations
(:func:`alliancetrack.detection.hmm_paths.level_search`).  Several starts are
run and the best by log-likelihood kept.

References
----------
Liu, C., & Rubin, D. B. (1995). ML estimation of the t distribution using EM
and its extensions, ECM and ECME. *Statistica Sinica*, 5, 19-39.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from alliancetrack.detection.base import worker_count
from alliancetrack.detection.hmm_depth import DIP_FACTOR_SD_START
from alliancetrack.detection.hmm_model import (
    ALLOWED,
    ALLOWED_PARTIAL,
    DECLINE_STEPS,
    RUPTURED,
    STATE_DIP,
    Cohort,
    HMMParams,
    effective,
    forward_backward,
    hmm_log_emissions,
    m_dip,
    m_patients,
)
from alliancetrack.detection.hmm_noise import update_df
from alliancetrack.detection.hmm_paths import depth_search, level_search, map_row_blocks

__all__ = ["FitResult", "fit_hmm"]



@dataclass
class FitResult:
    """One EM run: final parameters, log-likelihood, iterations, convergence."""

    params: HMMParams
    loglik: float
    n_iter: int
    converged: bool
    start: int
    n_patients: int = 0


#: Starting transitions (rows: from; columns: to) as functions of the per-session
#: rupture and repair probabilities, for 3 and 4 (partial) states.
def _start_transitions(p_r: float, p_rep: float, n_states: int) -> np.ndarray:
    if n_states == 4:
        return np.array([[1 - p_r, 0.7 * p_r, 0.3 * p_r, 0.0],
                         [0.6 * p_rep, 1 - p_rep, 0, 0.4 * p_rep], [0, 0, 1, 0],
                         [0.1, 0.7 * p_r, 0.3 * p_r, 0.9 - p_r]])
    return np.array([[1 - p_r, 0.7 * p_r, 0.3 * p_r], [p_rep, 1 - p_rep, 0], [0, 0, 1]])


_STATES = {  # n_states: (start probabilities, state dips, allowed moves, ruptured)
    3: (np.array([0.95, 0.03, 0.02]), STATE_DIP, ALLOWED, RUPTURED),
    4: (np.array([0.93, 0.03, 0.02, 0.02]), np.array([0.0, 1.0, 1.0, 0.4]), ALLOWED_PARTIAL,
        np.array([False, True, True, False])),
}
#: Starting probability per session that a gradual decline starts, and of staying at
#: one of its steps for another session.
DECLINE_START, RAMP_STAY_START = 0.03, 0.4
#: Largest probability of staying at a step of a gradual decline for another session:
#: a decline reaches its new level within a few sessions (slower drifts are the stable
#: level's own bends), and no step can become a lasting shift of its own.
RAMP_STAY_MAX = 0.5


def _state_space(n_states: int, decline: bool, p_r: float, p_rep: float):
    """Start probabilities, transitions, state dips, allowed moves, ruptured states and the
    decline steps of the chain (the gradual-decline states, if any, after the others)."""
    start, state_dip, allowed, ruptured = _STATES[n_states]
    trans = _start_transitions(p_r, p_rep, n_states)
    if not decline:
        return (start.copy(), trans, state_dip.copy(), allowed.copy(), ruptured.copy(),
                np.zeros(n_states))
    steps = np.r_[np.zeros(n_states), DECLINE_STEPS]
    k = len(steps)
    ramp = np.arange(n_states, k - 1)
    big_allowed = np.zeros((k, k), dtype=bool)
    big_allowed[:n_states, :n_states] = allowed
    big_allowed[0, n_states] = True              # stable -> first step
    big_allowed[ramp, ramp] = big_allowed[ramp, ramp + 1] = True
    big_allowed[k - 1, k - 1] = True              # declined: lasting
    big = np.zeros((k, k))
    big[:n_states, :n_states] = trans
    big[0, 0] -= DECLINE_START
    big[0, n_states] = DECLINE_START
    big[ramp, ramp], big[ramp, ramp + 1] = RAMP_STAY_START, 1 - RAMP_STAY_START
    big[k - 1, k - 1] = 1.0
    none = np.zeros(len(DECLINE_STEPS))
    return (np.r_[start, none],  # no series starts mid-decline
            big, np.r_[state_dip, DECLINE_STEPS], big_allowed, np.r_[ruptured, none > 0], steps)


def _tie_ramp(trans: np.ndarray, counts: np.ndarray, params: HMMParams) -> np.ndarray:
    """One shared pace for the steps of a gradual decline (pooled expected counts, at most
    :data:`RAMP_STAY_MAX`), so that no step becomes a lasting state of its own."""
    steps = params.decline_steps
    ramp = np.flatnonzero((steps > 0) & (steps < 1))
    if not len(ramp):
        return trans
    stay = counts[ramp, ramp].sum() + 0.5
    move = counts[ramp, ramp + 1].sum() + 0.5
    pace = min(stay / (stay + move), RAMP_STAY_MAX)
    trans = trans.copy()
    trans[ramp, ramp], trans[ramp, ramp + 1] = pace, 1 - pace
    return trans


def _initial(X, rng, k: int, df: float, dip_unit: str, n_states: int,
             drift: bool, decline: bool = False) -> HMMParams:
    """Robust starting values; start 0 is fixed, later starts are drawn from ``rng``."""
    level = np.nanmedian(X, axis=1)
    diffs = np.diff(X, axis=1)
    mad = np.nanmedian(np.abs(diffs - np.nanmedian(diffs, axis=1, keepdims=True)), axis=1)
    spread = np.nanmedian(mad[np.isfinite(mad) & (mad > 0)]) if np.any(mad > 0) else 0.1
    sigma = np.where(np.isfinite(mad) & (mad > 0), 1.4826 * mad / np.sqrt(2), spread)
    sigma = np.maximum(sigma, 0.25 * spread)
    s2 = float(np.median(sigma**2))
    if k == 0:
        mult, p_r, p_rep = 4.0, 0.05, 0.4
    else:
        mult, p_r, p_rep = rng.uniform(2.5, 7), rng.uniform(0.02, 0.15), rng.uniform(0.2, 0.7)
    med = float(np.sqrt(s2))
    dip = mult if dip_unit == "noise" else mult * med
    trend = {"m0": np.array([float(level.mean()), 0.0]),
             "P0": np.diag([float(max(level.var(), 1e-4)), 0.05**2]),
             "q2": (DRIFT_START * med) ** 2 if drift else 0.0, "fit_q2": drift,
             "bend_df": BEND_DF if drift else None}
    start, trans, state_dip, allowed, ruptured, steps = _state_space(n_states, decline, p_r,
                                                                       p_rep)
    return HMMParams(start=start, trans=trans,
                     dip=dip, base=np.repeat(level[:, None], X.shape[1], axis=1),
                     sigma=sigma, df=df, dip_unit=dip_unit, trend=trend, sigma2_prior=s2,
                     mult=state_dip, allowed=allowed, ruptured=ruptured, decline_steps=steps)


#: Starting t degrees of freedom and noise-prior degrees of freedom when they are estimated.
DF_START, PRIOR_DF_START = 10.0, 4.0
#: Degrees of freedom of the t-distributed bends of the stable level's trend.
BEND_DF = 4.0
#: Starting SD of the slope's random walk, as a share of the median noise SD.
DRIFT_START = 0.1
#: Converged: fewer than this share of rated sessions changed their posterior
#: rupture probability by more than ``tol`` in the last iteration.
CONVERGED_SHARE = 1e-3
#: EM iterations before which the level search is repeated.
SEARCH_AT = (1, 10, 30)
#: The same in the whole-cohort fit of a large cohort, whose shared parameters are fixed: one
#: search places every patient; a second one (at iteration 5) changed F1 by at most 0.0004 on
#: 20,000-100,000 patients and cost 3-6 s at 100,000 x 20.
WHOLE_SEARCH_AT = (1,)
#: Patients per block of the whole-cohort fit (:func:`_whole_cohort`).
WHOLE_CHUNK = 10_000


def _run(cohort: Cohort, params: HMMParams, max_iter: int, tol: float, min_dip: float, start: int,
         search_at: tuple[int, ...] = SEARCH_AT, shared: bool = True) -> FitResult:
    """EM from ``params``; with ``shared=False`` only the patients' own parameters move."""
    X, bounds = cohort.X, cohort.bounds
    prev = np.full(X.shape, np.inf)
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 (it is reported)
        if it in search_at:
            level_search(cohort, params)
            if not shared:  # the shared parameters are settled: each patient's depth
                depth_search(cohort, params)
        log_e = hmm_log_emissions(X, params, bounds)
        post, ll, counts = forward_backward(log_e, params.start, params.trans)
        total = float(ll.sum())
        p_rupt = post[:, :, params.ruptured].sum(axis=2)
        change = np.abs(p_rupt - prev)[np.isfinite(X)]
        if it > max(search_at) and (change.size == 0 or
                                    np.mean(change > tol) < CONVERGED_SHARE):
            converged = True
            break
        prev = p_rupt
        y, w, r2, used, var = effective(X, params, bounds)
        m_patients(post, y, w, var, cohort, params, shared=shared)
        if not shared:
            continue
        if params.fit_df:
            params.df = update_df(post, r2, used, params.df)
        m_dip(post, y, w, params, min_dip)
        # a weak Dirichlet prior keeps every allowed transition possible
        trans = np.where(params.allowed, counts + 0.5, 0.0)
        params.trans = _tie_ramp(trans / trans.sum(axis=1, keepdims=True), counts, params)
        # a state the chain cannot start in (a step of a decline) stays so
        st = np.where(params.start > 0, post[:, 0].sum(axis=0) + 0.5, 0.0)
        params.start = st / st.sum()
    return FitResult(params=params, loglik=total, n_iter=it, converged=converged, start=start,
                     n_patients=len(X))


def _whole_cohort(cohort: Cohort, params: HMMParams, max_iter: int, tol: float, min_dip: float,
                  start: int, n_jobs: int | None) -> FitResult:
    """EM over the patients' own parameters, the shared ones fixed: patients are then
    independent, so blocks of :data:`WHOLE_CHUNK` patients run to convergence each on
    ``n_jobs`` threads (fixed blocks: the result does not depend on ``n_jobs``)."""
    parts = map_row_blocks(lambda c, p: _run(c, p, max_iter, tol, min_dip, start,
                                             search_at=WHOLE_SEARCH_AT, shared=False),
                           cohort, params, WHOLE_CHUNK, n_jobs)
    return FitResult(params=HMMParams.stack([p.params for p in parts]),
                     loglik=float(sum(p.loglik for p in parts)),
                     n_iter=max(p.n_iter for p in parts),
                     converged=all(p.converged for p in parts), start=start,
                     n_patients=len(cohort.X))


def fit_hmm(X: np.ndarray, S: np.ndarray, bounds: tuple[float, float] | None = None, *,
            df: float | None = None, dip_unit: str = "scale", n_starts: int = 3,
            max_iter: int = 200, tol: float = 0.01, prior_df: float | None = None, partial: bool = True,
            dip_spread: bool = False, drift: bool = True, decline: bool = False,
            patient_dips: bool = False, subsample: int = 5000, seed: int = 0, n_jobs: int | None = 1) -> tuple[FitResult, list[FitResult]]:
    """Fit the cohort HMM from several starts; the best by log-likelihood first.

    Parameters
    ----------
    X : ndarray (N, T)
        Ratings, higher is better, NaN for missing / padding.
    S : ndarray (N, T)
        Session numbers (NaN for padding): the stable level's trend moves
        with the gaps between sessions.
    bounds : (float, float), optional
        Floor and ceiling of the (mirrored) scale: ratings there are censored.
    subsample : int, default 5000
        With more patients, the starts are run on this many patients drawn
        at random (from ``seed``), which estimate the shared parameters; the
        whole cohort is then fitted once with the best start's shared
        parameters held fixed (one level search, then EM over the
        patients' own parameters to convergence; the patients are then
        independent, so blocks of 10,000 patients run on ``n_jobs``
        threads, each to its own convergence).  Letting the shared
        parameters move in the whole-cohort fit as well changed them little
        but took two to four times the iterations, and with ``decline=True``
        the decline rate crept up and took unrepaired ruptures.  With
        ``patient_dips`` this final fit (run on any cohort, then) starts
        with a search of each patient's dip factor
        (:func:`alliancetrack.detection.hmm_paths.depth_search`); searching
        during the starts as well moved the shared parameters to a worse
        optimum on cohorts with slow declines.

    Other Parameters
    ----------------
    df, dip_unit, n_starts, max_iter, tol, prior_df, partial, dip_spread, drift, decline, \
patient_dips, seed, n_jobs
        As the fields of :class:`alliancetrack.detection.hmm.HMMDetector` (the
        starts and the blocks of the whole-cohort fit run on ``n_jobs``
        threads; the result does not depend on it).

    Returns
    -------
    best : FitResult
    runs : list of FitResult
        Every start (for the convergence report).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = 4 + rng.normal(0, 0.1, (60, 10)); X[:30, 4:6] -= 1.0
    >>> S = np.tile(np.arange(1.0, 11), (60, 1))
    >>> best, runs = fit_hmm(X, S, seed=1)
    >>> round(best.params.dip, 1), best.converged
    (1.0, True)
    """
    cohort = Cohort.of(X, S, bounds)
    rng = np.random.default_rng(seed)
    min_dip = 0.5 if dip_unit == "noise" else 1e-3
    n_states = 4 if partial else 3
    big = len(X) > subsample
    rows = np.sort(rng.choice(len(X), subsample, replace=False)) if big else slice(None)
    sub = cohort.rows(rows)

    def initial(X, k):
        params = _initial(X, rng, k, DF_START if df is None else df, dip_unit, n_states, drift,
                          decline)
        params.fit_dip_sd, params.fit_df = dip_spread, df is None
        if patient_dips:
            params.patient_dips, params.dip_factor_var = True, DIP_FACTOR_SD_START**2
            params.dip_factor, params.dip_info = np.ones(len(X)), np.zeros(len(X))
        params.fit_prior_df = prior_df is None
        params.prior_df = PRIOR_DF_START if prior_df is None else prior_df
        return params

    starts = [initial(sub.X, k) for k in range(n_starts)]  # drawn in order: deterministic
    with ThreadPoolExecutor(max_workers=worker_count(n_jobs)) as ex:
        runs = list(ex.map(lambda k: _run(sub, starts[k], max_iter, tol, min_dip, k),
                           range(n_starts)))
    best = max(runs, key=lambda r: r.loglik)
    if big:  # the whole cohort, from the best start's shared parameters
        params = initial(X, 0)
        shared = best.params
        params.start, params.trans, params.dip = shared.start, shared.trans, shared.dip
        params.mult, params.dip_sd = shared.mult.copy(), shared.dip_sd
        params.dip_factor_var = shared.dip_factor_var
        params.trend, params.df = dict(shared.trend), shared.df
        for key in ("weight", "slope"):  # per patient: those of the subsample do not carry
            params.trend.pop(key, None)
        params.sigma2_prior, params.prior_df = shared.sigma2_prior, shared.prior_df
        best = _whole_cohort(cohort, params, max_iter, tol, min_dip, best.start, n_jobs)
        runs.append(best)
    elif patient_dips:  # the same final fit: each patient's depth searched, shared ones fixed
        best = _whole_cohort(cohort, best.params.rows(np.arange(len(X))), max_iter, tol, min_dip,
                             best.start, n_jobs)
        runs.append(best)
    return best, runs

