"""Linear mixed-effects models that match lme4, fitted robustly with statsmodels.

:func:`fit_mixed` fits a linear mixed model (random intercepts, correlated random
slopes and nested variance components) by (restricted) maximum likelihood.  The
likelihood, design matrices and standard errors come from
:class:`statsmodels.regression.mixed_linear_model.MixedLM`; the optimisation is
done here, because statsmodels' default optimiser can stop at a wrong optimum
(for example on random-slope alliance trajectories: log-likelihood -543.9
instead of -398.5 on the reference cohort shipped with the project).

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
   that ends below 1e-3 is set to exactly zero if that costs no likelihood).  With one grouping factor and no variance components the
   profiled deviance is evaluated as in lme4 from per-group sufficient
   statistics (fast, and numerically stable at the boundary, where
   statsmodels' likelihood, which inverts the random-effects covariance,
   breaks down), with a central-difference gradient; otherwise statsmodels'
   likelihood and analytic gradient are used.  If the optimum has a
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
* ``llf`` is statsmodels' (restricted) log-likelihood, which uses the same
  constants as lme4, so ``-2 * llf`` equals lme4's ``REMLcrit`` for REML fits
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

from .errors import AllianceDataError

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
            L[np.tril_indices(self.k_re)] = x[: self.model.k_re2]
            sign = np.where(np.diag(L) < 0, -1.0, 1.0)
            L = L * sign[None, :]
            x[: self.model.k_re2] = L[np.tril_indices(self.k_re)]
        if self.k_vc:
            x[self.model.k_re2 :] = np.abs(x[self.model.k_re2 :])
        return x


class _FastProfile(_Profile):
    """The same profiled likelihood from per-group sufficient statistics.

    For models with one grouping factor and no variance components, lme4's
    profiled deviance (Bates et al., 2015, eqs. 34 and 41) only needs the
    per-group cross-products ``Z'Z, Z'X, Z'y, X'X, X'y, y'y``; evaluating it
    is then a batch of q x q solves instead of a Python loop over groups.  It
    is used to *find* the optimum quickly; the checks and the final result
    always use statsmodels' own likelihood and analytic gradient.
    """

    def __init__(self, model: Any):
        super().__init__(model)
        X, Z, y = model.exog_li, model.exog_re_li, model.endog_li
        self.ZtZ = np.stack([z.T @ z for z in Z])
        self.ZtX = np.stack([z.T @ x for z, x in zip(Z, X, strict=True)])
        self.Zty = np.stack([z.T @ v for z, v in zip(Z, y, strict=True)])
        self.XtX = sum(x.T @ x for x in X)
        self.Xty = sum(x.T @ v for x, v in zip(X, y, strict=True))
        self.yty = float(sum(v @ v for v in y))
        self.n = float(model.n_totobs)
        self.p = model.k_fe
        self.reml = bool(model.reml)

    def llf(self, x: np.ndarray) -> float:
        self.nfev += 1
        q = self.k_re
        L = np.zeros((q, q))
        L[np.tril_indices(q)] = x
        with np.errstate(all="ignore"):
            LtZtZL = np.einsum("ji,gjk,kl->gil", L, self.ZtZ, L)
            M = LtZtZL + np.eye(q)
            sign, logdet_m = np.linalg.slogdet(M)
            if np.any(sign <= 0):
                return -np.inf
            A = np.einsum("ji,gjp->gip", L, self.ZtX)  # L'Z'X, (g, q, p)
            b = np.einsum("ji,gj->gi", L, self.Zty)  # L'Z'y, (g, q)
            rhs = np.concatenate([A, b[:, :, None]], axis=2)
            sol = np.linalg.solve(M, rhs)
            corr = np.einsum("gqa,gqb->ab", rhs, sol)
            p = self.p
            xvx = self.XtX - corr[:p, :p]
            xvy = self.Xty - corr[:p, p]
            yvy = self.yty - corr[p, p]
            try:
                beta = np.linalg.solve(xvx, xvy)
            except np.linalg.LinAlgError:
                return -np.inf
            r2 = yvy - xvy @ beta
            if not r2 > 0:
                return -np.inf
            ld = float(np.sum(logdet_m))
            if self.reml:
                dof = self.n - p
                dev = ld + np.linalg.slogdet(xvx)[1] + dof * (1 + np.log(2 * np.pi * r2 / dof))
            else:
                dev = ld + self.n * (1 + np.log(2 * np.pi * r2 / self.n))
        val = -0.5 * float(dev)
        return val if np.isfinite(val) else -np.inf

    def fixed(self, x: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """GLS fixed effects, residual variance and their covariance at ``x``."""
        q, p = self.k_re, self.p
        L = np.zeros((q, q))
        L[np.tril_indices(q)] = x
        M = np.einsum("ji,gjk,kl->gil", L, self.ZtZ, L) + np.eye(q)
        A = np.einsum("ji,gjp->gip", L, self.ZtX)
        b = np.einsum("ji,gj->gi", L, self.Zty)
        rhs = np.concatenate([A, b[:, :, None]], axis=2)
        corr = np.einsum("gqa,gqb->ab", rhs, np.linalg.solve(M, rhs))
        xvx = self.XtX - corr[:p, :p]
        xvy = self.Xty - corr[:p, p]
        beta = np.linalg.solve(xvx, xvy)
        r2 = self.yty - corr[p, p] - xvy @ beta
        scale = float(r2 / (self.n - p if self.reml else self.n))
        return beta, scale, scale * np.linalg.inv(xvx)

    def score(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, float)
        g = np.empty(self.k)
        for j in range(self.k):
            h = 1e-6 * max(1.0, abs(x[j]))
            xp, xm = x.copy(), x.copy()
            xp[j] += h
            xm[j] -= h
            g[j] = (self.llf(xp) - self.llf(xm)) / (2 * h)
        return g


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
        fixed effects are replaced by the lme4-style conditional ones.
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

    @property
    def fitted(self) -> pd.Series:
        """Fitted values including the predicted random effects (BLUPs)."""
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
            "(alliancetrack.fit_mixed, statsmodels MixedLM)",
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
    rows: list[dict[str, Any]] = []
    k_re = model.k_re
    cov = np.asarray(res.cov_re) if k_re else np.zeros((0, 0))
    names: list[str] = []
    if k_re:
        ex = model.exog_re
        for j, n in enumerate(model.data.exog_re_names):
            col = ex[:, j]
            names.append("(Intercept)" if np.allclose(col, 1.0) else str(n))
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
        v = float(res.vcomp[j])
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
            "variance": float(res.scale),
            "sd": math.sqrt(float(res.scale)),
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
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = smf.mixedlm(
                formula, data, groups=data[groups], re_formula=re_formula, vc_formula=vc_formula
            )
    except PatsyError as exc:
        raise AllianceDataError(
            f"could not build the model from formula {formula!r}: {exc}. Check that every "
            f"variable is a column of the data (columns: {list(df.columns)})."
        ) from exc
    model.reml = bool(reml)
    model.cov_pen = None
    model.fe_pen = None
    model._cov_sing = 0
    model._freepat = None

    # one grouping factor without variance components: lme4's formulation from
    # sufficient statistics (fast, and stable at the boundary where statsmodels'
    # likelihood, which inverts the random-effects covariance, is not)
    fast = model.k_vc == 0 and model.k_re > 0
    prof = _FastProfile(model) if fast else _Profile(model)
    winner, attempts, diag = _optimise(prof, optimizers, start, maxiter)
    if not np.isfinite(winner.llf):
        raise AllianceDataError(
            f"the mixed model {formula!r} could not be evaluated at any starting value; "
            "check for collinear predictors or groups with a single observation."
        )
    converged = _diagnostics_ok(diag)
    smres, cov_fe = _build_sm_result(model, winner.x, converged)
    vc_names = list(model.exog_vc.names) if model.k_vc else []
    variance = _variance_table(model, smres, groups, vc_names)

    # singular: theta diagonal (relative SD) at zero, or |corr| = 1
    theta = winner.x
    singular = bool(np.any(theta[prof.diag] < _SINGULAR_TOL))
    corr = variance["corr"].dropna()
    if (np.abs(corr) > 1 - 1e-6).any():
        singular = True

    fe = np.asarray(smres.fe_params)
    if fast:  # lme4's formulas, exact also at the boundary
        fe, _, cov_fe = prof.fixed(winner.x)
    se = np.sqrt(np.clip(np.diag(cov_fe), 0, None))
    z = fe / se
    q = stats.norm.ppf(1 - alpha / 2)
    coefs = pd.DataFrame(
        {
            "term": [_rename(n) for n in model.exog_names[: model.k_fe]],
            "estimate": fe,
            "se": se,
            "statistic": z,
            "p_value": 2 * stats.norm.sf(np.abs(z)),
            "ci_low": fe - q * se,
            "ci_high": fe + q * se,
        }
    )
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
        nobs=int(model.n_totobs),
        n_groups=int(model.n_groups),
        n_dropped=int(n_dropped),
        alpha=alpha,
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
