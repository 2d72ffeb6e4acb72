"""lme4's profiled deviance for several random-effect terms, by a blocked Cholesky.

:class:`BlockedProfile` evaluates the profiled (restricted) deviance of
Bates, Maechler, Bolker & Walker (2015, eqs. 34 and 41) for any set of
random-effect terms (nested, as sessions in patients in therapists, or
crossed, as Penicillin's plates x samples) from the Cholesky factor of the
augmented system

    [ Lambda'Z'Z Lambda + I   Lambda'Z'[X y] ]
    [ [X y]'Z Lambda          [X y]'[X y]    ]

computed block by block, as MixedModels.jl does (Bates et al., 2015, section
3.6).  The first term (the one with most levels: patients) has a block-diagonal
diagonal block with one small ``k x k`` block per level; it is factorised for
all levels at once as stacked array operations.  The remaining terms
(therapists, or the crossed factor) form the Schur complement
``S = A22 - L21 L21'``: block diagonal again when they are nested in the first
term's grouping, sparse or small otherwise.  ``S`` is factorised densely when
small (``q2 <= 1000``) and by scipy's sparse LU (SuperLU, symmetric mode,
minimum-degree ordering) otherwise; both are in scipy, so no system library is
needed.  The ``[X y]`` block then gives ``X'V^-1 X``, the GLS estimate and the
penalised residual sum of squares.

The gradient is by central differences (a few parameters); the optimiser and
its checks are those of :mod:`.optimizer`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from alliancetrack.models.lmm.likelihood import ProfiledGLS
from alliancetrack.models.lmm.optimizer import ProfileBase
from alliancetrack.models.random_effects import RandomEffects

__all__ = ["BlockedProfile"]

def _lsolve(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve ``L X = B`` for stacked lower-triangular ``L`` (n, k, k); ``B`` (n, k, c)."""
    k = L.shape[1]
    X = np.empty(np.broadcast_shapes(L.shape[:1] + B.shape[1:], B.shape))
    for i in range(k):
        acc = B[:, i]
        if i:
            acc = acc - np.einsum("nj,njc->nc", L[:, i, :i], X[:, :i])
        X[:, i] = acc / L[:, i, i, None]
    return X


