"""Alternative stable paths of a patient: the level search and averaging over explanations.

EM climbs to the nearest optimum of each patient's stable path
(:mod:`alliancetrack.detection.hmm_model`): a patient whose level starts at the
median of ratings that are mostly in a long rupture would stay there, and a
slow decline once read as a rupture stays one, as the stable path is then
fitted to the ratings with the dip added back.  This module scores
alternative stable paths by the patient's HMM log-likelihood plus the log
prior of the path (the penalised likelihood EM climbs) and

* moves each patient to their best candidate during the fit
  (:func:`level_search`);
* after the fit, refines each candidate to its own optimum (the shared
  parameters fixed) and averages the rupture probabilities over these
  explanations with weights proportional to their penalised likelihood
  (:func:`average_paths`): where "a rupture" and "a slow decline" explain a
  patient about equally well the probabilities say so, instead of taking
  whichever EM reached first with certainty (a discrete approximation to
  integrating over the stable path; Hoeting et al. 1999), the weights
  tempered by a temperature (:func:`temper`; Guo et al. 2017) because the
  penalised likelihood at each optimum is too decisive between explanations
  that are about equally good.

References
----------
Guo, C., Pleiss, G., Sun, Y., & Weinberger, K. Q. (2017). On calibration of
modern neural networks. *Proceedings of the 34th International Conference on
Machine Learning*, PMLR 70, 1321-1330.
Hoeting, J. A., Madigan, D., Raftery, A. E., & Volinsky, C. T. (1999).
Bayesian model averaging: a tutorial. *Statistical Science*, 14(4), 382-401.
Holmes, C. C., & Walker, S. G. (2017). Assigning a value to a power likelihood
in a general Bayesian model. *Biometrika*, 104(2), 497-503.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace

import numpy as np

from alliancetrack.detection.base import worker_count
from alliancetrack.detection.hmm_depth import DIP_FACTOR_GRID, dip_factor_log_prior
from alliancetrack.detection.hmm_model import (
    Cohort,
    HMMParams,
    count_distribution,
    effective,
    forward_backward,
    forward_loglik,
    hmm_log_emissions,
    m_patients,
    onset_probabilities,
    row_quantile,
)
from alliancetrack.detection.hmm_noise import sigma_log_prior
from alliancetrack.detection.hmm_trend import smooth_trend, trend_log_prior

__all__ = ["NO_BENDING", "Bending", "PathAverage", "average_paths", "depth_search", "fit_bending",
           "follow_path", "level_search", "map_row_blocks", "path_log_prior", "path_objective",
           "row_blocks"]

#: SD of the bends of the path that follows the ratings in the level search (share of
#: the median noise SD).
FOLLOW_SD = 0.3
#: Quantiles of a patient's ratings tried as their stable level by :func:`level_search`.
LEVEL_QUANTILES = (0.5, 0.7, 0.85, 1.0)
#: EM iterations (patients' own parameters only) that take an alternative explanation to
#: its optimum in :func:`average_paths`.
REFINE_ITER = 8
#: Patients per chunk of :func:`average_paths` (fixed: results do not depend on threads).
CHUNK = 10_000
#: Default temperature of the averaging over explanations (:func:`temper`).
TEMPERATURE = 2.5
#: Quantile of a patient's ratings at which the flat alternative path of
#: :func:`average_paths` starts.
FLAT_QUANTILE = 0.85


@dataclass(frozen=True)
class Bending:
    """The bending regime of the averaging: a share of patients whose stable level bends more.

    Attributes
    ----------
    share : float
        Prior probability that a patient's stable level follows the bending
        regime (0: no bending regime; the averaging is the plain one).
    q2 : float
        Bending variance of the slope's random walk in that regime (the calm
        regime keeps the fitted one).
    rounds : int
        EM rounds of :func:`fit_bending`; ``converged`` whether the share settled.
    """

    share: float
    q2: float
    rounds: int = 0
    converged: bool = True


#: No bending regime.
NO_BENDING = Bending(0.0, 0.0)
#: Starting share and bending SD (a multiple of the calm regime's) of :func:`fit_bending`.
BEND_SHARE_START, BEND_SD_START = 0.2, 4.0
#: Below this share the bending regime is dropped (the plain averaging is used).
BEND_SHARE_MIN = 5e-3
#: EM rounds of :func:`fit_bending` at most, and the relative change of the share that stops it.
BEND_ROUNDS, BEND_TOL = 40, 0.01
#: Patients per chunk of the E-step of :func:`fit_bending` (fixed: results do not depend on
#: threads).
BEND_CHUNK = 500


def _stable_log_prior(cohort: Cohort, params: HMMParams, slope: np.ndarray) -> np.ndarray:
    """Each patient's log prior of their stable path and noise scale."""
    tr = params.trend
    return (trend_log_prior(params.base, slope, cohort.h, tr["q2"], tr["m0"], tr["P0"],
                            cohort.steps, tr.get("bend_df"))
            + sigma_log_prior(params.sigma**2, params.prior_df, params.sigma2_prior))


