"""Robust optimisation of a profiled mixed-model likelihood, and its checks.

Works on any *profile* (an object with ``llf``, ``score``, ``canonical``,
``k``, ``diag``, ``bounds``, ``nobs``; see :class:`ProfileBase`): the fast
two-level likelihood, the blocked lme4 likelihood for several terms, or
statsmodels' MixedLM likelihood.

Strategy (Bates, Maechler, Bolker & Walker, 2015, for the relative-Cholesky
parameterisation):

1. L-BFGS from the lme4 default start (identity; or the user's ``start``),
   unbounded, because the covariance depends on the Cholesky factor only
   through ``L L'`` (signs are normalised afterwards and a diagonal element
   that ends below 1e-3 is set to exactly zero if that costs no likelihood).
   If the optimum has a parameter at the boundary, bounded L-BFGS-B is
   restarted off the boundary and from a second start: a zero diagonal of the
   Cholesky factor is a stationary point in its own direction (the deviance
   depends on its square), so a gradient method could otherwise stop at a saddle.
2. The optimum is checked: projected gradient, the log-likelihood gain a
   Newton step would still give, and whether the Hessian of the profiled
   deviance (central differences of the gradient) is positive definite on the
   parameters not at the boundary.  If all checks pass, this is the fit.
3. Otherwise a second L-BFGS-B run starts from a small random-effects
   variance.  If the runs disagree or a check still fails, more optimisers
   (BFGS, Powell, Nelder-Mead, CG) are run from the first start and Powell
   from the best point so far; the best log-likelihood is kept and polished
   with L-BFGS-B.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize

from alliancetrack.errors import AllianceDataError

__all__ = ["ConvergenceWarning", "ProfileBase", "SingularFitWarning", "off_boundary_start"]


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


class ProfileBase:
    """Interface of a profiled (restricted) log-likelihood for the optimiser.

    Subclasses set ``k`` (number of parameters), ``diag`` (indices bounded
    below by 0), ``bounds``, ``nobs`` and ``nfev`` and implement ``llf``;
    ``score`` defaults to central differences of ``llf``.
    """

    k: int = 0
    diag: np.ndarray
    bounds: list
    nobs: float = 1.0
    nfev: int = 0

    def llf(self, x: np.ndarray) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def score(self, x: np.ndarray) -> np.ndarray:
        """Gradient of ``llf`` by central differences (step 1e-6 relative)."""
        x = np.asarray(x, float)
        g = np.empty(self.k)
        for j in range(self.k):
            h = 1e-6 * max(1.0, abs(x[j]))
            xp, xm = x.copy(), x.copy()
            xp[j] += h
            xm[j] -= h
            g[j] = (self.llf(xp) - self.llf(xm)) / (2 * h)
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

    def canonical(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def starts(self) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError


def canonical_tril(x: np.ndarray, k_re: int, k_vc: int = 0) -> np.ndarray:
    """Flip column signs of a row-wise packed lower triangle so its diagonal is >= 0."""
    x = np.array(x, float)
    if k_re:
        k_re2 = k_re * (k_re + 1) // 2
        L = np.zeros((k_re, k_re))
        L[np.tril_indices(k_re)] = x[:k_re2]
        sign = np.where(np.diag(L) < 0, -1.0, 1.0)
        L = L * sign[None, :]
        x[:k_re2] = L[np.tril_indices(k_re)]
    if k_vc:
        x[-k_vc:] = np.abs(x[-k_vc:])
    return x


@dataclass
class _Attempt:
    optimizer: str
    start: str
    x: np.ndarray
    llf: float
    success: bool
    nfev: int
    message: str = ""


def off_boundary_start(
    x: np.ndarray, diag: np.ndarray, value: float = 0.1, tol: float = _SINGULAR_TOL
) -> np.ndarray | None:
    """Restart point off the boundary, or ``None`` if no variance parameter is at zero.

    ``diag`` indexes the parameters bounded below by zero (diagonals of the
    relative Cholesky factor).  The deviance depends on such a parameter through
    its square, so zero is a stationary point in its own direction and a
    gradient method that reaches it cannot leave it: those at the boundary
    (below ``tol``) are set to ``value`` for a restart that tells a real
    boundary optimum from a saddle.  Shared by the linear and generalised
    engines.
    """
    diag = np.asarray(diag, int)
    bound = diag[np.asarray(x)[diag] < tol]
    if bound.size == 0:
        return None
    x1 = np.array(x, float)
    x1[bound] = value
    return x1


def _starts(prof: ProfileBase) -> dict[str, np.ndarray]:
    """Starting values: lme4's identity start and a small-variance start."""
    return prof.starts()

def _snap(prof: ProfileBase, x: np.ndarray) -> np.ndarray:
    """Set near-zero diagonal parameters to exactly zero if that loses nothing."""
    near = prof.diag[np.abs(x[prof.diag]) < 1e-3]
    if near.size == 0:
        return x
    base = prof.llf(x)
    xs = x.copy()
    xs[near] = 0.0
    return xs if prof.llf(xs) >= base - 1e-9 else x


def _run(prof: ProfileBase, method: str, x0: np.ndarray, start: str, maxiter: int) -> _Attempt:
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


def _diagnose(prof: ProfileBase, x: np.ndarray) -> dict[str, Any]:
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
    prof: ProfileBase,
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
        x1 = off_boundary_start(a.x, prof.diag)
        if x1 is not None:
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
