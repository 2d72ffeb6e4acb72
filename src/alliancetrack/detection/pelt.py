"""Exact, vectorised PELT for the l2 cost on many series of the same length.

``ruptures.Pelt(model="l2", min_size=m, jump=1).fit(x).predict(pen=p)`` is a
pure-Python loop: about a millisecond per 20-session patient.  This module runs
the *same* recursion on a whole batch of equally long series at once, with
numpy, and returns exactly the breakpoints ruptures returns -- including its
tie breaking and its floating-point arithmetic:

* Segment costs are ``np.var(x[t:b]) * (b - t)``, computed with numpy's own
  ``var`` over the last axis, which is the expression ruptures' ``CostL2``
  evaluates (same reductions, same rounding).
* The value of a candidate last change ``t`` for the prefix ``x[:b]`` is
  ``F[t] + (cost(t, b) + pen)`` -- evaluated in this order, as ruptures sums
  the dictionary of segment costs from left to right.
* Among equal values the smallest ``t`` wins (Python's ``min`` keeps the first
  of the ascending admissible list; ``np.argmin`` keeps the first too).
* Pruning keeps ``t`` while ``F[t] + (cost(t, b) + pen) <= F[b] + pen``; a
  pruned ``t`` never returns.  Because of ``min_size`` (and rounding) this
  pruning is not always the same as exact optimal partitioning, so it is
  replicated rather than replaced by plain optimal partitioning.
* Candidate ``t`` values are ``0`` and ``min_size <= t <= b - min_size``
  (ruptures never builds a partition of ``x[:t]`` for ``0 < t < min_size``).

Each series may have its own penalty (a penalty vector).
"""

from __future__ import annotations

import numpy as np

from alliancetrack.errors import AllianceDataError

__all__ = ["FastPelt", "pelt_l2_batch"]


def _pairwise_sum(term, lo: int, n: int):
    """numpy's pairwise summation of ``term(lo), ..., term(lo + n - 1)``.

    Reproduces ``np.add.reduce`` over a contiguous axis of length ``n`` bit for
    bit (``0.0 +`` the pairwise sum: sequential below 8 terms, eight running
    accumulators up to 128 terms, recursive halving above), but with each term
    a whole vector, so many windows are summed by one numpy call per term.
    """
    if n < 8:
        res = term(lo)
        for i in range(1, n):
            res = res + term(lo + i)
        return res
    if n <= 128:
        r = [term(lo + j) for j in range(8)]
        i = 8
        stop = n - (n % 8)
        while i < stop:
            for j in range(8):
                r[j] = r[j] + term(lo + i + j)
            i += 8
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while i < n:
            res = res + term(lo + i)
            i += 1
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return _pairwise_sum(term, lo, n2) + _pairwise_sum(term, lo + n2, n - n2)


def _segment_costs(XT: np.ndarray) -> np.ndarray:
    """Costs ``C[t, b, :] = var(x[t:b]) * (b - t)`` for series in the columns of XT.

    The arithmetic is that of ``np.var`` (ruptures' ``CostL2``): mean = (0 +
    pairwise sum) / m, then (0 + pairwise sum of squared deviations) / m, times
    m.  Entries with ``b <= t`` are left uninitialised (never read).
    """
    n, N = XT.shape
    C = np.empty((n + 1, n + 1, N))  # only t < b is ever read
    for m in range(1, n + 1):
        k = n - m + 1  # number of windows of length m
        if m == 1:
            v = np.zeros((k, N))
        else:
            s = 0.0 + _pairwise_sum(lambda i, k=k: XT[i:i + k], 0, m)
            mean = s / m

            def sq(i, k=k, mean=mean):
                d = XT[i:i + k] - mean
                return d * d

            v = (0.0 + _pairwise_sum(sq, 0, m)) / m * m
        t = np.arange(k)
        C[t, t + m] = v
    return C