def path_log_prior(cohort: Cohort, params: HMMParams, slope: np.ndarray) -> np.ndarray:
    """Each patient's log prior of their stable path and noise scale (and dip factor)."""
    return _stable_log_prior(cohort, params, slope) + dip_factor_log_prior(params)


def path_objective(cohort: Cohort, params: HMMParams, slope: np.ndarray) -> np.ndarray:
    """Each patient's HMM log-likelihood plus the log priors of their stable path and noise."""
    ll = forward_loglik(hmm_log_emissions(cohort.X, params, cohort.bounds), params.start,
                        params.trans)
    return ll + path_log_prior(cohort, params, slope)


def follow_path(cohort: Cohort, params: HMMParams) -> tuple[np.ndarray, np.ndarray]:
    """A stable path that follows the ratings (as if there were no ruptures), and its slope."""
    tr = params.trend
    obs = np.isfinite(cohort.X)
    q2 = max(tr["q2"], (FOLLOW_SD * params.sigma2_prior ** 0.5) ** 2)
    fit = smooth_trend(np.where(obs, cohort.X, 0.0), obs.astype(float), cohort.h,
                       params.sigma**2, q2, tr["m0"], tr["P0"], cohort.steps)
    return fit.level, fit.slope


def level_search(cohort: Cohort, params: HMMParams) -> None:
    """Move each patient's stable path to the best of a few candidates (in place).

    EM climbs to the nearest optimum: a patient whose level starts at the
    median of ratings that are mostly in a long rupture would stay there, with
    their first, higher, sessions taken for noise; and a slow decline once
    read as a rupture stays one, as the stable path is then fitted to the
    ratings with the dip added back.  The candidates are the current stable
    path, shifted so that its mean over the rated sessions is a quantile of
    the patient's ratings, a flat path at that quantile, and a path that
    follows the ratings (a smooth of the ratings themselves,
    :func:`follow_path`).  Each is scored by the HMM
    log-likelihood plus the log prior of the path, with the shared
    parameters fixed, one candidate at a time for all patients; each patient
    keeps their best.
    """
    X = cohort.X
    tr = params.trend
    current = params.base.copy()
    slope = tr.get("slope", np.zeros_like(current))
    best = path_objective(cohort, params, slope)
    centred = current - np.nanmean(np.where(np.isfinite(X), current, np.nan), axis=1)[:, None]
    centred = np.nan_to_num(centred)
    srt = np.sort(X, axis=1)
    candidates = []
    for q in LEVEL_QUANTILES:
        quant = row_quantile(X, q, srt)[:, None]
        candidates.append((centred + quant, slope))
        if tr["fit_q2"]:  # flat at the quantile: a lasting drop need not be a sloping line
            flat = np.zeros_like(slope)
            candidates.append((quant + flat, flat))
    if tr["fit_q2"]:
        candidates.append(follow_path(cohort, params))
    for cand, cand_slope in candidates:
        params.base = cand
        obj = path_objective(cohort, params, cand_slope)
        better = obj > best + 1e-9
        current = np.where(better[:, None], cand, current)
        slope = np.where(better[:, None], cand_slope, slope)
        best = np.where(better, obj, best)
    params.base = current
    tr["slope"] = slope


