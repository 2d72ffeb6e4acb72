"""Fitting the cohort hidden Markov model of alliance ruptures (arrays in, arrays out).

The model behind :class:`alliancetrack.detection.hmm.HMMDetector`, on a
patients × sessions array ``X`` (NaN where a session has no rating, and as
padding after a patient's last session), already mirrored so that higher is
better:

* hidden states *stable*, *ruptured* (two of them: one repaired with a
  shared probability per session, one persisting to the end of treatment)
  and, by default, *partially repaired* and *declined* (see
  :data:`STATE_DIP` and :data:`ALLOWED_DECLINE`), a first-order Markov
  chain with start probabilities ``pi`` and a transition matrix ``A``
  shared by all patients (``A[0, 1] + A[0, 2]``: probability
  that a rupture starts at the next session; ``A[1, 0] + A[1, 3]``: that it
  is repaired);
* in the stable state patient *i* is rated ``level_i + slope_i · z_t + e``;
  in a ruptured state ``dip`` lower (in scale points, or in units of the
  patient's noise scale with ``dip_unit="noise"``), shared by the cohort,
  in the partially repaired state ``rho · dip`` lower, and in the declined
  state (reached only through the partial one, not a rupture) ``dip`` lower;
* ``e`` is Student t with ``df`` degrees of freedom and patient scale
  ``sigma_i`` (robust to outlying sessions), and ratings at the scale's
  ceiling (floor) enter as censored: ``P(X ≥ high)`` (``P(X ≤ low)``);
* missing ratings contribute no emission (likelihood 1): the chain moves
  on through the session, the rating is neither imputed nor guessed.

It is fitted by expectation-conditional-maximisation (EM with the t written
as a normal scale mixture; Liu & Rubin 1995) over the whole cohort at once.
The E-step is the scaled forward-backward recursion (Rabiner 1989),
vectorised over patients: a Python loop over the ≤ a few dozen sessions,
NumPy over the patients.  The M-step updates the patient parameters by
penalised weighted least squares, shrunk toward the cohort (empirical Bayes:
normal priors on level and slope with moment estimates of their spread, a
scaled inverse-chi-square prior on ``sigma_i²`` centred at the cohort median),
then the dip, then the transitions.  Censored ratings enter the M-step at
their conditional mean given the censoring (the EM step of a Tobit model).

References
----------
Rabiner, L. R. (1989). A tutorial on hidden Markov models and selected
applications in speech recognition. *Proceedings of the IEEE*, 77(2), 257-286.
Liu, C., & Rubin, D. B. (1995). ML estimation of the t distribution using EM
and its extensions, ECM and ECME. *Statistica Sinica*, 5, 19-39.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import special

from alliancetrack.detection.hmm_noise import sigma_prior, update_df
from alliancetrack.detection.hmm_trend import gaps, smooth_trend, trend_log_prior

__all__ = ["HMMParams", "fit_hmm", "forward_backward", "hmm_log_emissions",
           "onset_probabilities", "viterbi"]

_TINY = 1e-300

#: The states: stable (0), a rupture that is repaired with a shared probability per
#: session (1), a rupture that persists to the end of treatment (2; absorbing), and
#: (with ``partial=True``) a partially repaired state (3) a shared fraction ``rho`` of
#: the dip below the stable level, reached from a rupture or, as a small lasting
#: shift, from the stable state; it is not a rupture.  Both rupture states are the
#: same dip below the patient's stable level; the persistent state lets rupture
#: lengths be a mixture of short (geometric) and unrepaired ones, which two states
#: cannot express.
STATE_DIP = np.array([0.0, 1.0, 1.0])
RUPTURED = STATE_DIP > 0
ALLOWED = np.array([[True, True, True], [True, True, False], [False, False, True]])
ALLOWED_PARTIAL = np.array([[True, True, True, False], [True, True, False, True],
                            [False, False, True, False], [True, True, True, True]])
#: With ``decline=True`` a fifth state, *declined* (4): as low as a rupture but reached
#: only through the partially repaired / shifted state, i.e. step by step, and
#: absorbing; it is not a rupture.  A rupture is an abrupt drop from the stable (or
#: partially repaired) level; a slow slide that ends as low is a decline.
ALLOWED_DECLINE = np.array([[True, True, True, True, False], [True, True, False, True, False],
                            [False, False, True, False, False],
                            [True, True, True, True, True],
                            [False, False, False, False, True]])


# ----------------------------------------------------------------------------- recursions
def forward_backward(log_e: np.ndarray, start: np.ndarray, trans: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Posterior state probabilities of many sequences at once (scaled recursions).

    Parameters
    ----------
    log_e : ndarray, shape (N, T, K)
        Log emission densities; a row of zeros where a sequence has no
        observation (missing or padding).
    start : ndarray, shape (K,)
        Start probabilities.
    trans : ndarray, shape (K, K)
        Transition probabilities (rows sum to 1).

    Returns
    -------
    posterior : ndarray, shape (N, T, K)
    loglik : ndarray, shape (N,)
        Log-likelihood of each sequence.
    counts : ndarray, shape (K, K)
        Expected transition counts summed over sequences and time.

    Examples
    --------
    >>> import numpy as np
    >>> log_e = np.log(np.array([[[0.9, 0.1], [0.2, 0.8]]]))
    >>> post, ll, _ = forward_backward(log_e, np.array([0.5, 0.5]),
    ...                                np.array([[0.9, 0.1], [0.1, 0.9]]))
    >>> post.round(3).tolist()
    [[[0.76, 0.24], [0.532, 0.468]]]
    """
    alpha, beta, scale, e, shift = _lattice(log_e, start, trans)
    counts = np.zeros_like(trans)
    for t in range(len(e) - 1):
        eb = e[t + 1] * beta[t + 1] / scale[t + 1, :, None]
        counts += trans * (alpha[t].T @ eb)
    post = alpha * beta
    post /= post.sum(axis=2, keepdims=True)
    loglik = np.log(scale).sum(axis=0) + shift[:, :, 0].sum(axis=1)
    return post.transpose(1, 0, 2), loglik, counts


