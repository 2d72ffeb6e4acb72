"""Optimisation of the GLMM deviance over (theta, beta) as glmer, and its checks.

glmer (``nAGQ >= 1``) minimises the Laplace (or adaptive Gauss-Hermite)
deviance jointly over the covariance parameters ``theta`` and the fixed
effects ``beta``, the random effects being profiled out by PIRLS at every
evaluation.  Here: L-BFGS-B with central-difference gradients (``theta``
bounded below as in lme4) from the GLM estimate and lme4's ``theta0``, then
Newton steps with a finite-difference Hessian until the deviance a Newton step
could still gain is negligible; if that fails, Powell from the best point and
another polish.  As in the linear engine (``lmm.optimizer``), when a variance
parameter ends at zero L-BFGS-B is restarted off the boundary and from a
second, small-variance start, and the best deviance is kept: a zero Cholesky
diagonal is a stationary point in its own direction (the deviance is even in
it), so a gradient method that reaches it cannot tell a boundary optimum from a
saddle.  Every attempt is reported.  The fit is reported converged when the final Newton gain is
below ``1e-6`` and the Hessian of the free parameters is positive definite.

The fixed-effect covariance is lme4's default for GLMMs
(``vcov(use.hessian = TRUE)``): twice the ``beta`` block of the inverse
finite-difference Hessian of the deviance over ``(theta, beta)``.  For the
negative binomial the dispersion ``log(theta_nb)`` is a further parameter of the
optimisation (the joint maximum that ``glmer.nb`` reaches by alternating), and
the covariance is computed at the final ``theta_nb`` as ``glmer.nb`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize

from alliancetrack.models.glmm.family import Family
from alliancetrack.models.glmm.pirls import BlockSystem, agq_deviance, laplace_deviance, pirls
from alliancetrack.models.lmm.optimizer import off_boundary_start

__all__ = ["EngineFit", "GLMMObjective", "fit_engine", "glm_irls"]

_FD_STEP = 1e-3  # lme4 uses 1e-4; 1e-3 is less sensitive to PIRLS rounding, O(h^2) error ~1e-6
_GAIN_TOL = 1e-6
_SINGULAR_TOL = 1e-4


def glm_irls(family: Family, y, X, offset, wt, maxit: int = 100) -> np.ndarray:
    """Plain GLM by IRLS (the start, and the zero-variance limit of the GLMM)."""
    mu = np.where(family.name == "binomial", (wt * y + 0.5) / (wt + 1), y + 0.1)
    eta = np.log(mu / (1 - mu)) if family.name == "binomial" else np.log(mu)
    beta = np.zeros(X.shape[1])
    for _ in range(maxit):
        mu = family.linkinv(eta)
        me = family.mu_eta(mu)
        w = wt * me * me / family.variance(mu)
        z = eta - offset + (y - mu) / me
        XtW = X.T * w
        new = np.linalg.solve(XtW @ X, XtW @ z)
        if np.max(np.abs(new - beta)) < 1e-10 * (1 + np.max(np.abs(beta))):
            beta = new
            break
        beta = new
        eta = X @ beta + offset
    return beta


class GLMMObjective:
    """Deviance of a GLMM as a function of ``x = (theta, beta[, log theta_nb])``."""

    def __init__(self, system, family: Family, y, X, offset, wt, nagq: int, ntheta: int):
        self.system, self.family = system, family
        self.y, self.X, self.offset, self.wt = y, X, offset, wt
        self.nagq, self.ntheta, self.p = nagq, ntheta, X.shape[1]
        self.nb = family.name == "negbin"
        self.u_base = np.zeros(system.q)
        self.best = np.inf
        self.n_eval = 0
        self.pirls_failures = 0
        self._const_for = None
        self._const = None

    def split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, Family]:
        theta = x[: self.ntheta]
        beta = x[self.ntheta: self.ntheta + self.p]
        fam = self.family.with_theta(float(np.exp(x[-1]))) if self.nb else self.family
        return theta, beta, fam

    def evaluate(self, x: np.ndarray) -> tuple[float, Any]:
        theta, beta, fam = self.split(np.asarray(x, float))
        self.system.set_theta(theta)
        if self._const_for != fam.theta:
            self._const = fam.constant(self.y, self.wt)
            self._const_for = fam.theta
        st = pirls(self.system, fam, self.y, self.wt, self.X @ beta + self.offset, self.u_base,
                   const=self._const)
        self.n_eval += 1
        if not st.converged:
            self.pirls_failures += 1
        if self.nagq > 1:
            dev = agq_deviance(st, self.system, fam, self.y, self.wt, self.nagq, self._const)
        else:
            dev = laplace_deviance(st, self.system)
        self._last = (np.array(x, float), st)
        return (dev if np.isfinite(dev) else np.inf), st

    def __call__(self, x: np.ndarray) -> float:
        dev, st = self.evaluate(x)
        if dev < self.best:
            self.best = dev
            self.u_base = st.u
        return dev

    @property
    def analytic_beta(self) -> bool:
        """Whether the beta gradient is analytic (Laplace, canonical link, one term)."""
        return (self.nagq == 1 and self.family.name in ("binomial", "poisson")
                and isinstance(self.system, BlockSystem))

    def gradient(self, x: np.ndarray, free: np.ndarray, h: float = 1e-5) -> np.ndarray:
        """Gradient of the deviance: analytic in ``beta`` where possible, else central differences."""
        x = np.asarray(x, float)
        g = np.zeros(len(x))
        fd = np.flatnonzero(free)
        if self.analytic_beta:
            self(x)
            g[self.ntheta: self.ntheta + self.p] = self._beta_gradient(self._last[1])
            fd = fd[(fd < self.ntheta) | (fd >= self.ntheta + self.p)]
        for i in fd:
            e = np.zeros(len(x))
            e[i] = h
            g[i] = (self(x + e) - self(x - e)) / (2 * h)
        return g

    def _beta_gradient(self, st: Any) -> np.ndarray:
        """d(Laplace deviance)/d beta for a canonical link (random effects profiled out).

        ``-2 X'r + X's - X'W U A^-1 U's`` with ``r = wt (y - mu)``, ``W = wt b''(eta)``,
        ``s_i = wt b'''(eta_i) h_i`` and ``h_i = [U A^-1 U']_ii``: the envelope
        derivative of the penalised deviance plus the derivative of ``log det A``
        through ``eta``, whose change with ``beta`` includes that of the
        conditional modes (``du/dbeta = -A^-1 U'WX``).
        """
        sysm, mu, wt = self.system, st.mu, self.wt
        if self.family.name == "poisson":
            W, W3 = wt * mu, wt * mu
        else:
            v = mu * (1 - mu)
            W, W3 = wt * v, wt * v * (1 - 2 * mu)
        Ainv = np.linalg.inv(sysm.A)
        lev = np.einsum("ij,ijk,ik->i", sysm.Urows, Ainv[sysm.codes], sysm.Urows)
        s = W3 * lev
        v = sysm.solve(sysm.Ut_mul(s))
        return self.X.T @ (-2 * wt * (self.y - mu) + s - W * sysm.U_mul(v))

    def hessian(self, x: np.ndarray, idx: np.ndarray, h: float = _FD_STEP) -> np.ndarray:
        """Central-difference Hessian of the deviance over the coordinates ``idx``."""
        m = len(idx)
        H = np.zeros((m, m))
        f0 = self(x)

        def f(steps: dict[int, float]) -> float:
            xx = x.copy()
            for i, s in steps.items():
                xx[i] += s
            return self(xx)

        for a in range(m):
            i = idx[a]
            H[a, a] = (f({i: h}) - 2 * f0 + f({i: -h})) / h**2
            for b in range(a):
                j = idx[b]
                H[a, b] = H[b, a] = (
                    f({i: h, j: h}) - f({i: h, j: -h}) - f({i: -h, j: h}) + f({i: -h, j: -h})
                ) / (4 * h * h)
        return H


@dataclass
class EngineFit:
    """Optimum of :func:`fit_engine`."""

    x: np.ndarray
    deviance: float
    converged: bool
    singular: bool
    vcov: np.ndarray
    u: np.ndarray
    mu: np.ndarray
    message: str
    attempts: list = field(default_factory=list)


def _free(x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    return ~((np.isfinite(lower) & (x <= lower + 1e-8)) | (np.isfinite(upper) & (x >= upper - 1e-8)))


def _newton_polish(obj: GLMMObjective, x: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                   steps: int = 8):
    """Newton steps on the free coordinates; returns (x, gain, hessian_pd)."""
    gain, pd = np.inf, False
    for _ in range(steps):
        free = _free(x, lower, upper)
        idx = np.flatnonzero(free)
        g = obj.gradient(x, free)[idx]
        H = obj.hessian(x, idx)
        try:
            c = np.linalg.cholesky(H)
            pd = True
        except np.linalg.LinAlgError:
            pd = False
            return x, gain, pd
        step = np.linalg.solve(c.T, np.linalg.solve(c, g))
        gain = 0.5 * float(g @ step)
        if gain < _GAIN_TOL:
            return x, gain, pd
        f0 = obj(x)
        t = 1.0
        while t > 1e-4:
            xn = x.copy()
            xn[idx] -= t * step
            xn = np.clip(xn, lower, upper)
            if obj(xn) < f0:
                x = xn
                break
            t *= 0.5
        else:
            return x, gain, pd
    return x, gain, pd


def fit_engine(
    obj: GLMMObjective, x0: np.ndarray, lower: np.ndarray, upper: np.ndarray | None = None,
    maxiter: int = 2000,
) -> EngineFit:
    """Minimise the deviance from ``x0`` (see module docstring)."""
    upper = np.full(len(x0), np.inf) if upper is None else upper
    bounds = [(lo if np.isfinite(lo) else None, hi if np.isfinite(hi) else None)
              for lo, hi in zip(lower, upper, strict=True)]
    attempts: list[dict[str, Any]] = []
    nt = obj.ntheta
    diag_idx = np.flatnonzero(np.isfinite(lower[:nt]) & (lower[:nt] == 0))

    def record(name: str, start: str, x: np.ndarray, n0: int) -> None:
        dev = float(obj(x))
        attempts.append({"optimizer": name, "start": start, "llf": -0.5 * dev, "deviance": dev,
                         "nfev": obj.n_eval - n0})

    def run_lbfgs(start: np.ndarray) -> np.ndarray:
        res = optimize.minimize(
            obj, start, jac=lambda z: obj.gradient(z, np.ones(len(z), bool)),
            method="L-BFGS-B", bounds=bounds,
            options={"maxiter": maxiter, "ftol": 1e-11, "gtol": 1e-5},
        )
        return np.clip(res.x, lower, upper)

    def attempt(start: np.ndarray, start_name: str) -> tuple[float, np.ndarray]:
        n0 = obj.n_eval
        x = run_lbfgs(np.clip(start, lower, upper))
        record("L-BFGS-B", start_name, x, n0)
        return float(obj(x)), x

    runs = [attempt(x0, "lme4 theta0")]
    x_off = off_boundary_start(runs[0][1], diag_idx)
    if x_off is not None:
        # a variance parameter ended at zero, a stationary point in its own direction
        # (the deviance is even in a Cholesky diagonal): restart off the boundary and
        # from a second (small-variance) start, and keep the best deviance, as the
        # linear engine does
        runs.append(attempt(x_off, "off-boundary restart"))
        x_small = np.array(x0, float)
        x_small[:nt] = 0.1 * x_small[:nt]
        runs.append(attempt(x_small, "small variance"))
    best = min(range(len(runs)), key=lambda i: runs[i][0])
    n0 = obj.n_eval
    x, gain, pd = _newton_polish(obj, runs[best][1], lower, upper)
    record("Newton polish", f"best L-BFGS-B ({attempts[best]['start']})", x, n0)
    if not (gain < _GAIN_TOL and pd):
        n0 = obj.n_eval
        res = optimize.minimize(obj, x, method="Powell", bounds=bounds,
                                options={"maxiter": 20 * maxiter, "xtol": 1e-8, "ftol": 1e-12})
        x2 = run_lbfgs(np.clip(res.x, lower, upper))
        if obj(x2) < obj(x):
            x = x2
        x, gain, pd = _newton_polish(obj, x, lower, upper)
        record("Powell + L-BFGS-B + Newton", "best so far", x, n0)
    converged = bool(gain < _GAIN_TOL and pd)
    dev, st = obj.evaluate(x)
    theta = x[: obj.ntheta]
    diag = np.isfinite(lower[: obj.ntheta]) & (lower[: obj.ntheta] == 0)
    singular = bool(np.any(theta[diag] < _SINGULAR_TOL))
    # lme4 vcov: 2 * inverse Hessian over (theta, beta), beta block; theta on the
    # boundary is held fixed

    p_idx = np.arange(obj.ntheta, obj.ntheta + obj.p)
    th_idx = np.flatnonzero(~diag | (theta >= _SINGULAR_TOL))
    idx = np.concatenate([th_idx, p_idx])
    H = obj.hessian(x, idx)
    try:
        V = 2.0 * np.linalg.inv(H)[len(th_idx):, len(th_idx):]
        if np.any(np.linalg.eigvalsh(V) <= 0):
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        V = np.full((obj.p, obj.p), np.nan)
        converged = False
    msg = "converged" if converged else (
        f"Newton gain {gain:.2g}, Hessian {'positive definite' if pd else 'not positive definite'}"
    )

    return EngineFit(x=x, deviance=dev, converged=converged, singular=singular, vcov=V,
                     u=st.u, mu=st.mu, message=msg, attempts=attempts)
