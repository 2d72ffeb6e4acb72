"""Small-sample inference for linear mixed models: Satterthwaite and Kenward-Roger.

* :func:`satterthwaite_df` follows lmerTest (Kuznetsova, Brockhoff & Christensen,
  2017): the variance parameters are ``(theta, sigma)``; their covariance is
  ``2 H^-1`` with ``H`` the Hessian of the (REML or ML) deviance at the optimum,
  and for a contrast ``l`` with variance ``v = l' Cov(beta) l`` the degrees of
  freedom are ``2 v^2 / (g' 2H^-1 g)``, ``g`` the gradient of ``v`` in the
  variance parameters (Satterthwaite, 1946).  Derivatives are central
  differences with one Richardson extrapolation (lmerTest uses numDeriv's).
* :func:`kenward_roger` follows pbkrtest's ``vcovAdj`` and ``get_Lb_ddf``
  (Kenward & Roger, 1997; Halekoh & Hojsgaard, 2014): the covariance
  parameters are the elements of each term's covariance matrix and the
  residual variance (``V`` linear in them), the adjusted covariance of the
  fixed effects ``Phi_A = Phi + 2 Phi U Phi`` and the denominator df of the
  scaled F test.  All traces are computed in the random-effects space
  (q x q) through the Woodbury identity, so the cost is O(n q^2), not O(n^3).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from alliancetrack.errors import AllianceDataError
from alliancetrack.models.random_effects import RandomEffects

__all__ = ["kenward_roger", "satterthwaite_df"]

#: largest number of random effects for the Kenward-Roger computation (dense q x q work)
KR_MAX_Q = 6000


def _step(x: float) -> float:
    return 1e-4 * max(abs(x), 1e-2)


def _hessian(f: Callable[[np.ndarray], float], x: np.ndarray, richardson: bool = True
             ) -> np.ndarray:
    """Hessian by central differences, with one Richardson extrapolation if asked."""
    k = len(x)
    H = np.empty((k, k))

    def est(scale: float) -> np.ndarray:
        h = np.array([_step(v) for v in x]) * scale
        f0 = f(x)
        out = np.empty((k, k))
        for i in range(k):
            ei = np.zeros(k)
            ei[i] = h[i]
            out[i, i] = (f(x + 2 * ei) - 2 * f0 + f(x - 2 * ei)) / (4 * h[i] ** 2)
            for j in range(i):
                ej = np.zeros(k)
                ej[j] = h[j]
                out[i, j] = out[j, i] = (
                    f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)
                ) / (4 * h[i] * h[j])
        return out

    b = est(1.0)
    H[:] = (4 * b - est(2.0)) / 3 if richardson else b
    return (H + H.T) / 2


def _jacobian(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, richardson: bool = True
              ) -> list[np.ndarray]:
    """Derivatives of an array-valued ``f`` along each coordinate (Richardson)."""
    out = []
    for j in range(len(x)):
        h = _step(x[j])
        e = np.zeros(len(x))
        e[j] = 1.0

        def cd(hh: float, e=e) -> np.ndarray:
            return (f(x + hh * e) - f(x - hh * e)) / (2 * hh)

        out.append((4 * cd(h) - cd(2 * h)) / 3 if richardson else cd(h))
    return out


def satterthwaite_df(
    parts: Callable[[np.ndarray], dict[str, Any]],
    theta: np.ndarray,
    n: int,
    reml: bool,
    contrasts: np.ndarray,
) -> np.ndarray:
    """Satterthwaite denominator df of ``contrasts @ beta``, as lmerTest.

    Parameters
    ----------
    parts : callable
        ``theta -> {"ok", "logdet", "r2", "C", "beta"}`` (a profile's ``parts``).
    theta : ndarray
        Relative covariance parameters at the optimum.
    n : int
        Number of observations.
    reml : bool
        Whether the fit is REML (the deviance differentiated is the fit's).
    contrasts : ndarray
        m x p matrix, one contrast per row (identity rows for the coefficients).

    Returns
    -------
    ndarray
        m degrees of freedom.

    References
    ----------
    Kuznetsova, A., Brockhoff, P. B., & Christensen, R. H. B. (2017). lmerTest
    package: Tests in linear mixed effects models. Journal of Statistical
    Software, 82(13), 1-26.  Satterthwaite, F. E. (1946). An approximate
    distribution of estimates of variance components. Biometrics Bulletin, 2, 110-114.
    """
    theta = np.asarray(theta, float)
    pt = parts(theta)
    if not pt["ok"]:
        raise AllianceDataError("the fitted model could not be evaluated for Satterthwaite df.")
    p = pt["C"].shape[0]
    m = n - p if reml else n
    sigma = float(np.sqrt(pt["r2"] / m))
    vp0 = np.append(theta, sigma)

    def _parts(vp: np.ndarray) -> tuple[dict[str, Any], float]:
        q = parts(vp[:-1])
        if not q["ok"]:
            raise AllianceDataError("Satterthwaite df: the deviance is undefined near the optimum.")
        return q, float(vp[-1]) ** 2

    def dev(vp: np.ndarray) -> float:
        q, s2 = _parts(vp)
        d = q["logdet"] + q["r2"] / s2 + n * np.log(2 * np.pi * s2)
        if reml:
            d += np.linalg.slogdet(q["C"])[1] - p * np.log(2 * np.pi * s2)
        return float(d)

    L = np.atleast_2d(np.asarray(contrasts, float))

    def var(vp: np.ndarray) -> np.ndarray:
        q, s2 = _parts(vp)
        cov = s2 * np.linalg.inv(q["C"])
        return np.einsum("ij,jk,ik->i", L, cov, L)

    rich = n <= 20000  # large data: one step size (the error is far below the 2% that matter)
    H = _hessian(dev, vp0, rich)
    try:
        A = 2 * np.linalg.inv(H)
    except np.linalg.LinAlgError:
        A = 2 * np.linalg.pinv(H)
    J = np.column_stack(_jacobian(var, vp0, rich))  # (m, k)
    v = var(vp0)
    den = np.einsum("ij,jk,ik->i", J, A, J)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = 2 * v**2 / den
    return np.where(np.isfinite(df) & (df > 0), df, np.nan)


def _kr_matrices(re: RandomEffects, theta: np.ndarray) -> list[sp.csc_matrix]:
    """pbkrtest's G_r in random-effects space: E_r with G_r = Z E_r Z' (q x q each)."""
    q = re.q
    out = []
    for t in re.terms:
        k = t.n_coef
        base = t.col_slice.start + np.arange(t.n_levels) * k
        for j in range(k):
            for i in range(j, k):  # column-major lower triangle, as pbkrtest's lower.tri
                if i == j:
                    rows, cols = base + i, base + i
                else:
                    rows = np.concatenate([base + i, base + j])
                    cols = np.concatenate([base + j, base + i])
                E = sp.csc_matrix((np.ones(len(rows)), (rows, cols)), shape=(q, q))
                out.append(E)
    return out


def kenward_roger(
    X: np.ndarray,
    re: RandomEffects,
    theta: np.ndarray,
    sigma2: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Kenward-Roger adjusted standard errors and df of each fixed effect (pbkrtest).

    Parameters
    ----------
    X : ndarray
        n x p fixed-effects design.
    re : RandomEffects
        Random-effects structure.
    theta : ndarray
        REML estimates of the relative covariance parameters.
    sigma2 : float
        REML residual variance.

    Returns
    -------
    se, df : ndarray
        Adjusted standard errors (``sqrt(diag(Phi_A))``) and denominator df.

    References
    ----------
    Kenward, M. G., & Roger, J. H. (1997). Small sample inference for fixed
    effects from restricted maximum likelihood. Biometrics, 53(3), 983-997.
    Halekoh, U., & Hojsgaard, S. (2014). A Kenward-Roger approximation and
    parametric bootstrap methods for tests in linear mixed models - the R
    package pbkrtest. Journal of Statistical Software, 59(9), 1-32.
    """
    q = re.q
    if q > KR_MAX_Q:
        raise AllianceDataError(
            f"Kenward-Roger df need dense work in the {q} random effects (limit {KR_MAX_Q}); "
            "use ddf='satterthwaite' for a model this large."
        )
    X = np.asarray(X, float)
    n, p = X.shape
    Z = re.Z.tocsc()
    Lam = re.lambda_matrix(theta)
    ZL = (Z @ Lam).tocsc()
    M = (ZL.T @ ZL).toarray() + np.eye(q)
    Minv = np.linalg.inv(M)
    # Sigma = s2 (I + ZL ZL');  Sigma^-1 = (I - ZL M^-1 ZL') / s2
    ZLd = ZL.toarray() if n * q <= 5e7 else None
    if ZLd is None:
        raise AllianceDataError("Kenward-Roger df: model too large for the dense computation.")

    def sinv(A: np.ndarray) -> np.ndarray:
        return (A - ZLd @ (Minv @ (ZLd.T @ A))) / sigma2

    Zd = Z.toarray()
    SiX = sinv(X)
    SiZ = sinv(Zd)
    ZSZ = Zd.T @ SiZ  # Z' S^-1 Z (q x q)
    XSZ = X.T @ SiZ  # X' S^-1 Z (p x q)
    ZS2Z = SiZ.T @ SiZ  # Z' S^-2 Z
    XS2Z = SiX.T @ SiZ
    XS2X = SiX.T @ SiX
    XS3X = SiX.T @ sinv(SiX)
    Phi = np.linalg.inv(X.T @ SiX)
    Es = _kr_matrices(re, theta)
    g = len(Es) + 1  # plus the residual variance
    # per parameter r: OO_r' S^-1 X pieces.  With G_r = Z E Z':  X'S^-1 G_r S^-1 X = XSZ E XSZ'
    P: list[np.ndarray] = []
    for E in Es:
        EZX = E @ XSZ.T  # q x p
        P.append(-(XSZ @ EZX))  # P_r = -X'S^-1 G_r S^-1 X
    P.append(-XS2X)  # residual: G = I
    P = [(a + a.T) / 2 for a in P]

    def Q(r: int, s: int) -> np.ndarray:
        # X'S^-1 G_r S^-1 G_s S^-1 X
        if r < len(Es) and s < len(Es):
            return XSZ @ (Es[r] @ (ZSZ @ (Es[s] @ XSZ.T)))
        if r < len(Es):  # s residual
            return XSZ @ (Es[r] @ XS2Z.T)
        if s < len(Es):
            return XS2Z @ (Es[s] @ XSZ.T)
        return XS3X

    ES = [E @ ZSZ for E in Es]  # E_r Z'S^-1 Z
    ES2 = [E @ ZS2Z for E in Es]
    # tr(S^-2): S^-1 = (I - W)/s2, W = ZL M^-1 ZL';  tr((I - W)^2) = n - 2 tr W + tr W^2
    A0 = M - np.eye(q)
    MA = Minv @ A0
    tr_s2 = (n - 2 * np.trace(MA) + np.sum(MA * MA.T)) / sigma2**2
    Ktr = np.empty((g, g))
    for r in range(g):
        for s in range(r, g):
            if r < len(Es) and s < len(Es):
                v = np.sum(ES[r] * ES[s].T)
            elif r < len(Es):
                v = np.trace(ES2[r])
            elif s < len(Es):
                v = np.trace(ES2[s])
            else:
                v = tr_s2
            Ktr[r, s] = Ktr[s, r] = v
    IE2 = np.empty((g, g))
    Qs: dict[tuple[int, int], np.ndarray] = {}
    for r in range(g):
        for s in range(r, g):
            Qs[r, s] = Q(r, s)
            IE2[r, s] = IE2[s, r] = (
                Ktr[r, s] - 2 * np.sum(Phi * Qs[r, s]) + np.sum((Phi @ P[r]) * (P[s] @ Phi))
            )
    eig = np.linalg.eigvalsh(IE2)
    W = 2 * (np.linalg.inv(IE2) if np.min(np.abs(eig)) > 1e-10 else np.linalg.pinv(IE2))
    W = (W + W.T) / 2
    U = np.zeros((p, p))
    for r in range(g - 1):
        for s in range(r + 1, g):
            U += W[r, s] * (Qs[r, s] - P[r] @ Phi @ P[s])
    U = U + U.T
    for r in range(g):
        U += W[r, r] * (Qs[r, r] - P[r] @ Phi @ P[r])
    PhiA = Phi + 2 * Phi @ U @ Phi
    se = np.sqrt(np.clip(np.diag(PhiA), 0, None))
    df = np.array([_kr_ddf(np.eye(p)[[j]], Phi, P, W) for j in range(p)])
    return se, df


def _kr_ddf(L: np.ndarray, Phi: np.ndarray, P: list[np.ndarray], W: np.ndarray) -> float:
    """pbkrtest's ``.KR_adjust`` denominator df for the contrast rows ``L``."""
    Theta = L.T @ np.linalg.solve(L @ Phi @ L.T, L)
    TP = Theta @ Phi
    g = len(P)
    A1 = A2 = 0.0
    us = [TP @ P[i] @ Phi for i in range(g)]
    for i in range(g):
        for j in range(i, g):
            e = 1.0 if i == j else 2.0
            A1 += e * W[i, j] * np.trace(us[i]) * np.trace(us[j])
            A2 += e * W[i, j] * np.sum(us[i] * us[j].T)
    qq = float(np.linalg.matrix_rank(L))
    B = (A1 + 6 * A2) / (2 * qq)
    gg = ((qq + 1) * A1 - (qq + 4) * A2) / ((qq + 2) * A2)
    c1 = gg / (3 * qq + 2 * (1 - gg))
    c2 = (qq - gg) / (3 * qq + 2 * (1 - gg))
    c3 = (qq + 2 - gg) / (3 * qq + 2 * (1 - gg))
    V0 = 1 + c1 * B
    V1 = 1 - c2 * B
    V2 = 1 - c3 * B
    V0 = 0.0 if abs(V0) < 1e-10 else V0
    ratio = (1 - A2 / qq) / V1 if V1 != 0 else 0.0
    rho = ratio**2 * V0 / V2 / qq
    return float(4 + (qq + 2) / (qq * rho - 1))
