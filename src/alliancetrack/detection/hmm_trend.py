"""The stable alliance level of the cohort HMM: a local linear trend, smoothed by Kalman.

Between ruptures a patient's alliance is not flat, nor need it follow one
straight line: it grows, levels off or slides slowly.  The cohort HMM
(:mod:`alliancetrack.detection.hmm_fit`) therefore gives each patient a
*stable level* that follows a local linear trend (an integrated random walk;
its smoothed path is a cubic smoothing spline, Wecker & Ansley 1983):

* ``level_t = level_{t-1} + h·slope_{t-1} + u_t`` and
  ``slope_t = slope_{t-1} + v_t``, where ``h`` is the gap in sessions and
  ``(u_t, v_t)`` has covariance ``q² · [[h³/3, h²/2], [h²/2, h]]`` (the
  slope is a random walk in continuous time);
* the first session's level and slope come from the cohort,
  ``N(m0, P0)`` (empirical Bayes: estimated from all patients), so short
  series are shrunk toward the cohort;
* ``q`` is shared by the cohort.  ``q = 0`` gives each patient one straight
  line (level and slope shrunk toward the cohort); larger ``q`` lets the
  trend bend, so a slow decline is followed by the level while an abrupt
  drop of a rupture is not (bending the trend to follow a one-session drop
  costs far more than a rupture does).

In the EM algorithm of the HMM, the M-step gives this module one pseudo-rating
per session (the ratings with the state's dip added back, weighted by the
posterior state probabilities and the t weights) and the patient's noise
variance; :func:`smooth_trend` returns the smoothed level (and its variance)
by the Kalman filter and Rauch–Tung–Striebel smoother, vectorised over
patients (a loop over sessions, NumPy over patients), and the expected
sufficient statistics that re-estimate ``m0``, ``P0`` and ``q²``
(Shumway & Stoffer 1982).

References
----------
Wecker, W. E., & Ansley, C. F. (1983). The signal extraction approach to
nonlinear regression and spline smoothing. *JASA*, 78(381), 81-89.
Shumway, R. H., & Stoffer, D. S. (1982). An approach to time series smoothing
and forecasting using the EM algorithm. *Journal of Time Series Analysis*,
3(4), 253-264.
Durbin, J., & Koopman, S. J. (2012). *Time series analysis by state space
methods* (2nd ed.). Oxford University Press.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TrendFit", "gaps", "smooth_trend", "trend_log_prior"]


@dataclass
class TrendFit:
    """Smoothed stable level and the statistics for the shared trend parameters.

    Attributes
    ----------
    level, level_var : ndarray (N, T)
        Posterior mean and variance of the stable level at every step.
    slope : ndarray (N, T)
        Posterior mean of the slope.
    m0, P0 : ndarray (2,), (2, 2)
        Updated cohort prior of (level, slope) at the first step.
    q2 : float
        Updated variance of the slope's random walk (per session).
    bend_weight : ndarray (N, T)
        Updated scale-mixture weight of every step's bend (1: a typical
        bend; small: a bend far larger than typical, as at the start or end
        of a slow decline).
    bend_stat : ndarray (N,)
        Each patient's share of the update of ``q²``: the sum over their
        steps of the weighted expected squared standardised bend (``q²`` is
        ``bend_stat.sum() / (2 * steps)``; the update over a mixture of
        explanations weights these per patient).
    log_det : ndarray (N,) or None
        Log-determinant of the joint posterior covariance of each patient's
        (level, slope) path over the steps inside their series (the Laplace
        volume of the path; 0 where ``q²`` is 0); None unless asked for.
    """

    level: np.ndarray
    level_var: np.ndarray
    slope: np.ndarray
    m0: np.ndarray
    P0: np.ndarray
    q2: float
    bend_weight: np.ndarray
    bend_stat: np.ndarray
    log_det: np.ndarray | None


def gaps(S: np.ndarray) -> np.ndarray:
    """Steps between consecutive sessions, shape (N, T) (1 where undefined; column 0 unused).

    Examples
    --------
    >>> import numpy as np
    >>> gaps(np.array([[1.0, 2.0, 4.0, np.nan]])).tolist()
    [[1.0, 1.0, 2.0, 1.0]]
    """
    h = np.ones_like(S, dtype=float)
    d = np.diff(S, axis=1)
    h[:, 1:] = np.where(np.isfinite(d) & (d > 0), d, 1.0)
    return h


def _filter(y, r, h, q2, m0, P0):
    """Kalman filter of the local linear trend; predicted and filtered moments, (T, N) each.

    ``q2`` is the bending variance of every step, shape (N, T).
    """
    n, t_len = y.shape
    keys = ("al", "as", "pll", "pls", "pss", "ml", "ms", "fll", "fls", "fss")
    out = {k: np.empty((t_len, n)) for k in keys}
    ml = ms = fll = fls = fss = None
    for t in range(t_len):
        if t == 0:
            al, as_ = np.full(n, m0[0]), np.full(n, m0[1])
            pll, pls, pss = (np.full(n, P0[0, 0]), np.full(n, P0[0, 1]), np.full(n, P0[1, 1]))
        else:
            g, qt = h[:, t], q2[:, t]
            al, as_ = ml + g * ms, ms
            pll = fll + 2 * g * fls + g * g * fss + qt * g**3 / 3
            pls = fls + g * fss + qt * g * g / 2
            pss = fss + qt * g
        rt = r[:, t]
        denom = 1 + rt * pll
        kl, ks = pll * rt / denom, pls * rt / denom
        v = y[:, t] - al
        ml, ms = al + kl * v, as_ + ks * v
        fll, fls, fss = pll / denom, pls / denom, pss - ks * pls
        for k, val in zip(keys, (al, as_, pll, pls, pss, ml, ms, fll, fls, fss), strict=True):
            out[k][t] = val
    return out


def smooth_trend(y: np.ndarray, w: np.ndarray, h: np.ndarray, sigma2: np.ndarray, q2: float,
                 m0: np.ndarray, P0: np.ndarray, steps: np.ndarray,
                 bend_weight: np.ndarray | None = None, bend_df: float | None = None,
                 log_det: bool = False) -> TrendFit:
    """Kalman smoother of the stable level; M-step updates of ``m0``, ``P0`` and ``q²``.

    Parameters
    ----------
    y : ndarray (N, T)
        Pseudo-ratings of the stable level (any value where ``w`` is 0).
    w : ndarray (N, T)
        Their weights (0: no information at that step); the observation
        variance is ``sigma2 / w``.
    h : ndarray (N, T)
        Gaps between steps (:func:`gaps`).
    sigma2 : ndarray (N,)
        Each patient's noise variance.
    q2 : float
        Variance of the slope's random walk (0: a straight line per patient).
    m0, P0 : ndarray (2,), (2, 2)
        Cohort prior of (level, slope) at the first step.
    steps : ndarray (N, T), bool
        Which steps are inside a patient's series (False for padding); only
        these count toward the update of ``q²``.
    bend_weight : ndarray (N, T), optional
        Scale-mixture weights of the steps' bends (their variance is
        ``q² / weight``); default all 1.
    bend_df : float, optional
        With a value, the bends are Student t with these degrees of freedom
        (a scale mixture of normals): most trajectories stay straight while
        a few bend sharply.  The returned weights are the E-step's
        ``(bend_df + 2) / (bend_df + d)``, ``d`` the expected squared
        standardised bend.  None: normal bends (weights stay 1).
    log_det : bool, default False
        Also compute ``TrendFit.log_det`` (the Laplace volume of each path).

    Returns
    -------
    TrendFit

    Examples
    --------
    With ``q² = 0`` and a vague prior the smoothed level is the straight
    least-squares line:

    >>> import numpy as np
    >>> y = np.array([[1.0, 2.2, 2.8, 4.1]])
    >>> fit = smooth_trend(y, np.ones((1, 4)), np.ones((1, 4)), np.array([0.1]), 0.0,
    ...                    np.zeros(2), np.eye(2) * 1e8, np.ones((1, 4), bool))
    >>> fit.level.round(3).tolist()
    [[1.04, 2.03, 3.02, 4.01]]
    """
    r = w / sigma2[:, None]
    y = np.where(r > 0, y, 0.0)
    lam = np.ones_like(y) if bend_weight is None else bend_weight
    f = _filter(y, r, h, q2 / lam, m0, P0)
    t_len, n = f["ml"].shape
    sl, ss = f["ml"][-1].copy(), f["ms"][-1].copy()
    sll, sls, sss = f["fll"][-1].copy(), f["fls"][-1].copy(), f["fss"][-1].copy()
    level, level_var, slope = np.empty((t_len, n)), np.empty((t_len, n)), np.empty((t_len, n))
    level[-1], level_var[-1], slope[-1] = sl, sll, ss
    qsum, qcount = np.zeros(n), 0
    new_lam = np.ones_like(lam)
    for t in range(t_len - 2, -1, -1):
        g = h[:, t + 1]
        pll, pls, pss = f["pll"][t + 1], f["pls"][t + 1], f["pss"][t + 1]
        det = np.maximum(pll * pss - pls * pls, 1e-300)
        # P_t F' (F = [[1, g], [0, 1]]) and J = P_t F' Pp^{-1}
        a11 = f["fll"][t] + g * f["fls"][t]
        a12 = f["fls"][t]
        a21 = f["fls"][t] + g * f["fss"][t]
        a22 = f["fss"][t]
        j11 = (a11 * pss - a12 * pls) / det
        j12 = (a12 * pll - a11 * pls) / det
        j21 = (a21 * pss - a22 * pls) / det
        j22 = (a22 * pll - a21 * pls) / det
        dl, ds = sl - f["al"][t + 1], ss - f["as"][t + 1]
        # lag-one covariance C = Cov(x_{t+1}, x_t | all) = Ps_{t+1} J'
        c11 = sll * j11 + sls * j12
        c12 = sll * j21 + sls * j22
        c21 = sls * j11 + sss * j12
        c22 = sls * j21 + sss * j22
        el, es = sll - pll, sls - pls
        fs = sss - pss
        nl = f["ml"][t] + j11 * dl + j12 * ds
        ns = f["ms"][t] + j21 * dl + j22 * ds
        # Ps_t = P_t + J (Ps_{t+1} - Pp_{t+1}) J'
        b11, b12 = j11 * el + j12 * es, j11 * es + j12 * fs
        b21, b22 = j21 * el + j22 * es, j21 * es + j22 * fs
        nll = f["fll"][t] + b11 * j11 + b12 * j12
        nls = f["fls"][t] + b11 * j21 + b12 * j22
        nss = f["fss"][t] + b21 * j21 + b22 * j22
        # E[w w'] of the step t -> t+1, w = x_{t+1} - F x_t, for the update of q²
        inside = steps[:, t + 1]
        if q2 > 0 and inside.any():
            wl, ws = sl - (nl + g * ns), ss - ns
            # Var(x_{t+1} - F x_t) = Ps_{t+1} + F Ps_t F' - C F' - F C'
            vll = sll + nll + 2 * g * nls + g * g * nss - 2 * (c11 + g * c12)
            vls = sls + nls + g * nss - (c12 + c21 + g * c22)
            vss = sss + nss - 2 * c22
            ell, els, ess = wl * wl + vll, wl * ws + vls, ws * ws + vss
            # tr(Q~^{-1} E[ww']) with Q~^{-1} = [[12/g³, -6/g²], [-6/g², 4/g]]
            tr = 12 * ell / g**3 - 12 * els / g**2 + 4 * ess / g
            if bend_df is not None:
                new_lam[:, t + 1] = (bend_df + 2) / (bend_df + tr / q2)
            qsum += np.where(inside, new_lam[:, t + 1] * tr, 0.0)
            qcount += int(inside.sum())
        sl, ss, sll, sls, sss = nl, ns, nll, nls, nss
        level[t], level_var[t], slope[t] = sl, sll, ss
    m0_new = np.array([sl.mean(), ss.mean()])
    dl0, ds0 = sl - m0_new[0], ss - m0_new[1]
    P0_new = np.array([[np.mean(sll + dl0 * dl0), np.mean(sls + dl0 * ds0)],
                       [np.mean(sls + dl0 * ds0), np.mean(sss + ds0 * ds0)]])
    q2_new = float(qsum.sum()) / (2 * qcount) if qcount else q2
    return TrendFit(level=level.T, level_var=level_var.T, slope=slope.T, m0=m0_new, P0=P0_new,
                    q2=q2_new, bend_weight=new_lam, bend_stat=qsum,
                    log_det=_path_log_det(f, h, q2 / lam, steps) if log_det else None)


def _path_log_det(f: dict, h: np.ndarray, q2: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """log|Cov(path | ratings)| over each patient's steps, from the filter's moments.

    The joint posterior factorises backwards as p(x_L | y) * prod p(x_t | x_{t+1}, y_1..t),
    and |Cov(x_t | x_{t+1}, y_1..t)| = |P_t|t| |Q_t+1| / |P_t+1|t|.
    """
    t_len, n = f["fll"].shape
    if t_len < 2 or not np.all(q2[:, 1:] > 0):
        return np.zeros(n)
    ld_f = np.log(np.maximum(f["fll"] * f["fss"] - f["fls"] ** 2, 1e-300))        # (T, N)
    ld_p = np.log(np.maximum(f["pll"] * f["pss"] - f["pls"] ** 2, 1e-300))
    g = h.T
    ld_q = np.log(q2.T ** 2 * g**4 / 12)
    inside = steps.T                                                               # (T, N)
    last = t_len - 1 - np.argmax(inside[::-1], axis=0)
    cols = np.arange(n)
    step = (ld_f[:-1] + ld_q[1:] - ld_p[1:]) * inside[1:]
    return ld_f[last, cols] + step.sum(axis=0)


def trend_log_prior(level: np.ndarray, slope: np.ndarray, h: np.ndarray, q2: float,
                    m0: np.ndarray, P0: np.ndarray, steps: np.ndarray,
                    bend_df: float | None = None) -> np.ndarray:
    """Log prior density of each patient's (level, slope) path, shape (N,).

    The normal prior of the first step plus, for every later step inside the
    series, the density of its bend ``x_t - F x_{t-1}`` (normal, or bivariate
    Student t with ``bend_df`` degrees of freedom) with covariance
    ``q² · [[h³/3, h²/2], [h²/2, h]]``.  With ``q² = 0`` the bends are not
    scored (a straight line is the only path).

    Examples
    --------
    A straight line is more probable than a bent one:

    >>> import numpy as np
    >>> ones = np.ones((2, 4)); steps = ones.astype(bool)
    >>> level = np.array([[1.0, 1.1, 1.2, 1.3], [1.0, 1.1, 1.0, 0.9]])
    >>> slope = np.array([[0.1] * 4, [0.1, 0.0, -0.1, -0.1]])
    >>> lp = trend_log_prior(level, slope, ones, 0.01, np.array([1.0, 0.1]), np.eye(2), steps)
    >>> bool(lp[0] > lp[1])
    True
    """
    d0 = np.stack([level[:, 0] - m0[0], slope[:, 0] - m0[1]], axis=1)
    p_inv = np.linalg.inv(P0)
    out = -0.5 * np.einsum("ni,ij,nj->n", d0, p_inv, d0) - 0.5 * np.log(
        (2 * np.pi) ** 2 * np.linalg.det(P0))
    if q2 <= 0 or level.shape[1] < 2:
        return out
    g = h[:, 1:]
    wl = level[:, 1:] - level[:, :-1] - g * slope[:, :-1]
    ws = slope[:, 1:] - slope[:, :-1]
    d = (12 * wl * wl / g**3 - 12 * wl * ws / g**2 + 4 * ws * ws / g) / q2
    log_det = np.log(q2**2 * g**4 / 12)  # det of q² Q~(g)
    if bend_df is None:
        lp = -0.5 * d - np.log(2 * np.pi) - 0.5 * log_det
    else:
        nu = bend_df
        lp = (-np.log(nu * np.pi) - 0.5 * log_det - (nu + 2) / 2 * np.log1p(d / nu))
        # bivariate t: log Gamma((nu+2)/2) - log Gamma(nu/2) = log(nu/2)
        lp += np.log(nu / 2)
    return out + np.where(steps[:, 1:], lp, 0.0).sum(axis=1)