def _lattice(log_e, start, trans):
    """Scaled forward and backward variables, time-major (T, N, K)."""
    n, t_len, _ = log_e.shape
    shift = log_e.max(axis=2, keepdims=True)
    # time-major copies: every step then reads and writes contiguous (N, K) blocks
    e = np.ascontiguousarray(np.exp(log_e - shift).transpose(1, 0, 2))
    alpha = np.empty_like(e)
    scale = np.empty((t_len, n))
    a = start[None, :] * e[0]
    scale[0] = a.sum(axis=1)
    alpha[0] = a / scale[0, :, None]
    for t in range(1, t_len):
        a = (alpha[t - 1] @ trans) * e[t]
        scale[t] = a.sum(axis=1)
        alpha[t] = a / scale[t, :, None]
    beta = np.empty_like(e)
    beta[-1] = 1.0
    for t in range(t_len - 2, -1, -1):
        beta[t] = (e[t + 1] * beta[t + 1] / scale[t + 1, :, None]) @ trans.T
    return alpha, beta, scale, e, shift


def onset_probabilities(log_e: np.ndarray, start: np.ndarray, trans: np.ndarray,
                        ruptured: np.ndarray) -> np.ndarray:
    """Posterior probability that a rupture starts at each step, shape (N, T).

    At step 0 the probability of starting in a ``ruptured`` state; later
    ``P(state[t-1] not ruptured, state[t] ruptured | data)``.  Summed over a
    sequence: the expected number of ruptures.

    Examples
    --------
    >>> import numpy as np
    >>> log_e = np.log(np.array([[[0.9, 0.1], [0.1, 0.9], [0.1, 0.9]]]))
    >>> p = onset_probabilities(log_e, np.array([0.9, 0.1]),
    ...                         np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([False, True]))
    >>> p.round(3).tolist()
    [[0.074, 0.745, 0.091]]
    """
    alpha, beta, scale, e, _ = _lattice(log_e, start, trans)
    out = np.empty(alpha.shape[:2])
    post0 = alpha[0] * beta[0]
    out[0] = (post0[:, ruptured]).sum(axis=1) / post0.sum(axis=1)
    sub = trans[np.ix_(~ruptured, ruptured)]
    for t in range(1, len(e)):
        eb = (e[t] * beta[t] / scale[t, :, None])[:, ruptured]
        out[t] = ((alpha[t - 1][:, ~ruptured] @ sub) * eb).sum(axis=1)
    return out.T


