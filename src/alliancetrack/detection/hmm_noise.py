"""The noise model of the cohort HMM, estimated from the cohort (empirical Bayes).

Two quantities decide how readily a low session is called a rupture rather
than noise, and the cohort HMM (:mod:`alliancetrack.detection.hmm_fit`)
estimates both from all patients instead of fixing them:

* **how heavy the tails are**: the degrees of freedom ``df`` of the
  Student-t emissions.  With normal noise a fixed small ``df`` lets real
  one-session ruptures pass as outliers; with heavy-tailed noise a large
  ``df`` turns outliers into ruptures.  :func:`update_df` is the ECM step of
  Liu & Rubin (1995) for ``df``, with the posterior state probabilities as
  weights;
* **how much patients differ in their noise**: each patient's noise variance
  ``sigma_i²`` has a scaled inverse-chi-square prior with ``nu0`` degrees of
  freedom around ``s0²``.  A patient's own estimate from 8-16 sessions is
  rough, and one that takes a rupture for noise inflates their variance and
  then hides their ruptures; the prior shrinks it toward the cohort as
  strongly as the cohort warrants.  :func:`sigma_prior` estimates
  ``(nu0, s0²)`` by maximising the marginal likelihood of the patients'
  residual sums of squares (the empirical-Bayes variance model of Smyth
  2004).

References
----------
Liu, C., & Rubin, D. B. (1995). ML estimation of the t distribution using EM
and its extensions, ECM and ECME. *Statistica Sinica*, 5, 19-39.
Smyth, G. K. (2004). Linear models and empirical Bayes methods for assessing
differential expression in microarray experiments. *Statistical Applications
in Genetics and Molecular Biology*, 3(1), Article 3.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, special

__all__ = ["DF_RANGE", "PRIOR_DF_RANGE", "sigma_log_prior", "sigma_prior", "update_df"]

#: Range of the estimated t degrees of freedom (at the top the t is as good as normal).
DF_RANGE = (2.0, 200.0)
#: Range of the estimated prior degrees of freedom of the patients' noise variances.
PRIOR_DF_RANGE = (1.0, 1000.0)


def update_df(post: np.ndarray, r2: np.ndarray, used: np.ndarray, df: float) -> float:
    """ECM update of the t degrees of freedom (Liu & Rubin 1995, with state weights).

    Parameters
    ----------
    post : ndarray (N, T, K)
        Posterior state probabilities.
    r2 : ndarray (N, T, K)
        Squared standardised residuals of each rating under each state.
    used : ndarray (N, T), bool
        Ratings that enter (observed and not censored).
    df : float
        The current degrees of freedom (the E-step's).

    Returns
    -------
    float
        The new degrees of freedom, in :data:`DF_RANGE`.

    Examples
    --------
    Normal residuals give a large ``df``, t(3) residuals a small one:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> post = np.ones((2000, 1, 1)); used = np.ones((2000, 1), bool)
    >>> df = 10.0
    >>> for _ in range(50):
    ...     df = update_df(post, rng.standard_t(3, (2000, 1, 1)) ** 2, used, df)
    >>> 2 < df < 5
    True
    """
    g = post * used[:, :, None]
    tot = g.sum()
    if tot <= 0:
        return df
    e_u = (df + 1) / (df + r2)
    e_log_u = special.digamma((df + 1) / 2) - np.log((df + r2) / 2)
    a = float((g * np.where(used[:, :, None], e_log_u - e_u, 0.0)).sum() / tot)

    def score(nu: float) -> float:
        return 1 + a + np.log(nu / 2) - special.digamma(nu / 2)

    lo, hi = DF_RANGE
    if score(hi) >= 0:  # lighter tails than any t in range: as good as normal
        return hi
    if score(lo) <= 0:
        return lo
    return float(optimize.brentq(score, lo, hi, xtol=1e-10))


def sigma_prior(ss: np.ndarray, n: np.ndarray, nu0: float, s2: float) -> tuple[float, float]:
    """Empirical-Bayes prior ``(nu0, s0²)`` of the patients' noise variances.

    ``ss_i / sigma_i²`` is taken as chi-square with ``n_i`` degrees of
    freedom and ``sigma_i²`` as scaled inverse chi-square ``(nu0, s0²)``;
    the marginal likelihood of the ``ss_i`` (a scaled F distribution) is
    maximised over ``log nu0`` and ``log s0²``, from the current values.

    Parameters
    ----------
    ss : ndarray (N,)
        Expected residual sums of squares (t-weighted) of each patient.
    n : ndarray (N,)
        Their numbers of ratings.
    nu0, s2 : float
        Starting values.

    Returns
    -------
    (float, float)
        ``nu0`` (in :data:`PRIOR_DF_RANGE`) and ``s0²``.

    Examples
    --------
    Equal true variances give a strong prior; very unequal ones a weak one:

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> n = np.full(3000, 10.0)
    >>> equal = 0.04 * rng.chisquare(10, 3000)
    >>> unequal = 0.04 * rng.lognormal(0, 1, 3000) * rng.chisquare(10, 3000)
    >>> sigma_prior(equal, n, 4.0, 0.04)[0] > 100, sigma_prior(unequal, n, 4.0, 0.04)[0] < 5
    (True, True)
    """
    keep = (n > 0) & (ss > 0) & np.isfinite(ss)
    ss, n = ss[keep], n[keep]
    if len(ss) < 3:
        return nu0, s2

    def negll(theta: np.ndarray) -> float:
        nu, s = np.exp(theta)
        ll = (special.gammaln((n + nu) / 2) - special.gammaln(nu / 2)
              + nu / 2 * np.log(nu * s) - (n + nu) / 2 * np.log(nu * s + ss))
        return -float(ll.sum())

    lo, hi = np.log(PRIOR_DF_RANGE)
    x0 = np.array([np.clip(np.log(max(nu0, 1e-3)), lo, hi), np.log(max(s2, 1e-12))])
    res = optimize.minimize(negll, x0, method="L-BFGS-B", bounds=[(lo, hi), (None, None)])
    nu, s = np.exp(res.x)
    return float(nu), float(s)


def sigma_log_prior(sigma2: np.ndarray, nu0: float, s2: float) -> np.ndarray:
    """Log density of the scaled inverse-chi-square ``(nu0, s0²)`` prior at each ``sigma_i²``.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import stats
    >>> v = np.array([0.02, 0.05])
    >>> ref = stats.invgamma(2.0, scale=2.0 * 0.04).logpdf(v)
    >>> bool(np.allclose(sigma_log_prior(v, 4.0, 0.04), ref))
    True
    """
    a = nu0 / 2
    return (a * np.log(a * s2) - special.gammaln(a) - (a + 1) * np.log(sigma2)
            - a * s2 / sigma2)