def depth_search(cohort: Cohort, params: HMMParams) -> None:
    """Move each patient's dip factor to the best of a grid (in place; ``patient_dips`` only).

    EM stays with the reading it started in: a drop read as a gradual
    decline has the patient's depth fitted to the decline, and the rupture
    reading, evaluated at that depth, looks worse than it is (and the other
    way round).  Each factor of :data:`alliancetrack.detection.hmm_depth.DIP_FACTOR_GRID`
    is scored by the patient's HMM log-likelihood (the states summed out) plus
    the log priors (:func:`path_objective`), the shared parameters and the
    stable path fixed; each patient keeps their best factor, the current one
    included.
    """
    if not params.patient_dips:
        return
    slope = params.trend.get("slope", np.zeros_like(params.base))
    stable = _stable_log_prior(cohort, params, slope)  # the same for every factor

    def objective() -> np.ndarray:  # path_objective, the stable path's prior computed once
        ll = forward_loglik(hmm_log_emissions(cohort.X, params, cohort.bounds), params.start,
                            params.trans)
        return ll + (stable + dip_factor_log_prior(params))

    best = objective()
    current = params.dip_factor.copy()
    for factor in DIP_FACTOR_GRID:
        params.dip_factor = np.full_like(current, factor)
        obj = objective()
        better = obj > best + 1e-9
        current = np.where(better, factor, current)
        best = np.where(better, obj, best)
    params.dip_factor = current


@dataclass(frozen=True)
class PathAverage:
    """Rupture probabilities averaged over alternative explanations of each patient.

    Attributes
    ----------
    weights : ndarray (N, C)
        Weight of each explanation (the fitted one first); an explanation
        that reached the same optimum as an earlier one gets weight 0.
    p_rupture, onset : ndarray (N, T)
        Averaged posterior probability of a rupture state and of a rupture
        starting, at every step.
    base : ndarray (N, T)
        Stable path of each patient's most weighted explanation.
    log_e : ndarray (N, T, K)
        Log emissions under that explanation (for the Viterbi path).
    counts : ndarray (N, C + 1)
        Averaged posterior distribution of the number of ruptures
        (:func:`alliancetrack.detection.hmm_model.count_distribution`).
    """

    weights: np.ndarray
    p_rupture: np.ndarray
    onset: np.ndarray
    base: np.ndarray
    log_e: np.ndarray
    counts: np.ndarray


def _alternatives(cohort: Cohort, params: HMMParams) -> list[HMMParams]:
    """Starting points of other explanations: a path that follows the ratings, a flat one."""
    follow = replace(params, trend=dict(params.trend))
    follow.base, follow.trend["slope"] = follow_path(cohort, params)
    flat = replace(params, trend=dict(params.trend))
    level = row_quantile(cohort.X, FLAT_QUANTILE)
    flat.base = np.repeat(level[:, None], cohort.X.shape[1], axis=1)
    flat.trend["slope"] = np.zeros_like(flat.base)
    for alt in (follow, flat):
        alt.trend.pop("weight", None)
    return [follow, flat]


def _refine(cohort: Cohort, params: HMMParams, n_iter: int) -> HMMParams:
    """EM on the patients' own parameters only (shared ones fixed), in place."""
    for _ in range(n_iter):
        log_e = hmm_log_emissions(cohort.X, params, cohort.bounds)
        post = forward_backward(log_e, params.start, params.trans)[0]
        y, w, _, _, var = effective(cohort.X, params, cohort.bounds)
        m_patients(post, y, w, var, cohort, params, shared=False)
    return params


