"""Linear mixed-effects models that match lme4, fitted robustly and fast.

:func:`fit_mixed` fits a linear mixed model (random intercepts, correlated random
slopes and nested variance components) by (restricted) maximum likelihood.

Two engines evaluate the likelihood; the optimisation and its checks are the
same for both and done here, because statsmodels' default optimiser can stop at
a wrong optimum (for example on random-slope alliance trajectories:
log-likelihood -543.9 instead of -398.5 on the reference cohort shipped with
the project).

* ``engine="fast"`` (chosen automatically for two-level models: one grouping
  factor with a random intercept and/or random slopes, correlated, no nested
  variance components): lme4's profiled deviance (Bates et al., 2015) from
  per-group sufficient statistics ``Z_g'[Z_g X_g y_g]`` computed once, each
  evaluation a batch of small Cholesky factorisations written as array
  operations over all groups, with an analytic gradient.  Fixed effects, their
  lme4-style covariance, the variance table and the BLUPs come from the same
  quantities; no per-group Python loop anywhere, so 100,000 patients with 16
  sessions each fit in about a second.
* ``engine="statsmodels"`` (the fallback for nested variance components, or on
  request): the likelihood, design matrices and standard errors of
  :class:`statsmodels.regression.mixed_linear_model.MixedLM`.

The engine used is reported as ``MixedResult.engine`` and in the summary.

How the fit is made robust
--------------------------
The variance parameters are optimised on the profiled (restricted)
log-likelihood in the relative-Cholesky parameterisation used by lme4 (Bates,
Maechler, Bolker & Walker, 2015): the lower-triangular factor of the random
effects covariance divided by the residual variance, with the diagonal bounded
below by zero, and the square roots of the variance components.

1. L-BFGS from the lme4 default start (identity; or the user's ``start``),
   unbounded, because the covariance depends on the Cholesky factor only
   through ``L L'`` (signs are normalised afterwards and a diagonal element
   that ends below 1e-3 is set to exactly zero if that costs no likelihood),
   with the analytic gradient of the engine's likelihood (the fast engine's
   is exact and stable at the boundary, where statsmodels' likelihood, which
   inverts the random-effects covariance, breaks down).  If the optimum has a
   parameter at the boundary, bounded L-BFGS-B is restarted off the boundary
   and from a second start: a zero diagonal of the Cholesky factor is a
   stationary point in its own direction (the deviance depends on its
   square), so a gradient method could otherwise stop at a saddle.
2. The optimum is checked: projected gradient, the log-likelihood gain a
   Newton step would still give, and whether the Hessian of the profiled
   deviance (by central differences of the analytic gradient) is positive
   definite on the parameters not at the boundary.  If all checks pass, this
   is the fit (one optimiser run: the common case).
3. Otherwise a second L-BFGS-B run starts from a small random-effects
   variance (if not run yet).  If the two runs disagree or a check still fails, more optimisers
   (BFGS, Powell, Nelder-Mead, CG) are run from the first start and Powell from
   the best point so far; the best log-likelihood is kept and polished with
   L-BFGS-B.
4. The winner, the log-likelihood of every attempt and the diagnostics are
   stored on the result (``.optimizer``, ``.attempts``, ``.diagnostics``).  A
   :class:`ConvergenceWarning` is raised if the final checks still fail, and a
   :class:`SingularFitWarning` when the fit is on the boundary (a random-effect
   standard deviation of zero or a correlation of +/-1), as lme4's
   ``isSingular``.

Conventions (compared with lme4)
--------------------------------
* ``llf`` is the (restricted) log-likelihood with lme4's constants (the same
  as statsmodels'), so ``-2 * llf`` equals lme4's ``REMLcrit`` for REML fits
  and ``llf`` equals ``logLik`` for ML fits (checked against lme4 1.1-31 on
  the reference cohort to 0.01).
* Fixed-effect standard errors are conditional on the variance parameters,
  ``sigma^2 (X' V^-1 X)^-1``, as lme4's ``vcov`` (statsmodels' own ``bse``
  come from the full observed information instead and can differ slightly).
* The intercept is called ``"(Intercept)"`` in the tidy tables, as in R.
* Tests are Wald z tests with normal-theory confidence intervals (lme4 prints
  no p-values; lmerTest's Satterthwaite df would give slightly wider
  intervals with few clusters).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from alliancetrack.errors import AllianceDataError

__all__ = [
    "ConvergenceWarning",
    "MixedResult",
    "SingularFitWarning",
    "effect_size_from_t",
    "fit_mixed",
]


class ConvergenceWarning(UserWarning):
    """The mixed-model optimiser did not reach a verified optimum."""


class SingularFitWarning(UserWarning):
    """The fit is on the boundary: a variance of zero or a correlation of +/-1."""


# Thresholds for the checks (documented in fit_mixed).
_SINGULAR_TOL = 1e-4  # lme4's isSingular tolerance on theta
_NEWTON_GAIN_TOL = 1e-5  # llf a Newton step could still gain
_GRAD_TOL = 1e-3  # projected gradient at the boundary, times sqrt(nobs)
_STEP_TOL = 1e-3  # largest Newton step (lme4's scaled gradient), relative to max(1, |x|)
_AGREE_TOL = 1e-4  # two attempts agree if their llf differ by less than this


def effect_size_from_t(t: float, df: float) -> dict[str, float]:
    """Convert a t (or z) statistic into the effect sizes r and d.

    ``r = t / sqrt(t**2 + df)`` and ``d = 2 t / sqrt(df)`` (Rosenthal, 1994;
    Rosnow & Rosenthal, 1996), the conversions used in psychotherapy
    meta-analyses such as Eubanks, Muran & Safran (2018).  ``d`` is the
    equal-group-size conversion; both keep the sign of ``t``.

    Parameters
    ----------
    t : float
        Test statistic.
    df : float
        Degrees of freedom (must be positive).

    Returns
    -------
    dict
        ``{"t": t, "df": df, "r": r, "d": d}``.

    Examples
    --------
    >>> es = effect_size_from_t(2.0, 100)
    >>> round(es["r"], 4), round(es["d"], 4)
    (0.1961, 0.4)
    """
    if not df > 0:
        raise AllianceDataError(f"effect sizes need positive degrees of freedom, got df={df}.")
    r = t / math.sqrt(t * t + df)
    d = 2.0 * t / math.sqrt(df)
    return {"t": float(t), "df": float(df), "r": float(r), "d": float(d)}


# ---------------------------------------------------------------------------
# Optimisation on the profiled likelihood
# ---------------------------------------------------------------------------


@dataclass
class _Attempt:
    optimizer: str
    start: str
    x: np.ndarray
    llf: float
    success: bool
    nfev: int
    message: str = ""


class _Profile:
    """The profiled (restricted) log-likelihood of a statsmodels MixedLM."""

    def __init__(self, model: Any):
        self.model = model
        self.k_re = model.k_re
        self.k_vc = model.k_vc
        rows, cols = np.tril_indices(self.k_re)
        diag = list(np.flatnonzero(rows == cols)) + [len(rows) + j for j in range(self.k_vc)]
        self.diag = np.array(diag, dtype=int)  # parameters bounded below by 0
        self.k_re2 = model.k_re2
        self.k = model.k_re2 + model.k_vc
        self.bounds = [(None, None)] * self.k
        for j in self.diag:
            self.bounds[j] = (0.0, None)
        self.nobs = float(model.n_totobs)
        self.nfev = 0

    def llf(self, x: np.ndarray) -> float:
        self.nfev += 1
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                val = float(self.model.loglike(np.asarray(x, float), profile_fe=True))
        except (np.linalg.LinAlgError, ValueError, FloatingPointError, ZeroDivisionError):
            return -np.inf
        return val if np.isfinite(val) else -np.inf

    def score(self, x: np.ndarray) -> np.ndarray:
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                g = np.asarray(self.model.score(np.asarray(x, float), profile_fe=True), float)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError, ZeroDivisionError):
            return np.full(self.k, np.nan)
        return g

    # objective on a per-observation scale for the optimisers
    def f(self, x: np.ndarray) -> float:
        v = self.llf(x)
        return 1e10 if not np.isfinite(v) else -v / self.nobs

    def g(self, x: np.ndarray) -> np.ndarray:
        g = self.score(x)
        if not np.all(np.isfinite(g)):
            return np.zeros(self.k)
        return -g / self.nobs

    def canonical(self, x: np.ndarray) -> np.ndarray:
        """Flip signs so that the diagonal is non-negative (same covariance)."""
        x = np.array(x, float)
        if self.k_re:
            L = np.zeros((self.k_re, self.k_re))
            L[np.tril_indices(self.k_re)] = x[: self.k_re2]
            sign = np.where(np.diag(L) < 0, -1.0, 1.0)
            L = L * sign[None, :]
            x[: self.k_re2] = L[np.tril_indices(self.k_re)]
        if self.k_vc:
            x[self.k_re2 :] = np.abs(x[self.k_re2 :])
        return x


class _BatchProfile(_Profile):
    """lme4's profiled deviance and its analytic gradient, vectorised over groups.

    The fast path of :func:`fit_mixed` for two-level models (one grouping
    factor; random intercept and/or slopes, correlated; no variance
    components).  With the relative covariance factor ``L`` (lower triangular,
    ``cov(b) = sigma^2 L L'``) and per group ``M_g = I + L' Z_g'Z_g L``, lme4's
    profiled deviance (Bates et al., 2015, eqs. 34 and 41) needs only the
    per-group cross-products ``Z_g'[Z_g X_g y_g]`` and the totals
    ``[X y]'[X y]``, computed once.  Each evaluation is then a batch of q x q
    Cholesky factorisations and triangular solves written as element-wise
    array operations over all groups at once (groups on the last, contiguous
    axis), so the cost per evaluation is linear in the number of groups with
    no Python loop over them.

    The gradient is analytic: with ``V_g = I + Z_g L L' Z_g'``,
    ``W_g = Z_g' V_g^-1 Z_g``, ``A_g = Z_g' V_g^-1 X_g``,
    ``s_g = Z_g' V_g^-1 (y_g - X_g beta)``, ``C = X' V^-1 X`` and
    ``r^2 = (y - X beta)' V^-1 (y - X beta)``,

    ``d deviance / dL = 2 [sum_g W_g - (m / r^2) sum_g s_g s_g'
    - (REML) sum_g A_g C^-1 A_g'] L``, with ``m = n - p`` (REML) or ``n`` (ML).
    """

    def __init__(
        self,
        X: np.ndarray,
        Z: np.ndarray,
        y: np.ndarray,
        codes: np.ndarray,
        n_groups: int,
        reml: bool,
    ):
        n, p = X.shape
        q = Z.shape[1]
        self.model = None
        self.k_re = q
        self.k_vc = 0
        self.k_re2 = q * (q + 1) // 2
        self.k = self.k_re2
        rows, cols = np.tril_indices(q)
        self.tril = (rows, cols)
        self.diag = np.flatnonzero(rows == cols)
        self.bounds = [(None, None)] * self.k
        for j in self.diag:
            self.bounds[j] = (0.0, None)
        self.nobs = float(n)
        self.nfev = 0
        self.n, self.p, self.q = float(n), p, q
        self.reml = bool(reml)
        self.n_groups = int(n_groups)
        W = np.column_stack([Z, X, y]).astype(float)  # n x c, c = q + p + 1
        c = W.shape[1]
        # per-group Z'[Z X y], groups last: (q, c, groups)
        S = np.empty((q, c, self.n_groups))
        for a in range(q):
            for b in range(c):
                if b < a:  # symmetric Z'Z block
                    S[a, b] = S[b, a]
                else:
                    S[a, b] = np.bincount(codes, weights=Z[:, a] * W[:, b], minlength=n_groups)
        self.S = S
        T = W.T @ W
        self.XtX, self.Xty, self.yty = T[q : q + p, q : q + p], T[q : q + p, -1], float(T[-1, -1])
        self._cache: tuple[bytes, dict[str, Any]] | None = None

    # -- the core evaluation ---------------------------------------------------
    def _lower(self, x: np.ndarray) -> np.ndarray:
        L = np.zeros((self.q, self.q))
        L[self.tril] = x
        return L

    def _factor(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``L``, the batched Cholesky factor ``R`` of ``M_g`` and ``B = R^-1 L' S``."""
        q = self.q
        L = self._lower(x)
        F = np.einsum("ji,jcg->icg", L, self.S)  # L' Z'[Z X y]
        M = np.einsum("icg,cl->ilg", F[:, :q], L)  # L' Z'Z L
        R = np.zeros_like(M)
        for j in range(q):
            d = 1.0 + M[j, j] - np.einsum("kg,kg->g", R[j, :j], R[j, :j])
            R[j, j] = np.sqrt(d)
            for i in range(j + 1, q):
                R[i, j] = (M[i, j] - np.einsum("kg,kg->g", R[i, :j], R[j, :j])) / R[j, j]
        B = np.empty_like(F)
        for i in range(q):
            B[i] = (F[i] - np.einsum("kg,kcg->cg", R[i, :i], B[:i])) / R[i, i]
        return L, R, B

    def _evaluate(self, x: np.ndarray) -> dict[str, Any]:
        x = np.asarray(x, float)
        key = x.tobytes()
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        self.nfev += 1
        q, p = self.q, self.p
        out: dict[str, Any] = {"llf": -np.inf, "score": np.full(self.k, np.nan)}
        with np.errstate(all="ignore"):
            L, R, B = self._factor(x)
            diagR = np.stack([R[j, j] for j in range(q)])
            if not np.all(diagR > 0):
                self._cache = (key, out)
                return out
            logdet = 2.0 * float(np.sum(np.log(diagR)))
            G = np.einsum("kag,kbg->abg", B, B[:, q:])  # (c, c - q, groups)
            Gs = G[q:].sum(axis=2)  # summed [X y] block
            C = self.XtX - Gs[:p, :p]
            xvy = self.Xty - Gs[:p, p]
            yvy = self.yty - Gs[p, p]
            try:
                cf = np.linalg.cholesky(C)
            except np.linalg.LinAlgError:
                self._cache = (key, out)
                return out
            beta = np.linalg.solve(C, xvy)
            r2 = float(yvy - xvy @ beta)
            if not r2 > 0:
                self._cache = (key, out)
                return out
            m = self.n - p if self.reml else self.n
            dev = logdet + m * (1.0 + np.log(2.0 * np.pi * r2 / m))
            if self.reml:
                dev += 2.0 * float(np.sum(np.log(np.diag(cf))))
            # gradient
            Wg = self.S[:, :q] - np.einsum("kag,kbg->abg", B[:, :q], B[:, :q])  # Z'V^-1 Z
            A = self.S[:, q : q + p] - G[:q, :p]  # Z'V^-1 X, (q, p, groups)
            s = self.S[:, -1] - G[:q, p] - np.einsum("apg,p->ag", A, beta)  # Z'V^-1 e
            T = Wg.sum(axis=2) - (m / r2) * np.einsum("ag,bg->ab", s, s)
            if self.reml:
                Ci = np.linalg.inv(C)
                T -= np.einsum("apg,pr,brg->ab", A, Ci, A, optimize=True)
            dL = 2.0 * (T @ L)  # d deviance / dL
        llf = -0.5 * float(dev)
        score = -0.5 * dL[self.tril]
        if np.isfinite(llf) and np.all(np.isfinite(score)):
            out = {"llf": llf, "score": score, "beta": beta, "r2": r2, "C": C}
        self._cache = (key, out)
        return out

    def llf(self, x: np.ndarray) -> float:
        return float(self._evaluate(x)["llf"])

    def score(self, x: np.ndarray) -> np.ndarray:
        return np.array(self._evaluate(x)["score"], float)

    # -- results at the optimum --------------------------------------------------
    def fixed(self, x: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """GLS fixed effects, residual variance and their covariance at ``x``."""
        ev = self._evaluate(x)
        if not np.isfinite(ev["llf"]):
            raise AllianceDataError(
                "the mixed model could not be evaluated at its optimum; check for collinear "
                "predictors."
            )
        m = self.n - self.p if self.reml else self.n
        scale = ev["r2"] / m
        return ev["beta"], float(scale), scale * np.linalg.inv(ev["C"])

    def random_effects(self, x: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """Conditional modes (BLUPs) ``b_g = L M_g^-1 L' Z_g'(y_g - X_g beta)``, (groups, q)."""
        q, p = self.q, self.p
        L, R, B = self._factor(np.asarray(x, float))
        # R^-1 L' Z'e = B_y - B_X beta; then solve R' u = that
        w = B[:, -1] - np.einsum("kpg,p->kg", B[:, q : q + p], beta)
        u = np.empty_like(w)
        for i in reversed(range(q)):
            u[i] = (w[i] - np.einsum("kg,kg->g", R[i + 1 :, i], u[i + 1 :])) / R[i, i]
        return (L @ u).T


def _starts(prof: _Profile) -> dict[str, np.ndarray]:
    """Starting values: lme4's identity start and a small-variance start."""
    k_re = prof.k_re
    ident = np.concatenate([np.eye(k_re)[np.tril_indices(k_re)], np.ones(prof.k_vc)])
    small = np.concatenate([0.1 * np.eye(k_re)[np.tril_indices(k_re)], 0.1 * np.ones(prof.k_vc)])
    return {"identity": ident, "small": small}


def _snap(prof: _Profile, x: np.ndarray) -> np.ndarray:
    """Set near-zero diagonal parameters to exactly zero if that loses nothing."""
    near = prof.diag[np.abs(x[prof.diag]) < 1e-3]
    if near.size == 0:
        return x
    base = prof.llf(x)
    xs = x.copy()
    xs[near] = 0.0
    return xs if prof.llf(xs) >= base - 1e-9 else x


def _run(prof: _Profile, method: str, x0: np.ndarray, start: str, maxiter: int) -> _Attempt:
    n0 = prof.nfev
    x0 = np.asarray(x0, float)
    try:
        if method == "lbfgsb":
            res = optimize.minimize(
                prof.f,
                x0,
                jac=prof.g,
                method="L-BFGS-B",
                bounds=prof.bounds,
                options={"maxiter": maxiter, "ftol": 1e-14, "gtol": 1e-9, "maxls": 50},
            )
        elif method == "lbfgs":  # unbounded: a zero diagonal is passed through, not hit
            res = optimize.minimize(
                prof.f,
                x0,
                jac=prof.g,
                method="L-BFGS-B",
                options={"maxiter": maxiter, "ftol": 1e-14, "gtol": 1e-9, "maxls": 50},
            )
        elif method in ("bfgs", "cg"):
            res = optimize.minimize(
                prof.f,
                x0,
                jac=prof.g,
                method=method.upper(),
                options={"maxiter": maxiter, "gtol": 1e-8},
            )
        elif method == "powell":
            res = optimize.minimize(
                prof.f,
                x0,
                method="Powell",
                bounds=prof.bounds,
                options={"maxiter": maxiter, "xtol": 1e-8, "ftol": 1e-12},
            )
        elif method == "nelder-mead":
            res = optimize.minimize(
                prof.f,
                x0,
                method="Nelder-Mead",
                bounds=prof.bounds,
                options={"maxiter": maxiter * 10, "xatol": 1e-8, "fatol": 1e-12},
            )
        else:  # pragma: no cover - guarded by fit_mixed
            raise ValueError(method)
        x = _snap(prof, prof.canonical(res.x))
        return _Attempt(
            method, start, x, prof.llf(x), bool(res.success), prof.nfev - n0, str(res.message)
        )
    except (np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
        return _Attempt(method, start, x0, -np.inf, False, prof.nfev - n0, repr(exc))


def _diagnose(prof: _Profile, x: np.ndarray) -> dict[str, Any]:
    """Gradient, Hessian and boundary checks at ``x`` (log-likelihood scale)."""
    x = np.asarray(x, float)
    at_bound = np.zeros(prof.k, bool)
    at_bound[prof.diag] = x[prof.diag] < _SINGULAR_TOL
    g = prof.score(x)
    # projected gradient: at a zero bound only an increase is feasible
    gp = g.copy()
    gp[at_bound & (g < 0)] = 0.0
    free = np.flatnonzero(~at_bound)
    out: dict[str, Any] = {
        "gradient": gp,
        "max_abs_gradient": float(np.max(np.abs(gp))) if gp.size else 0.0,
        "at_boundary": bool(at_bound.any()),
        "hessian_pd": True,
        "min_hessian_eigenvalue": np.nan,
        "newton_gain": 0.0,
        "max_newton_step": 0.0,
        "max_boundary_gradient": float(np.max(np.abs(gp[at_bound]))) if at_bound.any() else 0.0,
        "nobs": prof.nobs,
    }
    if not np.all(np.isfinite(g)):
        out.update(
            hessian_pd=False, max_abs_gradient=np.inf, newton_gain=np.inf, max_newton_step=np.inf
        )
        return out
    if free.size:
        h = np.empty((free.size, free.size))
        for a, j in enumerate(free):
            step = 1e-4 * max(1.0, abs(x[j]))
            xp, xm = x.copy(), x.copy()
            xp[j] += step
            xm[j] -= step
            h[:, a] = (prof.score(xp)[free] - prof.score(xm)[free]) / (2 * step)
        h = -(h + h.T) / 2  # Hessian of -llf
        if not np.all(np.isfinite(h)):
            out.update(hessian_pd=False, newton_gain=np.inf, max_newton_step=np.inf)
            return out
        eig = np.linalg.eigvalsh(h)
        out["min_hessian_eigenvalue"] = float(eig.min())
        scale = max(1.0, float(np.max(np.abs(eig))))
        out["hessian_pd"] = bool(eig.min() > 1e-8 * scale)
        if out["hessian_pd"]:
            gf = gp[free]
            step_n = np.linalg.solve(h, gf)
            out["newton_gain"] = float(0.5 * gf @ step_n)
            out["max_newton_step"] = float(
                np.max(np.abs(step_n) / np.maximum(1.0, np.abs(x[free])))
            )
        else:
            out["newton_gain"] = np.inf
            out["max_newton_step"] = np.inf
    return out


def _diagnostics_ok(d: Mapping[str, Any]) -> bool:
    return bool(
        d["hessian_pd"]
        and d["newton_gain"] < _NEWTON_GAIN_TOL
        and d["max_newton_step"] < _STEP_TOL
        and d["max_boundary_gradient"] < _GRAD_TOL * math.sqrt(d["nobs"])
    )


def _optimise(
    prof: _Profile,
    optimizers: Sequence[str] | None,
    start: np.ndarray | None,
    maxiter: int,
) -> tuple[_Attempt, list[_Attempt], dict[str, Any]]:
    starts = _starts(prof)
    if start is not None:
        start = np.asarray(start, float)
        if start.shape != (prof.k,):
            raise AllianceDataError(
                f"start must have {prof.k} values (relative Cholesky factor, then square "
                f"roots of variance components); got shape {start.shape}."
            )
        starts = {"user": start, **starts}
    attempts: list[_Attempt] = []
    if prof.k == 0:  # no variance parameters (should not happen for a mixed model)
        x = np.zeros(0)
        a = _Attempt("none", "none", x, prof.llf(x), True, 1)
        return a, [a], _diagnose(prof, x)

    if optimizers is not None:  # user-chosen optimisers: run them all from every start
        for meth in optimizers:
            for sname, x0 in starts.items():
                attempts.append(_run(prof, meth, x0, sname, maxiter))
    else:
        names = list(starts)
        a = _run(prof, "lbfgs", starts[names[0]], names[0], maxiter)
        attempts.append(a)
        bound = a.x[prof.diag] < _SINGULAR_TOL
        if bound.any():
            # a zero diagonal of the Cholesky factor is a stationary point in its own
            # direction (the deviance depends on its square), so a gradient method
            # cannot leave it: restart off the boundary to tell a real boundary
            # optimum from a saddle
            x1 = a.x.copy()
            x1[prof.diag[bound]] = 0.1
            attempts.append(_run(prof, "lbfgsb", x1, "off-boundary restart", maxiter))
            attempts.append(_run(prof, "lbfgsb", starts[names[1]], names[1], maxiter))
        best = max(attempts, key=lambda a: a.llf)
        diag = _diagnose(prof, best.x)
        if _diagnostics_ok(diag):
            return best, attempts, diag
        if len(attempts) == 1:  # doubtful: confirm from a second start
            attempts.append(_run(prof, "lbfgsb", starts[names[1]], names[1], maxiter))
    best = max(attempts, key=lambda a: a.llf)
    diag = _diagnose(prof, best.x)
    agree = max(a.llf for a in attempts) - min(a.llf for a in attempts) < _AGREE_TOL
    if optimizers is None and not (agree and _diagnostics_ok(diag)):
        # doubtful: widen the search
        first = next(iter(starts))
        for meth in ("bfgs", "powell", "nelder-mead", "cg"):
            attempts.append(_run(prof, meth, starts[first], first, maxiter))
        best = max(attempts, key=lambda a: a.llf)
        attempts.append(_run(prof, "powell", best.x, f"best ({best.optimizer})", maxiter))
    best = max(attempts, key=lambda a: a.llf)
    # polish the winner with the gradient-based bounded optimiser
    pol = _run(prof, "lbfgsb", best.x, f"polish of {best.optimizer}/{best.start}", maxiter)
    if pol.llf >= best.llf - 1e-10:
        pol.optimizer = best.optimizer
        pol.start = best.start
        pol.message = "polished with L-BFGS-B; " + pol.message
        winner = pol if pol.llf > best.llf else best
    else:
        winner = best
    diag = _diagnose(prof, winner.x)
    return winner, attempts, diag


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


def _build_sm_result(model: Any, x: np.ndarray, converged: bool) -> Any:
    """Build a statsmodels MixedLMResults at the packed variance parameters ``x``.

    This mirrors the end of :meth:`MixedLM.fit` (statsmodels 0.14/0.15) without
    re-running its optimiser.  statsmodels inverts the random-effects
    covariance, so at an exactly singular fit the parameters are nudged off
    zero (by 1e-5, then 1e-3) for this object only.
    """
    from statsmodels.regression.mixed_linear_model import (
        MixedLMParams,
        MixedLMResults,
        MixedLMResultsWrapper,
    )

    x = np.asarray(x, float)
    for nudge in (0.0, 1e-5, 1e-3):
        xs = x.copy()
        small = np.abs(xs) < nudge
        xs[small] = np.where(xs[small] < 0, -nudge, nudge)
        params = MixedLMParams.from_packed(
            xs, model.k_fe, model.k_re, use_sqrt=model.use_sqrt, has_fe=False
        )
        cov_re_unscaled = params.cov_re
        vcomp_unscaled = params.vcomp
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                fe_params, _ = model.get_fe_params(cov_re_unscaled, vcomp_unscaled)
                params.fe_params = fe_params
                scale = model.get_scale(fe_params, cov_re_unscaled, vcomp_unscaled)
                hess, _ = model.hessian(params)
            break
        except np.linalg.LinAlgError:
            continue
    else:
        raise AllianceDataError(
            "statsmodels could not evaluate the fitted model (singular matrices); check for "
            "collinear predictors."
        )
    k_fe = model.k_fe
    # lme4-style fixed-effect covariance: conditional on the variance parameters
    hfe = -hess[:k_fe, :k_fe]
    try:
        cov_fe = np.linalg.inv(hfe)
    except np.linalg.LinAlgError:
        cov_fe = np.linalg.pinv(hfe)
    try:
        pcov = np.linalg.inv(-hess)
    except np.linalg.LinAlgError:
        pcov = np.linalg.pinv(-hess)
    if not np.all(np.isfinite(pcov)):
        pcov = np.full_like(hess, np.nan)
    pcov[:k_fe, :k_fe] = cov_fe
    pcov[:k_fe, k_fe:] = 0.0
    pcov[k_fe:, :k_fe] = 0.0
    params_packed = params.get_packed(use_sqrt=False, has_fe=True)
    res = MixedLMResults(model, params_packed, pcov / scale)
    res.params_object = params
    res.fe_params = fe_params
    res.cov_re = scale * cov_re_unscaled
    res.vcomp = scale * vcomp_unscaled
    res.scale = scale
    res.cov_re_unscaled = cov_re_unscaled
    res.method = "REML" if model.reml else "ML"
    res.converged = converged
    res.hist = None
    res.reml = model.reml
    res.cov_pen = None
    res.k_fe = model.k_fe
    res.k_re = model.k_re
    res.k_re2 = model.k_re2
    res.k_vc = model.k_vc
    res.use_sqrt = model.use_sqrt
    res.freepat = None
    return MixedLMResultsWrapper(res), cov_fe


def _rename(term: str) -> str:
    return "(Intercept)" if term in ("Intercept", "const") else term


def wald_table(names, estimates, se, alpha: float = 0.05) -> pd.DataFrame:
    """Tidy Wald table: ``term, estimate, se, statistic (z), p_value, ci_low, ci_high``.

    Examples
    --------
    >>> from alliancetrack.models.mixed import wald_table
    >>> wald_table(["Intercept", "x"], [1.0, 0.5], [0.5, 0.25])[["term", "statistic"]]
              term  statistic
    0  (Intercept)        2.0
    1            x        2.0
    """
    estimates = np.asarray(estimates, dtype=float)
    se = np.asarray(se, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = estimates / se
    q = stats.norm.ppf(1 - alpha / 2)
    return pd.DataFrame({
        "term": [_rename(n) for n in names],
        "estimate": estimates,
        "se": se,
        "statistic": z,
        "p_value": 2 * stats.norm.sf(np.abs(z)),
        "ci_low": estimates - q * se,
        "ci_high": estimates + q * se,
    })


@dataclass(frozen=True)
class MixedResult:
    """Result of :func:`fit_mixed`.

    Attributes
    ----------
    coefs : pandas.DataFrame
        Fixed effects: ``term, estimate, se, statistic, p_value, ci_low, ci_high``
        (Wald z statistic, two-sided normal p-value and confidence interval).
    variance : pandas.DataFrame
        Random-effect standard deviations and correlations as lme4's ``VarCorr``:
        ``group, term, term2, variance, sd, corr``.  Standard-deviation rows have
        ``term2`` missing; correlation rows have ``term`` and ``term2`` set and
        ``sd``/``variance`` missing (``variance`` then holds the covariance).
        The last row is ``group="Residual"``.
    llf : float
        Log-likelihood (restricted if REML); ``-2 * llf`` is lme4's REMLcrit.
    converged : bool
        Whether the final optimum passed the gradient and Hessian checks.
    singular : bool
        Boundary fit (a random-effect SD below 1e-4 relative to the residual SD,
        or a correlation of +/-1), as lme4's ``isSingular``.
    optimizer : str
        The optimiser and starting point that reached the best log-likelihood.
    attempts : pandas.DataFrame
        Every optimisation attempt: ``optimizer, start, llf, success, nfev``.
    diagnostics : dict
        Gradient, Hessian eigenvalue and Newton-gain checks at the optimum.
    result : statsmodels MixedLMResults
        The underlying statsmodels result (for power users); its ``bse`` for the
        fixed effects are replaced by the lme4-style conditional ones.  With
        the fast engine it is built on first access (a statsmodels model at the
        fitted parameters; slow for very many groups).
    engine : str
        Which likelihood was optimised: ``"fast"`` (lme4's profiled deviance
        vectorised over groups; two-level models) or ``"statsmodels"``
        (statsmodels' MixedLM likelihood; nested variance components).
    """

    formula: str
    groups: str
    reml: bool
    coefs: pd.DataFrame
    variance: pd.DataFrame
    llf: float
    converged: bool
    singular: bool
    optimizer: str
    attempts: pd.DataFrame
    diagnostics: dict
    result: Any = field(repr=False)
    nobs: int = 0
    n_groups: int = 0
    n_dropped: int = 0
    alpha: float = 0.05
    engine: str = "statsmodels"
    _fitted: Any = field(default=None, repr=False, compare=False)
    _design_info: Any = field(default=None, repr=False, compare=False)

    @property
    def fitted(self) -> pd.Series:
        """Fitted values including the predicted random effects (BLUPs)."""
        if self._fitted is not None:
            return pd.Series(np.asarray(self._fitted), name="fitted")
        return pd.Series(np.asarray(self.result.fittedvalues), name="fitted")

    @property
    def df_resid(self) -> int:
        """Residual degrees of freedom ``nobs - number of fixed effects``."""
        return int(self.nobs - len(self.coefs))

    def predict(self, newdata: pd.DataFrame | None = None) -> pd.Series:
        """Predictions.

        Parameters
        ----------
        newdata : DataFrame, optional
            Without it, the fitted values of the data used (fixed effects plus
            the predicted random effects, lme4's ``fitted``).  With it, the
            population-level prediction from the fixed effects only (lme4's
            ``predict(..., re.form = NA)``).

        Returns
        -------
        pandas.Series
        """
        if newdata is None:
            return self.fitted
        if self._design_info is not None and self._design_info.obj is not None:
            import patsy

            (X,) = patsy.build_design_matrices([self._design_info.obj], newdata)
            est = self.coefs["estimate"].to_numpy()
            return pd.Series(np.asarray(X) @ est, index=newdata.index, name="predicted")
        return pd.Series(
            np.asarray(self.result.predict(exog=newdata)), index=newdata.index, name="predicted"
        )

    def effect_size(self, term: str, df: float | None = None) -> dict[str, float]:
        """Effect sizes r and d for a fixed effect from its Wald statistic.

        ``r = t / sqrt(t^2 + df)`` and ``d = 2 t / sqrt(df)`` (Rosenthal, 1994;
        Rosnow & Rosenthal, 1996).  By default ``df`` is the residual degrees of
        freedom ``nobs - p`` (observations minus fixed effects), the convention
        of the psychotherapy meta-analyses (e.g. Eubanks et al., 2018).  For a
        predictor that varies only between clusters, a more conservative choice
        is the number of clusters minus the number of cluster-level fixed
        effects; pass it as ``df``.

        Parameters
        ----------
        term : str
            A fixed-effect name from ``coefs.term`` (``"Intercept"`` is accepted for
            ``"(Intercept)"``).
        df : float, optional
            Degrees of freedom to use.

        Returns
        -------
        dict
            ``term, estimate, t, df, r, d``.
        """
        key = _rename(term)
        row = self.coefs.loc[self.coefs["term"] == key]
        if row.empty:
            raise AllianceDataError(
                f"term {term!r} is not a fixed effect of this model; "
                f"choose one of {list(self.coefs['term'])}."
            )
        t = float(row["statistic"].iloc[0])
        out = {"term": key, "estimate": float(row["estimate"].iloc[0])}
        out.update(effect_size_from_t(t, self.df_resid if df is None else df))
        return out

    def summary(self) -> str:
        """A readable text summary (lme4-like layout)."""
        crit = "REML criterion" if self.reml else "-2 log-likelihood"
        lines = [
            f"Linear mixed model fit by {'REML' if self.reml else 'maximum likelihood'} "
            f"(alliancetrack.fit_mixed, engine: {self.engine})",
            f"Formula: {self.formula}   groups: {self.groups}",
            f"{crit}: {-2 * self.llf:.4f}   log-likelihood: {self.llf:.4f}",
            f"Observations: {self.nobs}   groups: {self.n_groups}"
            + (f"   rows dropped for missing values: {self.n_dropped}" if self.n_dropped else ""),
            f"Optimizer: {self.optimizer}   converged: {self.converged}   "
            f"singular: {self.singular}",
            "",
            "Random effects:",
        ]
        v = self.variance.copy()
        for _, r in v.iterrows():
            if pd.isna(r["term2"]):
                lines.append(
                    f"  {r['group']:<14} {str(r['term'] if pd.notna(r['term']) else ''):<14} "
                    f"var {r['variance']:<12.6g} sd {r['sd']:.6g}"
                )
            else:
                lines.append(
                    f"  {r['group']:<14} corr({r['term']}, {r['term2']}) = {r['corr']:.4f}"
                )
        lines += ["", f"Fixed effects (Wald z, {round(100 * (1 - self.alpha))}% CI):"]
        c = self.coefs.copy()
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            lines.append(c.to_string(index=False, float_format=lambda z: f"{z:.5g}"))
        if not self.converged:
            lines.append("WARNING: the optimum could not be verified (see .diagnostics).")
        if self.singular:
            lines.append("NOTE: singular (boundary) fit.")
        return "\n".join(lines)

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.summary()


def _variance_table(model: Any, res: Any, groups: str, vc_names: Sequence[str]) -> pd.DataFrame:
    k_re = model.k_re
    cov = np.asarray(res.cov_re) if k_re else np.zeros((0, 0))
    names: list[str] = []
    if k_re:
        ex = model.exog_re
        for j, n in enumerate(model.data.exog_re_names):
            col = ex[:, j]
            names.append("(Intercept)" if np.allclose(col, 1.0) else str(n))
    vcomp = [float(v) for v in np.atleast_1d(res.vcomp)[: len(vc_names)]]
    return _variance_rows(groups, names, cov, vc_names, vcomp, float(res.scale))


def _variance_rows(
    groups: str,
    names: Sequence[str],
    cov: np.ndarray,
    vc_names: Sequence[str],
    vcomp: Sequence[float],
    scale: float,
) -> pd.DataFrame:
    """lme4's VarCorr table from the random-effect covariance and residual variance."""
    rows: list[dict[str, Any]] = []
    k_re = len(names)
    for j in range(k_re):
        rows.append(
            {
                "group": groups,
                "term": names[j],
                "term2": None,
                "variance": cov[j, j],
                "sd": math.sqrt(max(cov[j, j], 0.0)),
                "corr": np.nan,
            }
        )
    for j in range(k_re):
        for i in range(j + 1, k_re):
            den = math.sqrt(max(cov[i, i], 0) * max(cov[j, j], 0))
            rows.append(
                {
                    "group": groups,
                    "term": names[j],
                    "term2": names[i],
                    "variance": cov[i, j],
                    "sd": np.nan,
                    "corr": cov[i, j] / den if den > 0 else np.nan,
                }
            )
    for j, n in enumerate(vc_names):
        v = float(vcomp[j])
        rows.append(
            {
                "group": f"{n}:{groups}" if groups else str(n),
                "term": "(Intercept)",
                "term2": None,
                "variance": v,
                "sd": math.sqrt(max(v, 0.0)),
                "corr": np.nan,
            }
        )
    rows.append(
        {
            "group": "Residual",
            "term": None,
            "term2": None,
            "variance": float(scale),
            "sd": math.sqrt(float(scale)),
            "corr": np.nan,
        }
    )
    out = pd.DataFrame(rows, columns=["group", "term", "term2", "variance", "sd", "corr"])
    out["term"] = out["term"].astype(object)
    out["term2"] = out["term2"].astype(object)
    return out


def _formula_columns(formula: str, extra: Sequence[str | None]) -> list[str]:
    import re

    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", formula))
    for e in extra:
        if e:
            names |= set(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", e))
    return sorted(names)


class _LazyResult:
    """A statsmodels result built on first attribute access (fast engine)."""

    def __init__(self, build: Any):
        self._build = build
        self._res: Any = None

    def _get(self) -> Any:
        if self._res is None:
            self._res = self._build()
        return self._res

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._get(), name)

    def __repr__(self) -> str:
        return "<statsmodels MixedLMResults, built on first access>"

    def __deepcopy__(self, memo: dict) -> _LazyResult:
        return self  # immutable from the outside; pandas deep-copies ``.attrs``

    def __reduce__(self) -> tuple:
        return (_identity, (self._get(),))  # pickle the built result


def _identity(x: Any) -> Any:
    return x


class _Opaque:
    """Holds an object that can be neither copied nor pickled (a patsy DesignInfo)."""

    def __init__(self, obj: Any):
        self.obj = obj

    def __deepcopy__(self, memo: dict) -> _Opaque:
        return self

    def __reduce__(self) -> tuple:
        return (_Opaque, (None,))


def _design(
    formula: str, re_formula: str | None, data: pd.DataFrame, df: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], list[str], Any]:
    """Fixed and random design matrices (patsy, as statsmodels builds them)."""
    import patsy

    try:
        yd, Xd = patsy.dmatrices(formula, data, return_type="matrix", NA_action="raise")
        if re_formula is None or re_formula.strip() in ("1", "~1", "~ 1"):
            Z = np.ones((len(data), 1))
            re_names = ["(Intercept)"]
        else:
            Zd = patsy.dmatrix(re_formula, data, return_type="matrix", NA_action="raise")
            Z = np.asarray(Zd, float)
            re_names = [
                "(Intercept)" if np.allclose(Z[:, j], 1.0) else str(n)
                for j, n in enumerate(Zd.design_info.column_names)
            ]
    except patsy.PatsyError as exc:
        raise AllianceDataError(
            f"could not build the model from formula {formula!r}: {exc}. Check that every "
            f"variable is a column of the data (columns: {list(df.columns)})."
        ) from exc
    if yd.shape[1] != 1:
        raise AllianceDataError(
            f"the outcome of {formula!r} must be one numeric column (got {yd.shape[1]} columns)."
        )
    if Z.shape[1] == 0:
        raise AllianceDataError(
            f"re_formula {re_formula!r} has no random effects; the fast engine needs at least "
            "a random intercept or slope."
        )
    X = np.asarray(Xd, float)
    return (
        X,
        Z,
        np.asarray(yd, float)[:, 0],
        list(Xd.design_info.column_names),
        re_names,
        Xd.design_info,
    )


def fit_mixed(
    formula: str,
    df: pd.DataFrame,
    groups: str = "therapist",
    re_formula: str | None = None,
    vc_formula: Mapping[str, str] | None = None,
    reml: bool = True,
    *,
    optimizers: Sequence[str] | None = None,
    start: Sequence[float] | None = None,
    maxiter: int = 1000,
    alpha: float = 0.05,
    engine: str = "auto",
) -> MixedResult:
    """Fit a linear mixed model by REML or ML, robustly, matching lme4.

    Parameters
    ----------
    formula : str
        Fixed-effects formula (patsy), e.g. ``"bdi_post ~ bdi_pre + n_repaired"``.
    df : pandas.DataFrame
        Data, one row per observation.  Rows with a missing value in a model
        variable are dropped (as lme4's ``na.omit``); the count is reported in
        ``n_dropped`` and the summary.
    groups : str
        Column defining the clusters of the random effects (``(... | groups)``).
    re_formula : str, optional
        Random-effects formula within ``groups``: ``None`` or ``"1"`` gives a
        random intercept ``(1 | groups)``; ``"~session"`` gives a random
        intercept and slope with their correlation, ``(session | groups)``;
        ``"0 + session"`` a slope only.  When ``vc_formula`` is given and
        ``re_formula`` is ``None`` the random intercept for ``groups`` is still
        included (pass ``"0"`` to drop it).
    vc_formula : dict, optional
        Nested variance components within ``groups``, e.g.
        ``{"patient": "0 + C(patient)"}`` with ``groups="therapist"`` gives lme4's
        ``(1 | therapist) + (1 | therapist:patient)`` (sessions in patients in
        therapists).
    reml : bool
        Restricted maximum likelihood (default, lme4's default) or ML.
    optimizers : sequence of str, optional
        Force these optimisers (any of ``"lbfgs"`` (unbounded L-BFGS),
        ``"lbfgsb"`` (L-BFGS-B, diagonal bounded at zero), ``"bfgs", "powell",
        "nelder-mead", "cg"``), each run from every start, best kept.  By
        default the adaptive strategy of the module docstring is used.
    start : sequence of float, optional
        An extra starting point (relative Cholesky factor of the random-effect
        covariance, row-wise lower triangle, then square roots of the variance
        components relative to the residual variance), tried first.
    maxiter : int
        Iteration limit per optimiser run.
    alpha : float
        1 - confidence level of the Wald intervals.
    engine : {"auto", "fast", "statsmodels"}
        Likelihood engine (see the module docstring).  ``"auto"`` uses the fast,
        vectorised lme4 formulation for two-level models (no ``vc_formula``)
        and statsmodels otherwise; ``"fast"`` raises for forms it does not
        cover.  The engine used is ``result.engine``.

    Returns
    -------
    MixedResult

    Warns
    -----
    SingularFitWarning
        Boundary (singular) fit, as lme4's "boundary (singular) fit".
    ConvergenceWarning
        The best optimum found fails the gradient / Hessian checks.

    Notes
    -----
    See the module docstring for the fitting strategy and the conventions
    relative to lme4 (Bates et al., 2015).  Checks: an optimum is accepted when
    the Hessian of the profiled deviance is positive definite on the
    parameters not at the boundary, a Newton step could raise the
    log-likelihood by less than 1e-5 and would move no parameter by more than
    1e-3 (relative to max(1, |value|); lme4's scaled-gradient check), and the
    projected gradient of parameters at the boundary is below
    1e-3 * sqrt(nobs).

    References
    ----------
    Bates, D., Maechler, M., Bolker, B., & Walker, S. (2015). Fitting linear
    mixed-effects models using lme4. Journal of Statistical Software, 67(1).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(1)
    >>> g = np.repeat(np.arange(20), 10)
    >>> x = rng.normal(size=200)
    >>> y = 1 + 0.5 * x + rng.normal(size=20)[g] + rng.normal(size=200)
    >>> d = pd.DataFrame({"y": y, "x": x, "therapist": g})
    >>> fit = fit_mixed("y ~ x", d, groups="therapist")
    >>> fit.engine
    'fast'
    >>> fit.coefs["term"].tolist()
    ['(Intercept)', 'x']
    >>> fit.converged, fit.singular
    (True, False)
    >>> list(fit.variance["group"])
    ['therapist', 'Residual']
    >>> 0.3 < fit.effect_size("x")["r"] < 0.6
    True
    """
    import statsmodels.formula.api as smf
    from patsy import PatsyError

    if not isinstance(df, pd.DataFrame):
        raise AllianceDataError(f"df must be a pandas DataFrame, got {type(df).__name__}.")
    if groups is None or groups not in df.columns:
        raise AllianceDataError(
            f"grouping column {groups!r} is not in the data (columns: {list(df.columns)}); "
            "pass groups=<cluster column>, or use an OLS model when there is no clustering."
        )
    if engine not in ("auto", "fast", "statsmodels"):
        raise AllianceDataError(
            f"unknown engine {engine!r}; choose 'auto', 'fast' or 'statsmodels'."
        )
    if optimizers is not None:
        allowed = {"lbfgs", "lbfgsb", "bfgs", "powell", "nelder-mead", "cg"}
        bad = [m for m in optimizers if m not in allowed]
        if bad:
            raise AllianceDataError(f"unknown optimizers {bad}; choose from {sorted(allowed)}.")
    if vc_formula is not None and re_formula is None:
        re_formula = "1"
    cols = [
        c
        for c in _formula_columns(formula, [re_formula, *(vc_formula or {}).values()])
        if c in df.columns
    ]
    used = list(dict.fromkeys([*cols, groups]))
    data = df[used].dropna()
    n_dropped = len(df) - len(data)
    if data[groups].nunique() < 2:
        raise AllianceDataError(
            f"grouping column {groups!r} has fewer than 2 groups after dropping missing "
            "values; a mixed model needs clusters (use OLS instead)."
        )
    data = data.reset_index(drop=True)
    use_fast = engine == "fast" or (engine == "auto" and not vc_formula)
    if use_fast and vc_formula:
        raise AllianceDataError(
            "engine='fast' covers two-level models (one grouping factor with a random "
            "intercept and/or slopes); nested variance components (vc_formula) need "
            "engine='statsmodels' or 'auto'."
        )

    def _sm_model() -> Any:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m = smf.mixedlm(
                    formula, data, groups=data[groups], re_formula=re_formula, vc_formula=vc_formula
                )
        except PatsyError as exc:
            raise AllianceDataError(
                f"could not build the model from formula {formula!r}: {exc}. Check that every "
                f"variable is a column of the data (columns: {list(df.columns)})."
            ) from exc
        m.reml = bool(reml)
        m.cov_pen = None
        m.fe_pen = None
        m._cov_sing = 0
        m._freepat = None
        return m

    fitted = design_info = None
    if use_fast:
        # lme4's profiled deviance from per-group sufficient statistics, vectorised over
        # groups with an analytic gradient (fast, and stable at the boundary where
        # statsmodels' likelihood, which inverts the random-effects covariance, is not)
        X, Z, y, fe_names, re_names, design_info = _design(formula, re_formula, data, df)
        codes, uniques = pd.factorize(data[groups], sort=False)
        prof: _Profile = _BatchProfile(X, Z, y, codes, len(uniques), bool(reml))
        n_groups = len(uniques)
    else:
        model = _sm_model()
        prof = _Profile(model)
        fe_names = list(model.exog_names[: model.k_fe])
        n_groups = int(model.n_groups)
    winner, attempts, diag = _optimise(prof, optimizers, start, maxiter)
    if not np.isfinite(winner.llf):
        raise AllianceDataError(
            f"the mixed model {formula!r} could not be evaluated at any starting value; "
            "check for collinear predictors or groups with a single observation."
        )
    converged = _diagnostics_ok(diag)
    theta = winner.x
    if use_fast:
        fe, scale, cov_fe = prof.fixed(theta)
        L = prof._lower(theta)
        variance = _variance_rows(groups, re_names, scale * (L @ L.T), [], [], scale)
        blup = prof.random_effects(theta, fe)
        fitted = X @ fe + np.einsum("nq,nq->n", Z, blup[codes])
        x_final = theta.copy()

        def _build() -> Any:
            return _build_sm_result(_sm_model(), x_final, converged)[0]

        smres: Any = _LazyResult(_build)
    else:
        smres, cov_fe = _build_sm_result(model, theta, converged)
        vc_names = list(model.exog_vc.names) if model.k_vc else []
        variance = _variance_table(model, smres, groups, vc_names)
        fe = np.asarray(smres.fe_params)

    # singular: theta diagonal (relative SD) at zero, or |corr| = 1
    singular = bool(np.any(theta[prof.diag] < _SINGULAR_TOL))
    corr = variance["corr"].dropna()
    if (np.abs(corr) > 1 - 1e-6).any():
        singular = True

    se = np.sqrt(np.clip(np.diag(cov_fe), 0, None))
    coefs = wald_table(fe_names, fe, se, alpha)
    att = pd.DataFrame(
        [
            {
                "optimizer": a.optimizer,
                "start": a.start,
                "llf": a.llf,
                "success": a.success,
                "nfev": a.nfev,
            }
            for a in attempts
        ]
    )
    llf = float(prof.llf(winner.x))
    out = MixedResult(
        formula=formula,
        groups=groups,
        reml=bool(reml),
        coefs=coefs,
        variance=variance,
        llf=llf,
        converged=converged,
        singular=singular,
        optimizer=f"{winner.optimizer} (start: {winner.start})",
        attempts=att,
        diagnostics=diag,
        result=smres,
        nobs=int(prof.nobs),
        n_groups=int(n_groups),
        n_dropped=int(n_dropped),
        alpha=alpha,
        engine="fast" if use_fast else "statsmodels",
        _fitted=fitted,
        _design_info=_Opaque(design_info) if design_info is not None else None,
    )
    if singular:
        zero = variance.loc[(variance["sd"] < 1e-4 * variance["sd"].iloc[-1]), ["group", "term"]]
        what = ", ".join(f"{g}/{t}" for g, t in zero.itertuples(index=False)) or "a correlation"
        warnings.warn(
            f"boundary (singular) fit of {formula!r}: {what} estimated at the boundary "
            "(SD of zero or correlation of +/-1). Consider simplifying the random effects.",
            SingularFitWarning,
            stacklevel=2,
        )
    if not converged:
        warnings.warn(
            f"fit_mixed could not verify the optimum of {formula!r} (best log-likelihood "
            f"{llf:.4f} from {out.optimizer}; max |gradient| = {diag['max_abs_gradient']:.3g}, "
            f"Hessian positive definite: {diag['hessian_pd']}). Inspect .attempts and "
            ".diagnostics; rescaling predictors often helps.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return out
