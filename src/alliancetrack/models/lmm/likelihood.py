"""lme4's profiled deviance for a single grouping factor, vectorised over groups.

:class:`BatchProfile` is the fast path of :func:`~alliancetrack.fit_mixed` for
models with one random-effect term (random intercept and/or correlated slopes
for one grouping factor): per-group sufficient statistics ``Z_g'[Z_g X_g y_g]``
computed once, each evaluation a batch of small Cholesky factorisations
written as array operations over all groups, with an analytic gradient
(Bates, Maechler, Bolker & Walker, 2015, eqs. 34 and 41).  Models with several
terms (nested or crossed) use :class:`~alliancetrack.models.lmm.blocked.BlockedProfile`.
Both derive from :class:`ProfiledGLS`, which turns a profiled evaluation into
the GLS fixed effects and their covariance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from alliancetrack.errors import AllianceDataError
from alliancetrack.models.lmm.optimizer import ProfileBase, canonical_tril

__all__ = ["BatchProfile"]


class ProfiledGLS(ProfileBase):
    """A profiled likelihood whose ``_evaluate(x)`` also gives the GLS solution.

    ``_evaluate`` returns at least ``llf``, ``r2`` (penalised residual sum of
    squares), ``C`` (the fixed-effects cross-product) and ``beta``; subclasses
    set ``n``, ``p`` and ``reml``.  Shared by the fast and the blocked engine.
    """

    n: float
    p: int
    reml: bool

    def _evaluate(self, x: np.ndarray) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

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


class BatchProfile(ProfiledGLS):
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
            out = {"llf": llf, "score": score, "beta": beta, "r2": r2, "C": C, "logdet": logdet}
        self._cache = (key, out)
        return out

    def llf(self, x: np.ndarray) -> float:
        return float(self._evaluate(x)["llf"])

    def score(self, x: np.ndarray) -> np.ndarray:
        return np.array(self._evaluate(x)["score"], float)

    # -- results at the optimum --------------------------------------------------
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


    def canonical(self, x: np.ndarray) -> np.ndarray:
        """Flip column signs so that the diagonal of ``L`` is non-negative."""
        return canonical_tril(x, self.q)

    def starts(self) -> dict[str, np.ndarray]:
        ident = np.eye(self.q)[self.tril]
        return {"identity": ident, "small": 0.1 * ident}

    def parts(self, x: np.ndarray) -> dict[str, Any]:
        """``logdet`` (of ``I + L'Z'ZL``), ``r2``, ``C`` (= X'V^-1 X) and ``beta`` at ``x``."""
        ev = self._evaluate(np.asarray(x, float))
        if not np.isfinite(ev["llf"]):
            return {"ok": False}
        return {"ok": True, **{k: ev[k] for k in ("logdet", "r2", "C", "beta")}}

    def relative_covariances(self, x: np.ndarray) -> list[np.ndarray]:
        """The term's relative covariance ``L L'`` (one term)."""
        L = self._lower(np.asarray(x, float))
        return [L @ L.T]
