"""The cohort hidden Markov model of alliance ruptures: states, emissions, recursions, M-step.

The model behind :class:`alliancetrack.detection.hmm.HMMDetector`, on a
patients × sessions array ``X`` (NaN where a session has no rating, and as
padding after a patient's last session), already mirrored so that higher is
better:

* hidden states *stable*, *ruptured* (two of them: one repaired with a
  shared probability per session, one persisting to the end of treatment)
  and, by default, *partially repaired* (see :data:`STATE_DIP` and
  :data:`ALLOWED_PARTIAL`); optionally the steps of a *gradual decline*
  and a *declined* state (:data:`DECLINE_STEPS`; not ruptures); a
  first-order Markov chain with start probabilities ``pi`` and a
  transition matrix ``A`` shared by all patients
  (``A[0, 1] + A[0, 2]``: probability that a rupture starts at the next
  session; ``A[1, 0] + A[1, 3]``: that it is repaired);
* in the stable state patient *i* is rated ``m_it + e``, where the stable
  level ``m_it`` is a local linear trend that may bend
  (:mod:`alliancetrack.detection.hmm_trend`); in a ruptured state ``dip``
  lower (in scale points, or in units of the patient's noise scale with
  ``dip_unit="noise"``), shared by the cohort, and in the partially
  repaired state ``rho · dip`` lower; with ``patient_dips`` every lowered
  state is also scaled by the patient's own dip factor
  (:mod:`alliancetrack.detection.hmm_depth`);
* ``e`` is Student t with ``df`` degrees of freedom and patient scale
  ``sigma_i`` (robust to outlying sessions), and ratings at the scale's
  ceiling (floor) enter as censored: ``P(X ≥ high)`` (``P(X ≤ low)``);
* missing ratings contribute no emission (likelihood 1): the chain moves
  on through the session, the rating is neither imputed nor guessed.

The E-step is the scaled forward-backward recursion (Rabiner 1989),
vectorised over patients: a Python loop over the ≤ a few dozen sessions,
NumPy over the patients.  The M-step (:func:`m_patients`, :func:`m_dip`)
updates each patient's stable level by the Kalman smoother and their noise
scale, shrunk toward the cohort (empirical Bayes;
:mod:`alliancetrack.detection.hmm_noise`), then the dip.  Censored ratings
enter the M-step at their conditional mean given the censoring (the EM step
of a Tobit model); the t enters as a normal scale mixture (Liu & Rubin 1995).

References
----------
Rabiner, L. R. (1989). A tutorial on hidden Markov models and selected
applications in speech recognition. *Proceedings of the IEEE*, 77(2), 257-286.
Liu, C., & Rubin, D. B. (1995). ML estimation of the t distribution using EM
and its extensions, ECM and ECME. *Statistica Sinica*, 5, 19-39.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import special

from alliancetrack.detection.hmm_depth import m_dip_factors
from alliancetrack.detection.hmm_noise import sigma_prior
from alliancetrack.detection.hmm_trend import TrendFit, gaps, smooth_trend

__all__ = ["Cohort", "HMMParams", "count_distribution", "effective", "forward_backward",
           "forward_loglik", "hmm_log_emissions", "m_dip", "m_patients", "onset_probabilities",
           "row_quantile", "viterbi"]

_TINY = 1e-300
#: Smallest noise scale of a patient (scale points): keeps the recursions finite whatever
#: the data (for instance a cohort in which most patients rate the ceiling throughout).
SIGMA_FLOOR = 1e-4

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
#: With ``decline=True`` (the detector's default) the chain also has the states of a gradual
#: decline, which is not a rupture: from the stable state it steps down through the ramp at
#: these shares of a shared decline depth (one shared pace; at most
#: :data:`alliancetrack.detection.hmm_fit.RAMP_STAY_MAX` of staying per step) to the
#: declined state (share 1), where it stays.  A rupture drops at once; a decline passes
#: through its steps, so the two are told apart by how the drop begins, not by its depth.
DECLINE_STEPS = np.array([0.25, 0.5, 0.75, 1.0])
#: Range of the decline depth as a share of the dip.
DECLINE_RANGE = (0.2, 2.0)


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


def forward_loglik(log_e: np.ndarray, start: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """Log-likelihood of each sequence by the scaled forward recursion alone, shape (N,).

    Examples
    --------
    >>> import numpy as np
    >>> log_e = np.log(np.array([[[0.9, 0.1], [0.2, 0.8]]]))
    >>> start, trans = np.array([0.5, 0.5]), np.array([[0.9, 0.1], [0.1, 0.9]])
    >>> bool(np.isclose(forward_loglik(log_e, start, trans)[0],
    ...                 forward_backward(log_e, start, trans)[1][0]))
    True
    """
    shift = log_e.max(axis=2, keepdims=True)
    e = np.exp(log_e - shift)
    a = start[None, :] * e[:, 0]
    total = np.zeros(len(e))
    for t in range(e.shape[1]):
        if t:
            a = (a @ trans) * e[:, t]
        c = a.sum(axis=1)
        total += np.log(c)
        a = a / c[:, None]
    return total + shift[:, :, 0].sum(axis=1)


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


def count_distribution(log_e: np.ndarray, start: np.ndarray, trans: np.ndarray,
                       ruptured: np.ndarray, max_count: int = 8,
                       steps: np.ndarray | None = None) -> np.ndarray:
    """Posterior distribution of the number of ruptures in each sequence, shape (N, C + 1).

    A rupture is an entry into a ``ruptured`` state (starting in one counts).
    The forward recursion is run on (state, count so far) pairs: a move from
    a state outside ``ruptured`` into one inside adds one.  Column ``c`` is
    ``P(c ruptures | data)``; the last column holds ``max_count`` or more.
    Its mean equals the sum of :func:`onset_probabilities` over the sequence
    (below ``max_count``).  ``steps`` (N, T), if given, marks the steps inside
    each series: the chain stops at a patient's last session (padding after
    it does not count).

    Examples
    --------
    >>> import numpy as np
    >>> log_e = np.log(np.array([[[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]]]))
    >>> start, trans = np.array([0.9, 0.1]), np.array([[0.8, 0.2], [0.5, 0.5]])
    >>> ruptured = np.array([False, True])
    >>> p = count_distribution(log_e, start, trans, ruptured, max_count=3)
    >>> p.round(3).tolist()
    [[0.109, 0.533, 0.358, 0.0]]
    >>> bool(np.isclose(p[0] @ np.arange(4),
    ...                 onset_probabilities(log_e, start, trans, ruptured).sum()))
    True
    """
    n, t_len, k = log_e.shape
    c_len = max_count + 1
    e = np.exp(log_e - log_e.max(axis=2, keepdims=True))
    enter = np.zeros_like(trans)
    enter[np.ix_(~ruptured, ruptured)] = trans[np.ix_(~ruptured, ruptured)]
    stay = trans - enter
    alpha = np.zeros((n, k, c_len))
    alpha[:, ~ruptured, 0] = start[~ruptured] * e[:, 0, ~ruptured]
    alpha[:, ruptured, min(1, max_count)] = start[ruptured] * e[:, 0, ruptured]
    for t in range(1, t_len):
        up = np.zeros_like(alpha)  # counts move up by one on entering a rupture
        up[:, :, 1:] = alpha[:, :, :-1]
        up[:, :, -1] += alpha[:, :, -1]  # the last count holds max_count or more
        new = (np.einsum("njc,jk->nkc", alpha, stay) + np.einsum("njc,jk->nkc", up, enter)
               ) * e[:, t, :, None]
        new /= np.maximum(new.sum(axis=(1, 2), keepdims=True), _TINY)
        alpha = new if steps is None else np.where(steps[:, t, None, None], new, alpha)
    out = alpha.sum(axis=1)
    return out / out.sum(axis=1, keepdims=True)


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
    decline_steps: np.ndarray | None = None
    patient_dips: bool = False
    dip_factor_var: float = 0.0
    dip_factor: np.ndarray | None = None
    dip_info: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.decline_steps is None:  # no gradual-decline states
            self.decline_steps = np.zeros(len(self.mult))
        elif len(self.decline_steps) != len(self.mult):
            raise ValueError(f"decline_steps has {len(self.decline_steps)} entries, one per "
                             f"state is needed ({len(self.mult)}).")
        if self.patient_dips:  # each patient's dip factor (1: the cohort's dip) and its information
            n = len(self.sigma)
            if self.dip_factor is None:
                self.dip_factor = np.ones(n)
            if self.dip_info is None:
                self.dip_info = np.zeros(n)

    @property
    def partial(self) -> bool:
        """Whether the chain has the partially repaired state (state 3)."""
        return bool(len(self.mult) > 3 and self.decline_steps[3] == 0)

    @property
    def rho(self) -> float:
        """Depth of the partially repaired state as a share of the dip (NaN without it)."""
        return float(self.mult[3]) if self.partial else np.nan

    @property
    def decline_depth(self) -> float:
        """Depth of a gradual decline as a share of the dip (NaN without the decline states)."""
        return float(self.mult[-1]) if self.decline_steps[-1] > 0 else np.nan

    def unit_dips(self) -> np.ndarray:
        """The dip of every patient at dip factor 1, in scale points (shape (N,))."""
        return self.dip * (self.sigma if self.dip_unit == "noise" else np.ones_like(self.sigma))

    def dips(self) -> np.ndarray:
        """The dip of every patient, in scale points (shape (N,))."""
        dips = self.unit_dips()
        return dips * self.dip_factor if self.patient_dips else dips

    def means(self) -> np.ndarray:
        """Mean rating in each state, shape (N, T, K)."""
        return self.base[:, :, None] - self.dips()[:, None, None] * self.mult[None, None, :]

    def rows(self, rows: np.ndarray) -> HMMParams:
        """A copy for some patients: their own parameters subset, the shared ones kept."""
        trend = {k: (v[rows] if k in _PER_PATIENT_TREND and v is not None else v)
                 for k, v in self.trend.items()}
        own = {} if not self.patient_dips else {"dip_factor": self.dip_factor[rows],
                                                 "dip_info": self.dip_info[rows]}
        return replace(self, base=self.base[rows], sigma=self.sigma[rows], trend=trend, **own)

    @staticmethod
    def stack(parts: list[HMMParams]) -> HMMParams:
        """The inverse of :meth:`rows` over consecutive blocks of patients: their own
        parameters concatenated in order, the shared ones those of the first block."""
        first = parts[0]

        def cat(values):
            values = list(values)
            return None if values[0] is None else np.concatenate(values)

        trend = {k: (cat(p.trend.get(k) for p in parts) if k in _PER_PATIENT_TREND else v)
                 for k, v in first.trend.items()}
        own = {} if not first.patient_dips else {
            "dip_factor": cat(p.dip_factor for p in parts),
            "dip_info": cat(p.dip_info for p in parts)}
        return replace(first, base=cat(p.base for p in parts), sigma=cat(p.sigma for p in parts),
                       trend=trend, **own)


#: Entries of ``HMMParams.trend`` that hold one row per patient.
_PER_PATIENT_TREND = frozenset({"slope", "weight"})


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


def effective(X: np.ndarray, params: HMMParams,
               bounds: tuple[float, float] | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """E-step quantities per state: the rating to regress on, its t weight, its residual.

    Uncensored ratings keep their value and get the scale-mixture weight
    ``(df + 1) / (df + r²/σ²)``; censored ratings get their conditional mean
    beyond the bound (normal approximation) and weight 1.  Also returned:
    the squared standardised residuals ``r²/σ²``, which ratings are observed
    and uncensored (for the update of ``df``), and the conditional variance
    of each censored rating beyond its bound (0 elsewhere): it belongs in the
    expected residual sum of squares of the noise update (the Tobit M-step),
    without it a patient rated at the ceiling throughout would get a noise
    scale of zero.
    """
    mu, inverse, scale = _state_means(params)
    df = params.df
    obs = np.isfinite(X)
    x = np.where(obs, X, 0.0)[:, :, None]
    r = (x - mu) / scale[:, None, :]
    w = (df + 1) / (df + r**2)
    y = np.broadcast_to(x, mu.shape).copy()
    var = np.zeros_like(y)
    (tr, tc), (br, bc) = _censored(X, bounds)
    for rows, cols, bound, side in ((tr, tc, bounds and bounds[1], 1.0),
                                    (br, bc, bounds and bounds[0], -1.0)):
        if len(rows):
            m, s = mu[rows, cols], scale[rows]
            a = np.clip(side * (bound - m) / s, -8, 8)
            lam = np.exp(-0.5 * a**2) / np.sqrt(2 * np.pi) / np.maximum(special.ndtr(-a), 1e-12)
            y[rows, cols] = m + side * s * lam
            var[rows, cols] = s**2 * np.maximum(1 + a * lam - lam**2, 0.0)
            w[rows, cols] = 1.0
    w *= obs[:, :, None]
    used = obs.copy()
    used[tr, tc] = False
    used[br, bc] = False
    return (y[:, :, inverse], w[:, :, inverse], (r**2)[:, :, inverse], used,
            var[:, :, inverse])


# ----------------------------------------------------------------------------- M-step
def row_quantile(X: np.ndarray, q: float, srt: np.ndarray | None = None) -> np.ndarray:
    """The ``q`` quantile of each row's finite values (linear interpolation), NaN-free rows.

    ``srt`` may pass ``np.sort(X, axis=1)`` when several quantiles are wanted.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 3.0, np.nan, 2.0], [4.0, np.nan, np.nan, np.nan]])
    >>> row_quantile(X, 0.5).tolist(), bool(np.allclose(row_quantile(X, 0.85)[0],
    ...                                                  np.nanquantile(X[0], 0.85)))
    ([2.0, 4.0], True)
    """
    srt = np.sort(X, axis=1) if srt is None else srt  # NaN last
    n = np.isfinite(X).sum(axis=1)
    rows = np.arange(len(X))
    h = (np.maximum(n, 1) - 1) * q
    lo = np.floor(h).astype(int)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    return np.nan_to_num(srt[rows, lo] + (h - lo) * (srt[rows, hi] - srt[rows, lo]))


@dataclass(frozen=True)
class Cohort:
    """The data of one fit: ratings, session gaps, which steps are in a series, bounds."""

    X: np.ndarray
    h: np.ndarray
    steps: np.ndarray
    bounds: tuple[float, float] | None

    @classmethod
    def of(cls, X: np.ndarray, S: np.ndarray, bounds) -> Cohort:
        return cls(X=X, h=gaps(S), steps=np.isfinite(S), bounds=bounds)

    def rows(self, rows) -> Cohort:
        return Cohort(X=self.X[rows], h=self.h[rows], steps=self.steps[rows],
                       bounds=self.bounds)


def m_patients(post, y, w, var, cohort: Cohort, params: HMMParams,
               shared: bool = True, log_det: bool = False) -> TrendFit:
    """Update the stable level (Kalman smoother) and sigma per patient, and their cohort priors.

    ``y``, ``w`` and ``var`` are from :func:`effective`.  With ``shared=False``
    only the patients' own parameters move (the cohort priors and the
    bending variance stay as they are).  Returns the smoother's result
    (with the paths' Laplace volumes if ``log_det``).
    """
    g = post * w                                       # (N, T, K)
    W = g.sum(axis=2)
    shift = params.dips()[:, None, None] * params.mult[None, None, :]
    target = (g * (y + shift)).sum(axis=2) / np.maximum(W, 1e-300)
    tr = params.trend
    fit = smooth_trend(target, W, cohort.h, params.sigma**2, tr["q2"], tr["m0"], tr["P0"],
                       cohort.steps, tr.get("weight"), tr.get("bend_df"), log_det=log_det)
    tr["weight"] = fit.bend_weight
    resid = y + shift - fit.level[:, :, None]
    ss = (g * (resid**2 + var)).sum(axis=(1, 2)) + (W * fit.level_var).sum(axis=1)
    n_obs = np.isfinite(cohort.X).sum(axis=1)
    if params.fit_prior_df and shared:
        params.prior_df, params.sigma2_prior = sigma_prior(ss, n_obs, params.prior_df,
                                                           params.sigma2_prior)
    nu0, s2_0 = params.prior_df, params.sigma2_prior
    params.sigma = np.maximum(np.sqrt((ss + nu0 * s2_0) / (n_obs + nu0)), SIGMA_FLOOR)
    params.base, tr["slope"] = fit.level, fit.slope
    if params.patient_dips:
        m_dip_factors(post, y, w, params, shared=shared)
    if not shared:
        return fit
    # empirical Bayes: the cohort's prior of the first level and slope, and the bending
    P0 = fit.P0.copy()
    P0[0, 0], P0[1, 1] = max(P0[0, 0], 1e-4), max(P0[1, 1], 1e-6)
    tr["m0"], tr["P0"] = fit.m0, P0
    if tr["fit_q2"]:
        tr["q2"] = fit.q2
    if not params.fit_prior_df:
        params.sigma2_prior = float(np.median(params.sigma**2))
    return fit


def m_dip(post, y, w, params: HMMParams, min_dip: float) -> None:
    stable = params.base[:, :, None]
    ramp = params.decline_steps
    m = np.where(ramp > 0, 0.0, params.mult)[None, None, :]
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
        full = (params.mult == 1.0) & (params.decline_steps == 0)
        gf = (post * w)[:, :, full]
        res2 = (y[:, :, full] - (stable - params.dips()[:, None, None])) ** 2
        tot = gf.sum()
        if tot > 0:
            excess = (gf * (res2 - params.sigma[:, None, None] ** 2)).sum() / tot
            params.dip_sd = float(np.sqrt(max(excess, 0.0)))
    decline = np.flatnonzero(ramp > 0)
    if len(decline):  # a gradual decline: its depth as a share of the dip
        delta = _share_of_dip(post, y, w, params, decline, ramp[decline])
        if delta is not None:
            params.mult = np.where(ramp > 0, float(np.clip(delta, *DECLINE_RANGE)) * ramp,
                                   params.mult)
    if params.partial:  # the partially repaired state: its share of the dip
        rho = _share_of_dip(post, y, w, params, np.array([3]), np.ones(1))
        if rho is not None:
            params.mult = params.mult.copy()
            params.mult[3] = float(np.clip(rho, 0.15, 0.7))


def _share_of_dip(post, y, w, params: HMMParams, states: np.ndarray,
                  shape: np.ndarray) -> float | None:
    """Weighted least-squares estimate of ``s`` where ``states`` lie ``s · shape · dip``
    below the stable level (the M-step of a state depth given as a share of the dip);
    None when those states carry no posterior weight."""
    g = post[:, :, states] * w[:, :, states] * shape
    d = params.dips()[:, None, None]
    inv = 1 / params.sigma[:, None, None] ** 2
    den = (g * shape * d * d * inv).sum()
    if den <= 0:
        return None
    return float((g * d * (params.base[:, :, None] - y[:, :, states]) * inv).sum() / den)