def pelt_l2_batch(X, pen, min_size: int = 1) -> np.ndarray:
    """Run ruptures' PELT recursion (l2 cost, ``jump=1``) on a batch of series.

    Parameters
    ----------
    X : array_like, shape (n_series, n_samples)
        One series per row, all of the same length, finite values.
    pen : float or array_like of shape (n_series,)
        Penalty per change point, one per series or one for all (> 0).
    min_size : int, default 1
        Minimum segment length (as ``ruptures.Pelt(min_size=...)``).

    Returns
    -------
    numpy.ndarray of bool, shape (n_series, n_samples + 1)
        ``out[i, b]`` is True when ``b`` is a breakpoint of series ``i`` (the
        end of a segment, as in ruptures; ``out[i, n_samples]`` is always True).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[4.0, 4.1, 2.0, 2.1, 4.0, 3.9], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    >>> out = pelt_l2_batch(X, pen=[0.5, 0.5])
    >>> [np.flatnonzero(row).tolist() for row in out]
    [[2, 4, 6], [6]]
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise AllianceDataError(
            f"pelt_l2_batch needs a 2-D array (series x samples), got {X.ndim} dimension(s)."
        )
    N, n = X.shape
    min_size = max(int(min_size), 1)
    pen = np.broadcast_to(np.asarray(pen, dtype=np.float64), (N,)).copy()
    out = np.zeros((N, n + 1), dtype=bool)
    if N == 0:
        return out
    if n < min_size:
        raise AllianceDataError(
            f"series of {n} samples are shorter than min_size={min_size}; "
            "drop them or lower min_size."
        )
    if not np.all(np.isfinite(X)):
        raise AllianceDataError("pelt_l2_batch needs finite values; drop missing ratings first.")
    chunk = max(1, 2_000_000 // ((n + 1) * (n + 1)))
    if N > chunk:
        for s in range(0, N, chunk):
            out[s:s + chunk] = _pelt_chunk(X[s:s + chunk], pen[s:s + chunk], min_size)
        return out
    return _pelt_chunk(X, pen, min_size)


def _pelt_chunk(X: np.ndarray, pen: np.ndarray, min_size: int) -> np.ndarray:
    N, n = X.shape
    C = _segment_costs(np.ascontiguousarray(X.T))  # (n + 1, n + 1, N)
    F = np.full((n + 1, N), np.nan)
    F[0] = 0.0
    last = np.zeros((n + 1, N), dtype=np.int64)
    adm = np.zeros((n + 1, N), dtype=bool)  # admissible last-change positions
    cols = np.arange(N)
    for b in list(range(min_size, n)) + [n]:
        new_t = b - min_size
        if new_t == 0 or new_t >= min_size:
            adm[new_t] = True
        h = b - min_size + 1  # candidates t = 0 .. b - min_size
        cand = F[:h] + (C[:h, b] + pen)
        cand[~adm[:h]] = np.inf
        best = np.argmin(cand, axis=0)
        F[b] = cand[best, cols]
        last[b] = best
        adm[:h] &= cand <= F[b] + pen
    # backtrack from the end
    out = np.zeros((N, n + 1), dtype=bool)
    out[:, n] = True
    pos = np.full(N, n)
    while True:
        prev = last[pos, cols]
        hit = (pos > 0) & (prev > 0)
        if not hit.any():
            break
        out[cols[hit], prev[hit]] = True
        pos = np.where(hit, prev, 0)
    return out


class FastPelt:
    """Estimator-style wrapper around :func:`pelt_l2_batch` (ruptures-like API).

    ``FastPelt(min_size).fit(X).predict(pen)`` returns, for every row of ``X``,
    the list ``ruptures.Pelt(model="l2", min_size=min_size, jump=1)
    .fit(row).predict(pen=...)`` returns.

    Parameters
    ----------
    min_size : int, default 1
        Minimum segment length.

    Examples
    --------
    >>> import numpy as np
    >>> algo = FastPelt(min_size=1).fit(np.array([[4.0, 4.0, 2.0, 2.0, 4.0]]))
    >>> algo.predict(pen=0.1)
    [[2, 4, 5]]
    """

    def __init__(self, min_size: int = 1) -> None:
        self.min_size = min_size
        self.signal: np.ndarray | None = None

    def fit(self, signal) -> FastPelt:
        """Store a batch of series (2-D: series x samples; a 1-D array is one series)."""
        arr = np.asarray(signal, dtype=np.float64)
        self.signal = arr[None, :] if arr.ndim == 1 else arr
        return self

    def predict(self, pen) -> list[list[int]]:
        """Breakpoints of every series (lists ending with the series length)."""
        if self.signal is None:
            raise AllianceDataError("call fit(signal) before predict(pen).")
        out = pelt_l2_batch(self.signal, pen, self.min_size)
        return [np.flatnonzero(row).tolist() for row in out]
