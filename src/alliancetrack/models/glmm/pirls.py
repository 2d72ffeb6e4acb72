"""Penalised iteratively reweighted least squares and the Laplace / AGQ deviance.

For fixed covariance parameters ``theta`` and fixed effects ``beta`` the
conditional modes of the spherical random effects ``u`` (``b = Lambda u``)
minimise the penalised deviance ``-2 log p(y | u) + ||u||^2``; PIRLS finds them
by Fisher scoring with step halving (Bates et al., 2015, section 5 of the lme4
GLMM vignette).  With ``U = Z Lambda``, ``W`` the IRLS weights and
``A = U'WU + I = L L'``, the Laplace deviance is
``-2 log p(y | u*) + ||u*||^2 + log det A`` (glmer's ``nAGQ = 1``), and for a
single scalar random effect the adaptive Gauss-Hermite deviance replaces each
group's Laplace term by a quadrature around its mode (Pinheiro & Bates, 1995).

Two linear-algebra back ends keep everything vectorised (no loop over groups):

* :class:`BlockSystem` for one random-effect term (``A`` block diagonal, one
  ``k x k`` block per level): sums by ``np.bincount`` over the level codes and a
  batched Cholesky of all blocks at once;
* :class:`SparseSystem` for several terms (nested or crossed): the sparse
  ``q x q`` matrix ``A``, factorised by sparse LU (SuperLU, no row pivoting).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.special import logsumexp

from alliancetrack.models.glmm.family import Family

__all__ = ["BlockSystem", "PirlsState", "SparseSystem", "make_system", "pirls"]


class BlockSystem:
    """One random-effect term: ``U`` has one ``k``-block of non-zeros per row."""

    def __init__(self, term: Any):
        self.term = term
        self.codes = np.asarray(term.codes, dtype=np.intp)
        self.M = np.asarray(term.model_matrix, dtype=float)
        self.G = int(term.n_levels)
        self.k = int(term.n_coef)
        self.q = self.G * self.k
        self.scalar = self.k == 1

    def set_theta(self, theta: np.ndarray) -> None:
        T = self.term.lower_factor(theta)
        self.Urows = self.M @ T  # n x k: row i of U restricted to its block

    def U_mul(self, u: np.ndarray) -> np.ndarray:
        ub = u.reshape(self.G, self.k)[self.codes]
        return np.einsum("ij,ij->i", self.Urows, ub)

    def Ut_mul(self, v: np.ndarray) -> np.ndarray:
        out = np.empty((self.G, self.k))
        for j in range(self.k):  # k is the number of coefficients per level, not groups
            out[:, j] = np.bincount(self.codes, v * self.Urows[:, j], minlength=self.G)
        return out.ravel()

    def factor(self, w: np.ndarray) -> None:
        k, G = self.k, self.G
        A = np.zeros((G, k, k))
        for r in range(k):
            for s in range(r + 1):
                a = np.bincount(self.codes, w * self.Urows[:, r] * self.Urows[:, s], minlength=G)
                A[:, r, s] = a
                A[:, s, r] = a
        A[:, np.arange(k), np.arange(k)] += 1.0
        self.A = A
        self.L = np.linalg.cholesky(A)

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        return np.linalg.solve(self.A, rhs.reshape(self.G, self.k, 1)).ravel()

    def logdet(self) -> float:
        return 2.0 * float(np.log(np.diagonal(self.L, axis1=1, axis2=2)).sum())


class SparseSystem:
    """Several random-effect terms: sparse ``U = Z Lambda`` and ``A = U'WU + I``."""

    scalar = False

    def __init__(self, re: Any):
        self.re = re
        self.Z = sp.csc_matrix(re.Z)
        self.q = int(self.Z.shape[1])

    def set_theta(self, theta: np.ndarray) -> None:
        self.U = sp.csc_matrix(self.Z @ self.re.lambda_matrix(theta))
        self.Ut = sp.csr_matrix(self.U.T)

    def U_mul(self, u: np.ndarray) -> np.ndarray:
        return self.U @ u

    def Ut_mul(self, v: np.ndarray) -> np.ndarray:
        return self.Ut @ v

    def factor(self, w: np.ndarray) -> None:
        A = (self.Ut @ sp.diags(w) @ self.U + sp.identity(self.q)).tocsc()
        # SuperLU without row pivoting (A is symmetric positive definite), single-threaded
        self._lu = spla.splu(A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                             options={"SymmetricMode": True})
        self._ld = float(np.log(np.abs(self._lu.U.diagonal())).sum())

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        return self._lu.solve(rhs)

    def logdet(self) -> float:
        return self._ld


def make_system(re: Any) -> BlockSystem | SparseSystem:
    """The back end for a :class:`~alliancetrack.models.random_effects.RandomEffects`."""
    if len(re.terms) == 1:
        return BlockSystem(re.terms[0])
    return SparseSystem(re)


