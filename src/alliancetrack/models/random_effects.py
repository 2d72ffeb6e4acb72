"""Random-effects structure of a linear mixed model, as lme4 builds it.

:func:`build_random_effects` turns the random terms of a
:class:`~alliancetrack.models.formula.MixedFormula` into lme4's ``reTrms``
(Bates, Maechler, Bolker & Walker, 2015, section 2.3): the sparse model
matrix ``Z`` (n x q; terms ordered by decreasing number of levels as
``mkReTrms`` does, then level by level, coefficient within level), the
relative covariance factor ``Lambda(theta)`` (block diagonal; per term one
lower-triangular ``T_k`` repeated for every level), the start ``theta0``
(identity) and the lower bounds (0 on diagonals, -inf below them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from alliancetrack.errors import AllianceDataError
from alliancetrack.models.formula import MixedFormula, RandomTerm

__all__ = ["RandomEffects", "ReTerm", "build_random_effects"]


@dataclass
class ReTerm:
    """One random-effect term of a :class:`RandomEffects` structure.

    Attributes
    ----------
    group : str
        lme4 grouping-factor name (``"patient"``, ``"cask:batch"``).
    coef_names : list of str
        Coefficient names (``"(Intercept)"``, ``"session"``).
    levels : list
        Level labels of the grouping factor, in the order of ``Z``'s columns.
    n_coef : int
        Number of coefficients per level.
    theta_slice : slice
        This term's entries of ``theta`` (column-wise lower triangle of ``T_k``).
    col_slice : slice
        This term's columns of ``Z``.
    name : str
        Unique name for the variance table (lme4's ``make.unique``: a second
        term on ``Subject`` from ``||`` is ``"Subject.1"``).
    correlated : bool
        False for terms from a ``||`` expansion.
    codes : ndarray
        Level index of every observation.
    model_matrix : ndarray
        The term's n x n_coef model matrix.
    """

    group: str
    coef_names: list[str]
    levels: list
    n_coef: int
    theta_slice: slice
    col_slice: slice
    name: str = ""
    correlated: bool = True
    codes: np.ndarray = field(default_factory=lambda: np.zeros(0, int), repr=False)
    model_matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)

    @property
    def n_levels(self) -> int:
        """Number of levels of the grouping factor."""
        return len(self.levels)

    def lower_factor(self, theta: np.ndarray) -> np.ndarray:
        """The term's lower-triangular relative factor ``T_k`` from ``theta``."""
        k = self.n_coef
        T = np.zeros((k, k))
        rows, cols = _tril_colmajor(k)
        T[rows, cols] = np.asarray(theta, float)[self.theta_slice]
        return T