def average_paths(cohort: Cohort, params: HMMParams, n_iter: int = REFINE_ITER,
                  n_jobs: int | None = 1, bending: Bending = NO_BENDING,
                  temperature: float = TEMPERATURE) -> PathAverage:
    """Average the rupture probabilities over a patient's alternative explanations.

    The fitted explanation and two alternatives (a stable path that follows
    the ratings, so that a slow decline is a decline; a flat path high in the
    patient's ratings, so that a lasting drop is a rupture) are each taken to
    their own optimum by ``n_iter`` EM iterations on the patient's own
    parameters, the shared ones fixed.  Each explanation is weighted by its
    penalised likelihood, ``exp(path_objective)`` normalised over the
    explanations (an approximation to integrating over the stable path that
    leaves out the curvature of each optimum); one that reached the same
    optimum as an earlier one is counted once.  The weights are then tempered
    (:func:`temper`, ``temperature``; 1 leaves them as they are).

    With a ``bending`` regime (:func:`fit_bending`) the three explanations
    are also taken to their optima under that regime's larger bending
    variance, and all six are weighted by penalised likelihood, the regime's
    prior share and the Laplace volume of the path (see :func:`_explanations`).

    Patients are independent here (the shared parameters are fixed), so in
    cohorts above :data:`CHUNK` patients the work runs in chunks of
    :data:`CHUNK` patients on ``n_jobs`` threads (NumPy releases the GIL);
    the chunks do not depend on ``n_jobs``, so neither do the results.

    Examples
    --------
    >>> import numpy as np
    >>> from alliancetrack.detection.hmm_fit import fit_hmm
    >>> from alliancetrack.detection.hmm_model import Cohort
    >>> rng = np.random.default_rng(0)
    >>> X = 4 + rng.normal(0, 0.1, (60, 10)); X[:30, 4:6] -= 1.0
    >>> S = np.tile(np.arange(1.0, 11), (60, 1))
    >>> best, _ = fit_hmm(X, S, seed=1)
    >>> avg = average_paths(Cohort.of(X, S, None), best.params)
    >>> bool(np.allclose(avg.weights.sum(axis=1), 1)), bool((avg.p_rupture[:30, 4] > 0.9).all())
    (True, True)
    """
    parts = map_row_blocks(lambda c, p: _average(c, p, n_iter, bending, temperature), cohort,
                           params, CHUNK, n_jobs)
    if len(parts) == 1:
        return parts[0]
    return PathAverage(*(np.concatenate([getattr(p, f.name) for p in parts])
                         for f in fields(PathAverage)))


def row_blocks(n: int, size: int) -> list[np.ndarray]:
    """Row indices ``0..n-1`` in consecutive chunks of ``size`` (fixed, whatever the threads)."""
    return [np.arange(a, min(a + size, n)) for a in range(0, n, size)]


def map_row_blocks(fn, cohort: Cohort, params: HMMParams, size: int, n_jobs: int | None) -> list:
    """``fn(cohort, params)`` on consecutive blocks of ``size`` patients (:func:`row_blocks`),
    on ``n_jobs`` threads (NumPy releases the GIL), the results in block order.  One block:
    ``fn`` gets ``cohort`` and ``params`` themselves.  The blocks do not depend on
    ``n_jobs``, so neither do the results where patients are independent given ``params``'
    shared parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from alliancetrack.detection.hmm_model import Cohort, HMMParams
    >>> X = np.zeros((5, 3)); S = np.tile(np.arange(1.0, 4), (5, 1))
    >>> p = HMMParams(start=np.array([1.0, 0, 0]), trans=np.eye(3), dip=1.0,
    ...               base=X.copy(), sigma=np.ones(5), df=10.0)
    >>> map_row_blocks(lambda c, q: len(c.X), Cohort.of(X, S, None), p, 2, n_jobs=2)
    [2, 2, 1]
    """
    blocks = row_blocks(len(cohort.X), size)
    if len(blocks) <= 1:
        return [fn(cohort, params)]
    with ThreadPoolExecutor(max_workers=worker_count(n_jobs)) as ex:
        return list(ex.map(lambda r: fn(cohort.rows(r), params.rows(r)), blocks))


def _with_q2(params: HMMParams, q2: float) -> HMMParams:
    return replace(params, trend={**params.trend, "q2": q2})


def _regime(cohort: Cohort, params: HMMParams, n_iter: int, refit_fitted: bool):
    """The fitted explanation (refined in place if asked: ``params`` is then the bending
    regime's own copy) and the two refined alternatives (new objects, started from the
    fitted explanation before it is refined)."""
    alternatives = _alternatives(cohort, params)
    first = _refine(cohort, params, n_iter) if refit_fitted else params
    return [first] + [_refine(cohort, alt, n_iter) for alt in alternatives]