def viterbi(log_e: np.ndarray, start: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """Most probable state path of many sequences at once (log-space Viterbi).

    Parameters as in :func:`forward_backward`.

    Returns
    -------
    ndarray, shape (N, T), int8
        The state at every step.

    Examples
    --------
    >>> import numpy as np
    >>> log_e = np.log(np.array([[[0.9, 0.1], [0.2, 0.8], [0.9, 0.1]]]))
    >>> viterbi(log_e, np.array([0.5, 0.5]), np.array([[0.9, 0.1], [0.1, 0.9]])).tolist()
    [[0, 0, 0]]
    """
    n, t_len, k = log_e.shape
    lt = np.log(np.maximum(trans, _TINY))
    delta = np.log(np.maximum(start, _TINY))[None, :] + log_e[:, 0]
    back = np.empty((n, t_len, k), dtype=np.int8)
    for t in range(1, t_len):
        cand = delta[:, :, None] + lt[None, :, :]  # from j (axis 1) to k (axis 2)
        back[:, t] = cand.argmax(axis=1)
        delta = cand.max(axis=1) + log_e[:, t]
    path = np.empty((n, t_len), dtype=np.int8)
    path[:, -1] = delta.argmax(axis=1)
    rows = np.arange(n)
    for t in range(t_len - 1, 0, -1):
        path[:, t - 1] = back[rows, t, path[:, t]]
    return path


# ----------------------------------------------------------------------------- emissions
@dataclass
class HMMParams:
    """Parameters of the cohort HMM (see the module docstring).

    ``base`` is every patient's stable level at every step (N, T), a local
    linear trend (:mod:`alliancetrack.detection.hmm_trend`) whose cohort
    prior and bending variance are in ``trend`` (``m0``, ``P0``, ``q2``;
    ``fit_q2`` False keeps ``q2`` fixed); ``sigma`` holds one noise scale per
    patient; ``dip`` is in scale points (``dip_unit="scale"``) or in units
    of ``sigma`` (``"noise"``).
    """

    start: np.ndarray
    trans: np.ndarray
    dip: float
    base: np.ndarray
    sigma: np.ndarray
    df: float
    dip_unit: str = "scale"
    trend: dict = field(default_factory=dict)
    sigma2_prior: float = 1.0
    prior_df: float = 4.0
    fit_prior_df: bool = False
    fit_df: bool = False
    mult: np.ndarray = field(default_factory=lambda: STATE_DIP.copy())
    allowed: np.ndarray = field(default_factory=lambda: ALLOWED.copy())
    ruptured: np.ndarray = field(default_factory=lambda: RUPTURED.copy())
    dip_sd: float = 0.0
    fit_dip_sd: bool = False

    @property
    def rho(self) -> float:
        """Depth of the partially repaired state as a share of the dip (NaN without it)."""
        return float(self.mult[3]) if len(self.mult) > 3 else np.nan

    def dips(self) -> np.ndarray:
        """The dip of every patient, in scale points (shape (N,))."""
        return self.dip * (self.sigma if self.dip_unit == "noise" else np.ones_like(self.sigma))

    def means(self) -> np.ndarray:
        """Mean rating in each state, shape (N, T, K)."""
        return self.base[:, :, None] - self.dips()[:, None, None] * self.mult[None, None, :]


def _t_logpdf(r: np.ndarray, sigma: np.ndarray, df: float) -> np.ndarray:
    const = special.gammaln((df + 1) / 2) - special.gammaln(df / 2) - 0.5 * np.log(df * np.pi)
    return const - np.log(sigma) - (df + 1) / 2 * np.log1p((r / sigma) ** 2 / df)


def _censored(X: np.ndarray, bounds) -> tuple[tuple, tuple]:
    """Indices (rows, cols) of ratings at the ceiling and at the floor."""
    if bounds is None:
        empty = (np.empty(0, int), np.empty(0, int))
        return empty, empty
    lo, hi = bounds
    with np.errstate(invalid="ignore"):
        return np.nonzero(X >= hi - 1e-9), np.nonzero(X <= lo + 1e-9)


def _state_means(params: HMMParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means (N, T, U) and scales (N, U) of the distinct state levels, and each state's column.

    A lowered state's scale adds the spread of dips between episodes:
    ``sqrt(sigma_i² + (mult · dip_sd)²)``.
    """
    levels, inverse = np.unique(params.mult, return_inverse=True)
    mu = params.base[:, :, None] - params.dips()[:, None, None] * levels[None, None, :]
    scale = np.sqrt(params.sigma[:, None] ** 2 + (levels[None, :] * params.dip_sd) ** 2)
    return mu, inverse, scale


def hmm_log_emissions(X: np.ndarray, params: HMMParams,
                      bounds: tuple[float, float] | None) -> np.ndarray:
    """Log emission densities, shape (N, T, K); zeros where ``X`` is NaN.

    Ratings at ``bounds`` (the scale's floor and ceiling, already mirrored)
    are censored: their emission is the probability of a rating at or beyond
    the bound.  States with the same mean share one computation.
    """
    mu, inverse, scale = _state_means(params)
    sig = scale[:, None, :]
    obs = np.isfinite(X)
    x = np.where(obs, X, 0.0)[:, :, None]
    out = _t_logpdf(x - mu, sig, params.df)
    (tr, tc), (br, bc) = _censored(X, bounds)
    if len(tr):
        z = (bounds[1] - mu[tr, tc]) / scale[tr]
        out[tr, tc] = np.log(np.maximum(special.stdtr(params.df, -z), _TINY))
    if len(br):
        z = (bounds[0] - mu[br, bc]) / scale[br]
        out[br, bc] = np.log(np.maximum(special.stdtr(params.df, z), _TINY))
    out *= obs[:, :, None]
    return out[:, :, inverse]


def _effective(X: np.ndarray, params: HMMParams,
               bounds: tuple[float, float] | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """E-step quantities per state: the rating to regress on, its t weight, its residual.

    Uncensored ratings keep their value and get the scale-mixture weight
    ``(df + 1) / (df + r²/σ²)``; censored ratings get their conditional mean
    beyond the bound (normal approximation) and weight 1.  Also returned:
    the squared standardised residuals ``r²/σ²`` and which ratings are
    observed and uncensored (for the update of ``df``).
    """
    mu, inverse, scale = _state_means(params)
    df = params.df
    obs = np.isfinite(X)
    x = np.where(obs, X, 0.0)[:, :, None]
    r = (x - mu) / scale[:, None, :]
    w = (df + 1) / (df + r**2)
    y = np.broadcast_to(x, mu.shape).copy()
    (tr, tc), (br, bc) = _censored(X, bounds)
    for rows, cols, bound, side in ((tr, tc, bounds and bounds[1], 1.0),
                                    (br, bc, bounds and bounds[0], -1.0)):
        if len(rows):
            m, s = mu[rows, cols], scale[rows]
            a = np.clip(side * (bound - m) / s, -8, 8)
            y[rows, cols] = m + side * s * np.exp(-0.5 * a**2) / np.sqrt(2 * np.pi) / \
                np.maximum(special.ndtr(-a), 1e-12)
            w[rows, cols] = 1.0
    w *= obs[:, :, None]
    used = obs.copy()
    used[tr, tc] = False
    used[br, bc] = False
    return y[:, :, inverse], w[:, :, inverse], (r**2)[:, :, inverse], used


# ----------------------------------------------------------------------------- M-step
@dataclass(frozen=True)
class _Cohort:
    """The data of one fit: ratings, session gaps, which steps are in a series, bounds."""

    X: np.ndarray
    h: np.ndarray
    steps: np.ndarray
    bounds: tuple[float, float] | None

    @classmethod
    def of(cls, X: np.ndarray, S: np.ndarray, bounds) -> _Cohort:
        return cls(X=X, h=gaps(S), steps=np.isfinite(S), bounds=bounds)

    def rows(self, rows) -> _Cohort:
        return _Cohort(X=self.X[rows], h=self.h[rows], steps=self.steps[rows],
                       bounds=self.bounds)


def _m_patients(post, y, w, cohort: _Cohort, params: HMMParams) -> None:
    """Update the stable level (Kalman smoother) and sigma per patient, and their cohort priors."""
    g = post * w                                       # (N, T, K)
    W = g.sum(axis=2)
    shift = params.dips()[:, None, None] * params.mult[None, None, :]
    target = (g * (y + shift)).sum(axis=2) / np.maximum(W, 1e-300)
    tr = params.trend
    fit = smooth_trend(target, W, cohort.h, params.sigma**2, tr["q2"], tr["m0"], tr["P0"],
                       cohort.steps, tr.get("weight"), tr.get("bend_df"))
    tr["weight"] = fit.bend_weight
    resid = y + shift - fit.level[:, :, None]
    ss = (g * resid**2).sum(axis=(1, 2)) + (W * fit.level_var).sum(axis=1)
    n_obs = np.isfinite(cohort.X).sum(axis=1)
    if params.fit_prior_df:
        params.prior_df, params.sigma2_prior = sigma_prior(ss, n_obs, params.prior_df,
                                                           params.sigma2_prior)
    nu0, s2_0 = params.prior_df, params.sigma2_prior
    params.sigma = np.sqrt((ss + nu0 * s2_0) / (n_obs + nu0))
    params.base, tr["slope"] = fit.level, fit.slope
    # empirical Bayes: the cohort's prior of the first level and slope, and the bending
    P0 = fit.P0.copy()
    P0[0, 0], P0[1, 1] = max(P0[0, 0], 1e-4), max(P0[1, 1], 1e-6)
    tr["m0"], tr["P0"] = fit.m0, P0
    if tr["fit_q2"]:
        tr["q2"] = fit.q2
    if not params.fit_prior_df:
        params.sigma2_prior = float(np.median(params.sigma**2))


def _m_dip(post, y, w, params: HMMParams, min_dip: float) -> None:
    stable = params.base[:, :, None]
    m = params.mult[None, None, :]
    g = post * w * m
    gap = stable - y
    if params.dip_unit == "noise":
        num = (g * gap / params.sigma[:, None, None]).sum()
        den = (g * m).sum()
    else:
        inv = 1 / params.sigma[:, None, None] ** 2
        num = (g * gap * inv).sum()
        den = (g * m * inv).sum()
    params.dip = float(max(num / den, min_dip)) if den > 0 else params.dip
    if params.fit_dip_sd:  # spread of dips between episodes (moments, full-dip states)
        full = params.mult == 1.0
        gf = (post * w)[:, :, full]
        res2 = (y[:, :, full] - (stable - params.dips()[:, None, None])) ** 2
        tot = gf.sum()
        if tot > 0:
            excess = (gf * (res2 - params.sigma[:, None, None] ** 2)).sum() / tot
            params.dip_sd = float(np.sqrt(max(excess, 0.0)))
    if len(params.mult) > 3:  # the partially repaired state: its share of the dip
        g3 = post[:, :, 3] * w[:, :, 3]
        d = params.dips()[:, None]
        inv = 1 / params.sigma[:, None] ** 2
        den3 = (g3 * d * d * inv).sum()
        if den3 > 0:
            rho = (g3 * d * (stable[:, :, 0] - y[:, :, 3]) * inv).sum() / den3
            params.mult = params.mult.copy()
            params.mult[3] = float(np.clip(rho, 0.15, 0.7))


# ----------------------------------------------------------------------------- EM
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
#: rupture and repair probabilities, for 3, 4 (partial) and 5 (decline) states.
def _start_transitions(p_r: float, p_rep: float, n_states: int) -> np.ndarray:
    if n_states == 5:
        return np.array([[1 - 1.2 * p_r, 0.7 * p_r, 0.3 * p_r, 0.2 * p_r, 0],
                         [0.6 * p_rep, 1 - p_rep, 0, 0.4 * p_rep, 0], [0, 0, 1, 0, 0],
                         [0.1, 0.7 * p_r, 0.3 * p_r, 0.85 - p_r, 0.05], [0, 0, 0, 0, 1]])
    if n_states == 4:
        return np.array([[1 - p_r, 0.7 * p_r, 0.3 * p_r, 0.0],
                         [0.6 * p_rep, 1 - p_rep, 0, 0.4 * p_rep], [0, 0, 1, 0],
                         [0.1, 0.7 * p_r, 0.3 * p_r, 0.9 - p_r]])
    return np.array([[1 - p_r, 0.7 * p_r, 0.3 * p_r], [p_rep, 1 - p_rep, 0], [0, 0, 1]])


_STATES = {  # n_states: (start probabilities, state dips, allowed moves, ruptured)
    3: (np.array([0.95, 0.03, 0.02]), STATE_DIP, ALLOWED, RUPTURED),
    4: (np.array([0.93, 0.03, 0.02, 0.02]), np.array([0.0, 1.0, 1.0, 0.4]), ALLOWED_PARTIAL,
        np.array([False, True, True, False])),
    5: (np.array([0.92, 0.03, 0.02, 0.02, 0.01]), np.array([0.0, 1.0, 1.0, 0.4, 1.0]),
        ALLOWED_DECLINE, np.array([False, True, True, False, False])),
}


def _initial(X, rng, k: int, df: float, dip_unit: str, n_states: int,
             drift: bool) -> HMMParams:
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
    start, state_dip, allowed, ruptured = _STATES[n_states]
    return HMMParams(start=start.copy(), trans=_start_transitions(p_r, p_rep, n_states),
                     dip=dip, base=np.repeat(level[:, None], X.shape[1], axis=1),
                     sigma=sigma, df=df, dip_unit=dip_unit, trend=trend, sigma2_prior=s2,
                     mult=state_dip.copy(), allowed=allowed.copy(), ruptured=ruptured.copy())


#: Starting t degrees of freedom and noise-prior degrees of freedom when they are estimated.
DF_START, PRIOR_DF_START = 10.0, 4.0
#: Degrees of freedom of the t-distributed bends of the stable level's trend.
BEND_DF = 4.0
#: Starting SD of the slope's random walk, as a share of the median noise SD.
DRIFT_START = 0.1
#: SD of the bends of the path that follows the ratings in the level search (share of
#: the median noise SD).
FOLLOW_SD = 0.3
#: Quantiles of a patient's ratings tried as their stable level by :func:`_level_search`.
LEVEL_QUANTILES = (0.5, 0.7, 0.85, 1.0)
#: Converged: fewer than this share of rated sessions changed their posterior
#: rupture probability by more than ``tol`` in the last iteration.
CONVERGED_SHARE = 1e-3
#: EM iterations before which the level search is repeated.
SEARCH_AT = (1, 10, 30)


def _objective(cohort: _Cohort, params: HMMParams, slope: np.ndarray) -> np.ndarray:
    """Each patient's HMM log-likelihood plus the log prior of their stable path."""
    ll = forward_backward(hmm_log_emissions(cohort.X, params, cohort.bounds), params.start,
                          params.trans)[1]
    tr = params.trend
    return ll + trend_log_prior(params.base, slope, cohort.h, tr["q2"], tr["m0"], tr["P0"],
                                cohort.steps, tr.get("bend_df"))


def _follow(cohort: _Cohort, params: HMMParams) -> tuple[np.ndarray, np.ndarray]:
    """A stable path that follows the ratings (as if there were no ruptures), and its slope."""
    tr = params.trend
    obs = np.isfinite(cohort.X)
    q2 = max(tr["q2"], (FOLLOW_SD * params.sigma2_prior ** 0.5) ** 2)
    fit = smooth_trend(np.where(obs, cohort.X, 0.0), obs.astype(float), cohort.h,
                       params.sigma**2, q2, tr["m0"], tr["P0"], cohort.steps)
    return fit.level, fit.slope


def _level_search(cohort: _Cohort, params: HMMParams) -> None:
    """Move each patient's stable path to the best of a few candidates (in place).

    EM climbs to the nearest optimum: a patient whose level starts at the
    median of ratings that are mostly in a long rupture would stay there, with
    their first, higher, sessions taken for noise; and a slow decline once
    read as a rupture stays one, as the stable path is then fitted to the
    ratings with the dip added back.  The candidates are the current stable
    path, shifted so that its mean over the rated sessions is a quantile of
    the patient's ratings, a flat path at that quantile, and a path that follows the ratings (a smooth of
    the ratings themselves, :func:`_follow`).  Each is scored by the HMM
    log-likelihood plus the log prior of the path, with the shared
    parameters fixed, one candidate at a time for all patients; each patient
    keeps their best.
    """
    X = cohort.X
    tr = params.trend
    current = params.base.copy()
    slope = tr.get("slope", np.zeros_like(current))
    best = _objective(cohort, params, slope)
    centred = current - np.nanmean(np.where(np.isfinite(X), current, np.nan), axis=1)[:, None]
    centred = np.nan_to_num(centred)
    srt = np.sort(X, axis=1)  # NaN last
    n = np.isfinite(X).sum(axis=1)
    rows = np.arange(len(X))
    candidates = []
    for q in LEVEL_QUANTILES:  # linear interpolation, as numpy's default quantile
        h = (np.maximum(n, 1) - 1) * q
        lo = np.floor(h).astype(int)
        hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
        quant = srt[rows, lo] + (h - lo) * (srt[rows, hi] - srt[rows, lo])
        quant = np.nan_to_num(quant)[:, None]
        candidates.append((centred + quant, slope))
        if tr["fit_q2"]:  # flat at the quantile: a lasting drop need not be a sloping line
            flat = np.zeros_like(slope)
            candidates.append((quant + flat, flat))
    if tr["fit_q2"]:
        candidates.append(_follow(cohort, params))
    for cand, cand_slope in candidates:
        params.base = cand
        obj = _objective(cohort, params, cand_slope)
        better = obj > best + 1e-9
        current = np.where(better[:, None], cand, current)
        slope = np.where(better[:, None], cand_slope, slope)
        best = np.where(better, obj, best)
    params.base = current
    tr["slope"] = slope


def _run(cohort: _Cohort, params: HMMParams, max_iter: int, tol: float, min_dip: float, start: int, search_at: tuple[int, ...] = SEARCH_AT) -> FitResult:
    X, bounds = cohort.X, cohort.bounds
    prev = np.full(X.shape, np.inf)
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 (it is reported)
        if it in search_at:
            _level_search(cohort, params)
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
        y, w, r2, used = _effective(X, params, bounds)
        if params.fit_df:
            params.df = update_df(post, r2, used, params.df)
        _m_patients(post, y, w, cohort, params)
        _m_dip(post, y, w, params, min_dip)
        # a weak Dirichlet prior keeps every allowed transition possible
        trans = np.where(params.allowed, counts + 0.5, 0.0)
        params.trans = trans / trans.sum(axis=1, keepdims=True)
        st = post[:, 0].sum(axis=0) + 0.5
        params.start = st / st.sum()
    return FitResult(params=params, loglik=total, n_iter=it, converged=converged, start=start,
                     n_patients=len(X))


def fit_hmm(X: np.ndarray, S: np.ndarray, bounds: tuple[float, float] | None = None, *,
            df: float | None = None, dip_unit: str = "scale", n_starts: int = 3,
            max_iter: int = 200, tol: float = 0.01, prior_df: float | None = None, partial: bool = True, decline: bool = False,
            dip_spread: bool = False, drift: bool = True, subsample: int = 5000,
            seed: int = 0) -> tuple[FitResult, list[FitResult]]:
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
        at random (from ``seed``) and the whole cohort is then fitted once
        from the best start's shared parameters (warm start: two level
        searches, then EM to convergence).

    Other Parameters
    ----------------
    df, dip_unit, n_starts, max_iter, tol, prior_df, partial, decline, dip_spread, drift, seed
        As the fields of :class:`alliancetrack.detection.hmm.HMMDetector`.

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
    cohort = _Cohort.of(X, S, bounds)
    rng = np.random.default_rng(seed)
    min_dip = 0.5 if dip_unit == "noise" else 1e-3
    n_states = 5 if decline else 4 if partial else 3
    big = len(X) > subsample
    rows = np.sort(rng.choice(len(X), subsample, replace=False)) if big else slice(None)
    sub = cohort.rows(rows)
    runs = []

    def initial(X, k):
        params = _initial(X, rng, k, DF_START if df is None else df, dip_unit, n_states, drift)
        params.fit_dip_sd, params.fit_df = dip_spread, df is None
        params.fit_prior_df = prior_df is None
        params.prior_df = PRIOR_DF_START if prior_df is None else prior_df
        return params

    for k in range(n_starts):
        runs.append(_run(sub, initial(sub.X, k), max_iter, tol, min_dip, k))
    best = max(runs, key=lambda r: r.loglik)
    if big:  # the whole cohort, from the best start's shared parameters
        params = initial(X, 0)
        shared = best.params
        params.start, params.trans, params.dip = shared.start, shared.trans, shared.dip
        params.mult, params.dip_sd = shared.mult.copy(), shared.dip_sd
        params.trend, params.df = dict(shared.trend), shared.df
        for key in ("weight", "slope"):  # per patient: those of the subsample do not carry
            params.trend.pop(key, None)
        params.sigma2_prior, params.prior_df = shared.sigma2_prior, shared.prior_df
        best = _run(cohort, params, max_iter, tol, min_dip, best.start,
                    search_at=(1, 5))
        runs.append(best)
    return best, runs