def _tril_colmajor(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of a lower triangle in column-major order (lme4's theta)."""
    cols, rows = np.triu_indices(k)
    return rows, cols


@dataclass
class RandomEffects:
    """lme4's random-effects structure (``reTrms``).

    Attributes
    ----------
    Z : scipy.sparse.csc_matrix
        n x q random-effects model matrix.
    theta0 : ndarray
        lme4's starting value (1 on diagonals of each ``T_k``, 0 below).
    lower : ndarray
        Lower bounds of ``theta`` (0 on diagonals, -inf below).
    terms : list of ReTerm
        The terms in lme4's order.
    """

    Z: sp.csc_matrix
    theta0: np.ndarray
    lower: np.ndarray
    terms: list
    _lind: np.ndarray = field(default_factory=lambda: np.zeros(0, int), repr=False)
    _rows: np.ndarray = field(default_factory=lambda: np.zeros(0, int), repr=False)
    _cols: np.ndarray = field(default_factory=lambda: np.zeros(0, int), repr=False)

    @property
    def q(self) -> int:
        """Number of random effects (columns of ``Z``)."""
        return int(self.Z.shape[1])

    @property
    def diag(self) -> np.ndarray:
        """Indices of ``theta`` on a diagonal of some ``T_k`` (bounded below by 0)."""
        return np.flatnonzero(self.lower == 0)

    def lambda_matrix(self, theta: np.ndarray) -> sp.csc_matrix:
        """The q x q relative covariance factor ``Lambda(theta)`` (lme4's ``Lambda``).

        Examples
        --------
        >>> import pandas as pd
        >>> from alliancetrack.models.formula import parse_mixed_formula
        >>> d = pd.DataFrame({"y": [1., 2, 3, 4], "x": [0., 1, 0, 1], "g": [1, 1, 2, 2]})
        >>> re = build_random_effects(parse_mixed_formula("y ~ x + (x | g)"), d)
        >>> re.lambda_matrix([1.0, 0.5, 2.0]).toarray()[:2, :2].tolist()
        [[1.0, 0.0], [0.5, 2.0]]
        """
        theta = np.asarray(theta, float)
        return sp.csc_matrix(
            (theta[self._lind], (self._rows, self._cols)), shape=(self.q, self.q)
        )

    def covariances(self, theta: np.ndarray, sigma2: float = 1.0) -> list[np.ndarray]:
        """Per term, the covariance ``sigma2 * T_k T_k'`` of its coefficients."""
        out = []
        for t in self.terms:
            T = t.lower_factor(theta)
            out.append(sigma2 * (T @ T.T))
        return out


def _group_codes(data: pd.DataFrame, term: RandomTerm) -> tuple[np.ndarray, list]:
    cols = term.group_columns
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise AllianceDataError(
            f"grouping factor {term.group!r} of random term {term} needs column(s) {missing}, "
            f"which are not in the data (columns: {list(data.columns)})."
        )
    if len(cols) == 1:
        codes, uniques = pd.factorize(data[cols[0]], sort=True)
        return codes.astype(np.int64), list(uniques)
    parts = [pd.factorize(data[c], sort=True) for c in cols]
    frame = pd.DataFrame({i: p[0] for i, p in enumerate(parts)})
    # first factor varies slowest in the level order; labels joined by ':' as in R
    keys = frame.drop_duplicates().sort_values(list(frame.columns))
    index = pd.MultiIndex.from_frame(keys)
    codes = index.get_indexer(pd.MultiIndex.from_frame(frame))
    labels = [
        ":".join(str(parts[i][1][k]) for i, k in enumerate(row)) for row in keys.itertuples(False)
    ]
    return codes.astype(np.int64), labels


def _term_matrix(data: pd.DataFrame, term: RandomTerm) -> tuple[np.ndarray, list[str]]:
    import patsy

    try:
        dm = patsy.dmatrix(term.expr, data, return_type="matrix", NA_action="raise")
    except patsy.PatsyError as exc:
        raise AllianceDataError(
            f"could not build random term {term}: {exc}. Check that every variable is a "
            f"column of the data (columns: {list(data.columns)})."
        ) from exc
    names = [
        "(Intercept)" if n in ("Intercept", "1") else str(n) for n in dm.design_info.column_names
    ]
    M = np.asarray(dm, float)
    if M.shape[1] == 0:
        raise AllianceDataError(f"random term {term} has no columns (nothing left of '|').")
    return M, names


def build_random_effects(formula: MixedFormula, data: pd.DataFrame) -> RandomEffects:
    """Build lme4's random-effects structure for ``formula`` on ``data``.

    Parameters
    ----------
    formula : MixedFormula
        From :func:`~alliancetrack.models.formula.parse_mixed_formula`; needs at
        least one random term.
    data : pandas.DataFrame
        The model rows (no missing values in the variables used).

    Returns
    -------
    RandomEffects

    References
    ----------
    Bates, D., Maechler, M., Bolker, B., & Walker, S. (2015). Fitting linear
    mixed-effects models using lme4. Journal of Statistical Software, 67(1), 1-48.

    Examples
    --------
    >>> import pandas as pd
    >>> from alliancetrack.models.formula import parse_mixed_formula
    >>> d = pd.DataFrame({"y": [1., 2, 3, 4, 5, 6], "x": [0., 1, 0, 1, 0, 1],
    ...                   "g": [1, 1, 2, 2, 3, 3], "h": [1, 2, 1, 2, 1, 2]})
    >>> re = build_random_effects(parse_mixed_formula("y ~ x + (x | g) + (1 | h)"), d)
    >>> re.Z.shape, [t.group for t in re.terms], re.theta0.tolist()
    ((6, 8), ['g', 'h'], [1.0, 0.0, 1.0, 1.0])
    """
    if not formula.random:
        raise ValueError("the formula has no random-effect terms, e.g. (1 | patient).")
    n = len(data)
    built = []
    for term in formula.random:
        codes, levels = _group_codes(data, term)
        M, names = _term_matrix(data, term)
        built.append((term, codes, levels, M, names))
    nl = np.array([len(b[2]) for b in built])
    order = np.arange(len(built))
    if np.any(np.diff(nl) > 0):  # lme4's mkReTrms: rev(order(nl)) when not already decreasing
        order = np.argsort(nl, kind="stable")[::-1]
    built = [built[i] for i in order]
    terms: list[ReTerm] = []
    blocks, theta0, lower, lind, rows, cols = [], [], [], [], [], []
    col0 = th0 = 0
    seen: dict[str, int] = {}
    for term, codes, levels, M, names in built:
        k, nlev = M.shape[1], len(levels)
        q_k = k * nlev
        # Z block: column level*k + j holds M[:, j] on the rows of that level
        r = np.repeat(np.arange(n), k)
        c = (codes[:, None] * k + np.arange(k)[None, :]).ravel()
        blocks.append(sp.csc_matrix((M.ravel(), (r, c)), shape=(n, q_k)))
        tr, tc = _tril_colmajor(k)
        nth = len(tr)
        theta0.append((tr == tc).astype(float))
        lower.append(np.where(tr == tc, 0.0, -np.inf))
        base = col0 + np.arange(nlev)[:, None] * k
        rows.append((base + tr[None, :]).ravel())
        cols.append((base + tc[None, :]).ravel())
        lind.append(np.tile(th0 + np.arange(nth), nlev))
        cnt = seen.get(term.group, 0)
        seen[term.group] = cnt + 1
        terms.append(
            ReTerm(
                group=term.group,
                coef_names=names,
                levels=levels,
                n_coef=k,
                theta_slice=slice(th0, th0 + nth),
                col_slice=slice(col0, col0 + q_k),
                name=term.group if cnt == 0 else f"{term.group}.{cnt}",
                correlated=term.correlated,
                codes=codes,
                model_matrix=M,
            )
        )
        col0 += q_k
        th0 += nth
    Z = sp.hstack(blocks, format="csc")
    return RandomEffects(
        Z=Z,
        theta0=np.concatenate(theta0),
        lower=np.concatenate(lower),
        terms=terms,
        _lind=np.concatenate(lind),
        _rows=np.concatenate(rows),
        _cols=np.concatenate(cols),
    )