def _trend_fit(cohort: Cohort, params: HMMParams, post: np.ndarray):
    """One M-step of the stable path under an explanation with state posteriors ``post``
    (its Laplace volume and bend statistics), leaving the explanation as it is."""
    y, w, _, _, var = effective(cohort.X, params, cohort.bounds)
    return m_patients(post, y, w, var, cohort, replace(params, trend=dict(params.trend)),
                      shared=False, log_det=True)


def _explanations(cohort: Cohort, params: HMMParams, n_iter: int,
                  bending: Bending = NO_BENDING):
    """Explanations of every patient, their weights, log emissions, rupture probabilities and
    (with a bending regime) bend statistics.

    Without a bending regime: the fitted explanation and two refined
    alternatives, weighted by penalised likelihood.  With one: these three in
    the calm regime and the same three refined under the bending variance,
    each weighted by penalised likelihood times its regime's prior share times
    the Laplace volume of its path (``exp(½·log|Cov(path)|)``: without it the
    bending regime, whose paths spread over a larger space, is never chosen).
    """
    if "slope" not in params.trend:
        params = replace(params, trend={**params.trend, "slope": np.zeros_like(params.base)})
    obs = np.isfinite(cohort.X)
    regimes = [(params, False, 0.0)]
    if bending.share > 0:
        regimes = [(params, False, np.log1p(-bending.share)),
                   (_with_q2(params, bending.q2), True, np.log(bending.share))]
    cands, score, regime_of, stats, p_r, log_es = [], [], [], [], [], []
    for r, (base, refit, log_share) in enumerate(regimes):
        for c in _regime(cohort, base, n_iter, refit):
            log_e = hmm_log_emissions(cohort.X, c, cohort.bounds)
            post, ll, _ = forward_backward(log_e, c.start, c.trans)
            obj = ll + path_log_prior(cohort, c, c.trend["slope"]) + log_share
            if bending.share > 0:
                fit = _trend_fit(cohort, c, post)
                obj = obj + 0.5 * fit.log_det
                stats.append(fit.bend_stat)
            cands.append(c)
            score.append(obj)
            regime_of.append(r)
            p_r.append(np.where(obs, post[:, :, c.ruptured].sum(axis=2), 0.0))
            log_es.append(log_e)
    score = np.stack(score, axis=1)
    for k in range(1, len(cands)):  # the same optimum reached twice counts once
        for j in range(k):
            if regime_of[j] != regime_of[k]:
                continue
            with np.errstate(invalid="ignore"):  # -inf - -inf: j was itself a repeat
                same = (np.abs(p_r[k] - p_r[j]).max(axis=1) < 0.02) & \
                    (np.abs(score[:, k] - score[:, j]) < 0.05)
            score[same, k] = -np.inf
    weights = np.exp(score - score.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    return cands, weights, log_es, p_r, (np.array(regime_of), stats)


def _bending_estep(cohort: Cohort, params: HMMParams, n_iter: int, bend: Bending):
    """Summed weight of the bending regime, bend statistics and steps (one chunk)."""
    _, weights, _, _, (regime_of, stats) = _explanations(cohort, params, n_iter, bend)
    bending = np.flatnonzero(regime_of == 1)
    resp = weights[:, bending].sum(axis=1)
    stat = sum(weights[:, k] * stats[k] for k in bending)
    return float(resp.sum()), float(np.sum(stat)), float((resp * cohort.steps[:, 1:].sum(axis=1)).sum())


def fit_bending(cohort: Cohort, params: HMMParams, n_iter: int = REFINE_ITER,
                max_rounds: int = BEND_ROUNDS, tol: float = BEND_TOL,
                n_jobs: int | None = 1) -> Bending:
    """Estimate the bending regime of the averaging by EM over the explanations.

    A cohort's stable levels are mostly straight, and EM fits the bending
    variance to them; the few patients whose level truly declines over a few
    sessions then look like ruptures that are never repaired.  This lets a
    share of patients bend more: the share and that regime's bending variance
    are updated from the explanations' weights (E-step: the weights of
    :func:`_explanations` with a bending regime; M-step: the mean weight of
    the bending regime, and its weighted bend statistics), the shared
    parameters fixed, until the share changes by less than ``tol`` of itself.
    A share that falls below :data:`BEND_SHARE_MIN` drops the regime (the
    cohort's levels do not bend more than EM allows for).  The E-step runs in
    fixed chunks of :data:`BEND_CHUNK` patients on ``n_jobs`` threads (the
    result does not depend on ``n_jobs``).

    Examples
    --------
    Straight levels with ruptures: no bending regime.

    >>> import numpy as np
    >>> from alliancetrack.detection.hmm_fit import fit_hmm
    >>> rng = np.random.default_rng(0)
    >>> X = 4 + rng.normal(0, 0.1, (100, 12)); X[:40, 4:6] -= 1.0
    >>> S = np.tile(np.arange(1.0, 13), (100, 1))
    >>> best, _ = fit_hmm(X, S, seed=1)
    >>> fit_bending(Cohort.of(X, S, None), best.params)
    Bending(share=0.0, q2=0.0, rounds=..., converged=True)
    """
    q2 = params.trend.get("q2", 0.0)
    if q2 <= 0:
        return NO_BENDING
    n = len(cohort.X)
    parts = row_blocks(n, BEND_CHUNK)
    bend = Bending(BEND_SHARE_START, BEND_SD_START**2 * q2)
    with ThreadPoolExecutor(max_workers=worker_count(n_jobs)) as ex:
        for rounds in range(1, max_rounds + 1):
            sums = list(ex.map(lambda r, b=bend: _bending_estep(cohort.rows(r), params.rows(r),
                                                                 n_iter, b), parts))
            resp, stat, steps = (sum(col) for col in zip(*sums, strict=True))
            share = resp / n
            if share < BEND_SHARE_MIN:
                return Bending(0.0, 0.0, rounds, True)
            q2_bend = max(stat / (2 * max(steps, 1e-12)), q2)
            done = abs(share - bend.share) < tol * bend.share
            bend = Bending(share, q2_bend, rounds, done)
            if done:
                break
    return bend


def temper(weights: np.ndarray, temperature: float) -> np.ndarray:
    """Explanation weights raised to the power ``1 / temperature``, renormalised per row.

    Each explanation's weight is its penalised likelihood at its own optimum.
    That uses the ratings twice (to place the explanation's stable path and
    to weigh it) and takes the model as true, so it is too decisive between
    explanations that fit about equally well: where "a rupture" and "a slow
    decline" compete, the middle probabilities were over-confident.  A
    temperature ``T > 1`` flattens the weights — a power (fractional)
    likelihood (Holmes & Walker 2017), or temperature scaling of log weights
    (Guo et al. 2017) — where the explanations compete, and leaves a patient
    whom one explanation fits far better (log weights tens of units apart)
    as they were.  An explanation of weight 0 (a repeat) stays at 0; the
    ranking of the explanations does not change.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.array([[0.8, 0.2, 0.0], [1.0, 1e-12, 0.0]])
    >>> temper(w, 2.0).round(3).tolist()
    [[0.667, 0.333, 0.0], [1.0, 0.0, 0.0]]
    """
    if temperature == 1:
        return weights
    with np.errstate(divide="ignore"):
        log_w = np.log(weights) / temperature
    w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
    return w / w.sum(axis=1, keepdims=True)


def _average(cohort: Cohort, params: HMMParams, n_iter: int, bending: Bending,
             temperature: float = TEMPERATURE) -> PathAverage:
    """:func:`average_paths` on one set of patients."""
    cands, weights, log_es, p_r, _ = _explanations(cohort, params, n_iter, bending)
    weights = temper(weights, temperature)
    top = weights.argmax(axis=1)
    rows = np.arange(len(top))
    onset = sum(weights[:, k, None] * onset_probabilities(log_es[k], c.start, c.trans,
                                                          c.ruptured)
                for k, c in enumerate(cands))
    counts = sum(weights[:, k, None] * count_distribution(log_es[k], c.start, c.trans,
                                                          c.ruptured, steps=cohort.steps)
                 for k, c in enumerate(cands))
    return PathAverage(
        weights=weights,
        p_rupture=sum(weights[:, k, None] * p_r[k] for k in range(len(cands))),
        onset=onset,
        base=np.stack([c.base for c in cands], axis=1)[rows, top],
        log_e=np.stack(log_es, axis=1)[rows, top], counts=counts)