def _ltsolve(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve ``L' X = B`` for stacked lower-triangular ``L`` (n, k, k); ``B`` (n, k, c)."""
    k = L.shape[1]
    X = np.empty(np.broadcast_shapes(L.shape[:1] + B.shape[1:], B.shape))
    for i in reversed(range(k)):
        acc = B[:, i]
        if i < k - 1:
            acc = acc - np.einsum("nj,njc->nc", L[:, i + 1 :, i], X[:, i + 1 :])
        X[:, i] = acc / L[:, i, i, None]
    return X


def _linv(L: np.ndarray) -> np.ndarray:
    """Inverse of stacked lower-triangular matrices."""
    eye = np.broadcast_to(np.eye(L.shape[1]), L.shape)
    return _lsolve(L, eye)


_DENSE_MAX = 100  # Schur complements up to this size are factorised densely


class BlockedProfile(ProfiledGLS):
    """Profiled (restricted) log-likelihood of an LMM with any lme4 random terms.

    Parameters
    ----------
    X : ndarray
        n x p fixed-effects design.
    y : ndarray
        Response.
    re : RandomEffects
        lme4's random-effects structure (terms in lme4 order).
    reml : bool
        REML or ML.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, re: RandomEffects, reml: bool):
        self.re = re
        n, p = X.shape
        self.n, self.p, self.reml = float(n), p, bool(reml)
        self.nobs = float(n)
        self.nfev = 0
        self.k = len(re.theta0)
        self.diag = re.diag
        self.bounds = [(0.0, None) if lo == 0 else (None, None) for lo in re.lower]
        W = np.column_stack([X, y]).astype(float)  # n x (p+1)
        self.X, self.y = np.asarray(X, float), np.asarray(y, float)
        t1 = re.terms[0]
        self.k1, self.nl1 = t1.n_coef, t1.n_levels
        M1, codes = t1.model_matrix, t1.codes
        k1, nl1 = self.k1, self.nl1
        # per level of term 1: Z1'Z1 (nl1, k1, k1) and Z1'W (nl1, k1, p+1)
        self.Z1Z1 = np.empty((nl1, k1, k1))
        self.Z1W = np.empty((nl1, k1, p + 1))
        for a in range(k1):
            for b in range(k1):
                self.Z1Z1[:, a, b] = np.bincount(codes, M1[:, a] * M1[:, b], minlength=nl1)
            for c in range(p + 1):
                self.Z1W[:, a, c] = np.bincount(codes, M1[:, a] * W[:, c], minlength=nl1)
        self.WW = W.T @ W
        q1 = k1 * nl1
        self.q1 = q1
        Z = re.Z
        self.q2 = Z.shape[1] - q1
        self.nested = False
        if len(re.terms) == 2:
            t2 = re.terms[1]
            parent = np.full(nl1, -1)
            parent[codes] = t2.codes
            if np.array_equal(parent[codes], t2.codes):
                self._setup_nested(t1, t2, parent, W)
        if self.q2 and not self.nested:
            Z1, Z2 = Z[:, :q1], Z[:, q1:]
            self.Z2Z2 = (Z2.T @ Z2).tocsc()
            self.Z2Z1 = (Z2.T @ Z1).tocsc()
            self.Z2W = np.asarray(Z2.T @ W)
            # block-diagonal sparsity pattern of term 1's inverse factors
            base = np.arange(nl1)[:, None, None] * k1
            self._bd_rows = (base + np.arange(k1)[None, :, None]).repeat(k1, 2).ravel()
            self._bd_cols = (base + np.arange(k1)[None, None, :]).repeat(k1, 1).ravel()
        self._cache: tuple[bytes, dict[str, Any]] | None = None

    def _setup_nested(self, t1: Any, t2: Any, parent: np.ndarray, W: np.ndarray) -> None:
        """Per-level cross-products when every level of term 1 lies in one level of term 2.

        Then ``S`` is block diagonal (one ``k2 x k2`` block per level of term 2: a
        therapist) and the whole factorisation is stacked small-matrix algebra.
        """
        self.nested = True
        self.parent = parent
        k1, k2, nl2 = t1.n_coef, t2.n_coef, t2.n_levels
        self.k2, self.nl2 = k2, nl2
        M1, M2, c1, c2 = t1.model_matrix, t2.model_matrix, t1.codes, t2.codes
        p1 = W.shape[1]
        self.Z2Z2b = np.empty((nl2, k2, k2))
        self.Z2Wb = np.empty((nl2, k2, p1))
        self.Z21b = np.empty((self.nl1, k2, k1))  # Z2'Z1 block of each level of term 1
        for a in range(k2):
            for b in range(k2):
                self.Z2Z2b[:, a, b] = np.bincount(c2, M2[:, a] * M2[:, b], minlength=nl2)
            for c in range(p1):
                self.Z2Wb[:, a, c] = np.bincount(c2, M2[:, a] * W[:, c], minlength=nl2)
            for b in range(k1):
                self.Z21b[:, a, b] = np.bincount(c1, M2[:, a] * M1[:, b], minlength=self.nl1)

    def _factor_nested(self, x: np.ndarray, out: dict[str, Any], logdet: float,
                       B1: np.ndarray, L11: np.ndarray) -> tuple[float, np.ndarray]:
        """Schur complement of the second (outer) term, block diagonal by nesting."""
        T1 = self.re.terms[0].lower_factor(x)
        T2 = self.re.terms[1].lower_factor(x)
        A21 = T2.T @ self.Z21b @ T1  # (nl1, k2, k1)
        L21t = _lsolve(L11, np.transpose(A21, (0, 2, 1)))  # L11^-1 A21' = L21'
        par = self.parent
        nl2, k2 = self.nl2, self.k2
        S = T2.T @ self.Z2Z2b @ T2 + np.eye(k2)
        sub = np.transpose(L21t, (0, 2, 1)) @ L21t  # L21 L21' per level of term 1
        red = np.zeros((nl2, k2, k2))
        np.add.at(red, par, sub)
        S -= red
        Tm = T2.T @ self.Z2Wb  # Lambda2' Z2'W, (nl2, k2, p+1)
        red2 = np.zeros_like(Tm)
        np.add.at(red2, par, np.transpose(L21t, (0, 2, 1)) @ B1)
        Tm -= red2
        L22 = np.linalg.cholesky(S)
        logdet += 2.0 * float(np.sum(np.log(np.diagonal(L22, axis1=1, axis2=2))))
        Y = _lsolve(L22, Tm)  # L22^-1 Tm
        out.update(L22=L22, L21t=L21t, Y=Y, T1=T1, T2=T2)
        Yf = Y.reshape(-1, Y.shape[2])
        return logdet, Yf.T @ Yf

    # -- the core evaluation ---------------------------------------------------
    def _lambda2(self, theta: np.ndarray) -> sp.csc_matrix:
        L = self.re.lambda_matrix(theta)
        return L[self.q1 :, self.q1 :]

    def _evaluate(self, x: np.ndarray) -> dict[str, Any]:
        x = np.asarray(x, float)
        key = x.tobytes()
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        self.nfev += 1
        out: dict[str, Any] = {"llf": -np.inf}
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = self._factor(x)
        except (np.linalg.LinAlgError, RuntimeError, ValueError, FloatingPointError):
            out = {"llf": -np.inf}
        self._cache = (key, out)
        return out

    def _factor(self, x: np.ndarray) -> dict[str, Any]:
        p, k1 = self.p, self.k1
        T1 = self.re.terms[0].lower_factor(x)
        A11 = T1.T @ self.Z1Z1 @ T1 + np.eye(k1)
        L11 = np.linalg.cholesky(A11)  # (nl1, k1, k1)
        logdet = 2.0 * float(np.sum(np.log(np.diagonal(L11, axis1=1, axis2=2))))
        A31 = T1.T @ self.Z1W  # Lambda1' Z1'W, (nl1, k1, p+1)
        B1 = _lsolve(L11, A31)  # L11^-1 Lambda1'Z1'W
        B1f = B1.reshape(self.q1, p + 1)
        Om = self.WW - B1f.T @ B1f
        out: dict[str, Any] = {"L11": L11, "B1": B1}
        if self.nested:
            logdet, red = self._factor_nested(x, out, logdet, B1, L11)
            Om = Om - red
        elif self.q2:
            Lam2 = self._lambda2(x)
            Linv = _linv(L11)  # lower triangular blocks
            BD = sp.csc_matrix(
                (np.transpose(Linv, (0, 2, 1)).ravel(), (self._bd_rows, self._bd_cols)),
                shape=(self.q1, self.q1),
            )  # blockdiag(L11^-T)
            Lam1 = self.re.lambda_matrix(x)[: self.q1, : self.q1]
            L21 = (Lam2.T @ self.Z2Z1 @ Lam1 @ BD).tocsc()
            S = (Lam2.T @ self.Z2Z2 @ Lam2 + sp.identity(self.q2) - L21 @ L21.T).tocsc()
            Tm = Lam2.T @ self.Z2W - L21 @ B1f  # (q2, p+1)
            if self.q2 <= _DENSE_MAX:
                Sd = S.toarray()
                cf = np.linalg.cholesky(Sd)
                logdet += 2.0 * float(np.sum(np.log(np.diag(cf))))
                SiT = sla.cho_solve((cf, True), Tm)
                out["S_factor"] = ("dense", cf)
            else:
                lu = spla.splu(
                    S, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                    options={"SymmetricMode": True},
                )
                d = lu.U.diagonal()
                if np.any(d <= 0):
                    raise np.linalg.LinAlgError("Schur complement not positive definite")
                logdet += float(np.sum(np.log(d)))
                SiT = lu.solve(Tm)
                out["S_factor"] = ("splu", lu)
            Om = Om - Tm.T @ SiT
            out.update(L21=L21, Tm=Tm, SiT=SiT)
        C = Om[:p, :p]
        c = Om[:p, p]
        cfC = np.linalg.cholesky(C)
        beta = sla.cho_solve((cfC, True), c)
        r2 = float(Om[p, p] - c @ beta)
        if not r2 > 0:
            return {"llf": -np.inf}
        m = self.n - p if self.reml else self.n
        dev = logdet + m * (1.0 + np.log(2.0 * np.pi * r2 / m))
        if self.reml:
            dev += 2.0 * float(np.sum(np.log(np.diag(cfC))))
        llf = -0.5 * float(dev)
        if not np.isfinite(llf):
            return {"llf": -np.inf}
        out.update(llf=llf, logdet=logdet, r2=r2, C=C, beta=beta)
        return out

    def llf(self, x: np.ndarray) -> float:
        return float(self._evaluate(x)["llf"])

    def score(self, x: np.ndarray) -> np.ndarray:
        """Analytic gradient for nested terms; central differences otherwise."""
        if not self.nested:
            return ProfileBase.score(self, x)
        x = np.asarray(x, float)
        ev = self._evaluate(x)
        if not np.isfinite(ev["llf"]):
            return np.full(self.k, np.nan)
        with np.errstate(all="ignore"):
            return self._score_nested(ev)

    def _back_solve(self, ev: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """``M^-1 Lambda'Z'[X y]`` per level of both nested terms."""
        R2 = _ltsolve(ev["L22"], ev["Y"])
        R1 = _ltsolve(ev["L11"], ev["B1"] - ev["L21t"] @ R2[self.parent])
        return R1, R2

    def _score_nested(self, ev: dict[str, Any]) -> np.ndarray:
        """Gradient of the profiled log-likelihood for two nested terms.

        ``d deviance / dT_k = 2 sum_levels G_ii'`` with ``G = M^-1 Lambda'Z'Z
        - (m / r^2) u res'Z - [REML] (M^-1 Lambda'Z'X) C^-1 X'V^-1 Z``
        (``M = Lambda'Z'Z Lambda + I``, ``u`` the spherical random effects,
        ``res`` the residual), its diagonal blocks from the block Cholesky factor.
        """
        p = self.p
        T1, T2, L11 = ev["T1"], ev["T2"], ev["L11"]
        L21t, L22, par = ev["L21t"], ev["L22"], self.parent
        tr = lambda a: np.transpose(a, (0, 2, 1))  # noqa: E731
        R1, R2 = self._back_solve(ev)
        bvec = np.append(-ev["beta"], 1.0)
        u1, u2 = R1 @ bvec, R2 @ bvec
        b1, b2 = u1 @ T1.T, u2 @ T2.T  # Lambda u per level
        Z21b = self.Z21b
        zr1 = self.Z1W @ bvec - (self.Z1Z1 @ b1[..., None])[..., 0] - (
            tr(Z21b) @ b2[par][..., None])[..., 0]
        zr2 = self.Z2Wb @ bvec - (self.Z2Z2b @ b2[..., None])[..., 0]
        np.add.at(zr2, par, -(Z21b @ b1[..., None])[..., 0])
        L11i, L22i = _linv(L11), _linv(L22)
        Sinv = tr(L22i) @ L22i
        F = tr(L21t) @ L11i  # L21 L11^-1 per level of term 1
        Minv11 = tr(L11i) @ L11i + tr(F) @ Sinv[par] @ F
        Minv21 = -(Sinv[par] @ F)
        H_ll, H_tl = T1.T @ self.Z1Z1, T2.T @ Z21b
        H_lt, H_tt = T1.T @ tr(Z21b), T2.T @ self.Z2Z2b
        GA1 = (Minv11 @ H_ll + tr(Minv21) @ H_tl).sum(axis=0)
        GA2 = (Sinv @ H_tt).sum(axis=0) + (Minv21 @ H_lt).sum(axis=0)
        m = self.n - p if self.reml else self.n
        G1 = GA1 - (m / ev["r2"]) * (u1.T @ zr1)
        G2 = GA2 - (m / ev["r2"]) * (u2.T @ zr2)
        if self.reml:
            Ci = np.linalg.inv(ev["C"])
            RX1, RX2 = R1[..., :p], R2[..., :p]
            Q1 = tr(self.Z1W[..., :p]) - (tr(RX1) @ H_ll + tr(RX2[par]) @ H_tl)
            Q2 = tr(self.Z2Wb[..., :p]) - tr(RX2) @ H_tt
            np.add.at(Q2, par, -(tr(RX1) @ H_lt))
            G1 = G1 - (RX1 @ Ci @ Q1).sum(axis=0)
            G2 = G2 - (RX2 @ Ci @ Q2).sum(axis=0)
        g = np.empty(self.k)
        for t, G in zip(self.re.terms, (G1, G2), strict=True):
            cols, rows = np.triu_indices(t.n_coef)
            g[t.theta_slice] = -G.T[rows, cols]  # llf = -deviance / 2
        return g

    def canonical(self, x: np.ndarray) -> np.ndarray:
        """Flip column signs of every ``T_k`` so its diagonal is non-negative."""
        x = np.array(x, float)
        for t in self.re.terms:
            T = t.lower_factor(x)
            T = T * np.where(np.diag(T) < 0, -1.0, 1.0)[None, :]
            cols, rows = np.triu_indices(t.n_coef)
            x[t.theta_slice] = T[rows, cols]
        return x

    def starts(self) -> dict[str, np.ndarray]:
        return {"identity": self.re.theta0.copy(), "small": 0.1 * self.re.theta0}

    # -- results at the optimum --------------------------------------------------
    def parts(self, x: np.ndarray) -> dict[str, Any]:
        """``logdet`` (of ``Lambda'Z'Z Lambda + I``), ``r2``, ``C`` and ``beta`` at ``x``."""
        ev = self._evaluate(np.asarray(x, float))
        if not np.isfinite(ev["llf"]):
            return {"ok": False}
        return {"ok": True, **{k: ev[k] for k in ("logdet", "r2", "C", "beta")}}

    def random_effects(self, x: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """Conditional modes ``b = Lambda u`` with ``(Lambda'Z'Z Lambda + I) u = Lambda'Z'r``."""
        if self.nested:
            ev = self._evaluate(np.asarray(x, float))
            R1, R2 = self._back_solve(ev)
            bvec = np.append(-np.asarray(beta, float), 1.0)
            b1 = (R1 @ bvec) @ ev["T1"].T
            b2 = (R2 @ bvec) @ ev["T2"].T
            return np.concatenate([b1.ravel(), b2.ravel()])
        Lam = self.re.lambda_matrix(x)
        ZL = (self.re.Z @ Lam).tocsc()
        A = (ZL.T @ ZL + sp.identity(ZL.shape[1])).tocsc()
        rhs = ZL.T @ (self.y - self.X @ beta)
        u = spla.splu(A, permc_spec="MMD_AT_PLUS_A").solve(np.asarray(rhs, float))
        return np.asarray(Lam @ u).ravel()

    def relative_covariances(self, x: np.ndarray) -> list[np.ndarray]:
        """Per term, the relative covariance ``T_k T_k'``."""
        return self.re.covariances(x, 1.0)