@dataclass
class PirlsState:
    """Result of one PIRLS run."""

    u: np.ndarray
    mu: np.ndarray
    eta: np.ndarray
    loglik: float  # log p(y | u*), full constants
    converged: bool
    iterations: int


def pirls(
    system: BlockSystem | SparseSystem,
    family: Family,
    y: np.ndarray,
    wt: np.ndarray,
    eta_fixed: np.ndarray,
    u0: np.ndarray,
    const: np.ndarray | None = None,
    maxit: int = 100,
    tol: float = 1e-11,
) -> PirlsState:
    """Conditional modes ``u*`` for the current ``theta`` (already set) and ``eta_fixed = X beta + offset``.

    On return the system is factorised at ``u*`` (``system.logdet()`` is
    ``log det(U'WU + I)`` with the IRLS weights there, as lme4's ``L``).
    ``const`` is ``family.constant(y, wt)`` if already computed.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _pirls(system, family, y, wt, eta_fixed, u0, const, maxit, tol)


def _pirls(system, family, y, wt, eta_fixed, u0, const, maxit, tol) -> PirlsState:
    u = u0.copy()
    if const is None:
        const = family.constant(y, wt)

    def pdev(uu: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        eta = eta_fixed + system.U_mul(uu)
        mu = family.linkinv(eta)
        ll = family.kernel(y, mu, wt)
        val = -2.0 * float(ll.sum()) + float(uu @ uu)
        return (val if np.isfinite(val) else np.inf), mu, eta, ll

    obj, mu, eta, ll = pdev(u)
    converged = False
    it = 0  # iterations used
    for it in range(1, maxit + 1):  # noqa: B007 - it is reported
        me = family.mu_eta(mu)
        var = family.variance(mu)
        system.factor(wt * me * me / var)
        grad = system.Ut_mul(wt * (y - mu) * me / var) - u
        delta = system.solve(grad)
        if not np.all(np.isfinite(delta)):
            break
        step = 1.0
        while True:
            new = pdev(u + step * delta)
            if new[0] <= obj or step < 1e-6:
                break
            step *= 0.5
        size = float(np.max(np.abs(step * delta))) if delta.size else 0.0
        if new[0] <= obj:
            u = u + step * delta
            obj, mu, eta, ll = new
        if size < tol or new[0] > obj:
            # steps are quadratically convergent: the mode is exact to ~size**2; a step
            # that cannot decrease the objective means it is at the optimum to rounding
            converged = size < 1e-6
            break
    me = family.mu_eta(mu)
    system.factor(wt * me * me / family.variance(mu))
    return PirlsState(u=u, mu=mu, eta=eta, loglik=float(ll.sum() + const.sum()),
                      converged=converged,
                      iterations=it)


def laplace_deviance(state: PirlsState, system: BlockSystem | SparseSystem) -> float:
    """glmer's Laplace deviance ``-2 log p(y|u*) + ||u*||^2 + log det A`` (``-2 logLik``)."""
    return -2.0 * state.loglik + float(state.u @ state.u) + system.logdet()


def agq_deviance(
    state: PirlsState,
    system: BlockSystem,
    family: Family,
    y: np.ndarray,
    wt: np.ndarray,
    nagq: int,
    const: np.ndarray | None = None,
) -> float:
    """Adaptive Gauss-Hermite deviance for a single scalar random effect.

    Per group ``g`` with mode ``u_g`` and ``s_g = A_g^(-1/2)``:
    ``int p(y_g|u) phi(u) du = s_g sum_k w_k p(y_g|u_g + s_g z_k) phi(u_g + s_g z_k) / phi(z_k)``
    with the standard-normal Gauss-Hermite rule ``(z_k, w_k)``; all constants kept.
    """
    if const is None:
        const = family.constant(y, wt)
    constg = np.bincount(system.codes, const, minlength=system.G)
    z, w = np.polynomial.hermite_e.hermegauss(nagq)
    w = w / w.sum()
    s = 1.0 / np.sqrt(system.A[:, 0, 0])
    G = system.G
    codes = system.codes
    Ur = system.Urows[:, 0]
    eta0 = state.eta - Ur * state.u[codes]
    terms = np.empty((G, nagq))
    for j in range(nagq):  # over quadrature nodes (nagq <= 25), vectorised over groups
        ug = state.u + s * z[j]
        mu = family.linkinv(eta0 + Ur * ug[codes])
        llg = np.bincount(codes, family.kernel(y, mu, wt), minlength=G) + constg
        terms[:, j] = np.log(w[j]) + llg - 0.5 * ug * ug + 0.5 * z[j] ** 2
    return -2.0 * float((logsumexp(terms, axis=1) + np.log(s)).sum())
