"""Change-point detection of rupture-repair episodes (``method="changepoint"``).

Dip rules look at one session at a time.  Change-point detection looks at a
patient's whole trajectory, splits it into segments of constant level with
the ``ruptures`` package (Truong, Oudre & Vayatis, 2020) and reads
rupture-repair episodes off the sequence of segment means:

* a segment whose mean is lower than the previous segment's by at least
  ``min_shift`` opens a **rupture** (``rupture_session`` = its first rated
  session; ``pre_level`` = the mean of the segment before);
* a later segment whose mean regains ``repair_fraction`` of the drop (measured
  from the lowest segment mean reached so far in the episode) **repairs** it
  (``repair_session`` = its first rated session);
* ``nadir_session`` / ``nadir_level`` are the lowest *observed* score between
  rupture and repair (the end of treatment when unrepaired), so ``depth =
  pre_level - nadir_level`` is comparable with the dip rules' depth;
* a rupture that is never repaired is unrepaired and, as change points have no
  repair window, always ``censored`` (treatment ended before we saw a repair).

For scales where lower is better (``data.higher_is_better`` False) everything
is mirrored: a rupture is a *rise*; levels stay in scale units and ``depth``
is positive.

Segmentation uses PELT (Killick, Fearnhead & Eckley, 2012) with the l2 cost by
default, ``jump=1`` and ``min_size=1``: alliance series are short (5-40
sessions), and ruptures' default ``jump=5`` would only allow change points at
every fifth session.  The default penalty is BIC-type, from a robust estimate
of each patient's noise (see :func:`noise_sd` and :func:`bic_penalty`).  With
the l2 cost, PELT and ``jump=1`` an exact vectorised implementation
(:mod:`alliancetrack.detection.pelt`) is used automatically; it returns exactly the
breakpoints ``ruptures.Pelt`` returns, about two orders of magnitude faster.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from alliancetrack.detection.episodes import empty_episodes, finalize_episodes
from alliancetrack.detection.pelt import pelt_l2_batch
from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.alliance import AllianceData, as_alliance_data

__all__ = [
    "MODELS",
    "SEARCHES",
    "ChangepointSegmenter",
    "bic_penalty",
    "detect_changepoint",
    "episodes_from_segments",
    "noise_sd",
    "noise_statistics",
]

#: Cost models that can be chosen with ``model=``.
MODELS: tuple[str, ...] = ("l2", "l1", "rbf", "normal")
#: Search methods that can be chosen with ``search=``.
SEARCHES: tuple[str, ...] = ("pelt", "binseg", "bottomup", "dynp", "kernelcpd")

#: Kernel bandwidth of the default rbf cost, in noise SDs.
RBF_WIDTH = 3.0
#: Patients with fewer observed scores use the pooled noise SD of the others.
MIN_NOISE_N = 5
_NOISE_QUANTILES = (0.5, 0.75, 0.9)
#: Phi^{-1}((1 + q) / 2): the q-quantile of |Z| for a standard normal Z
_NORMAL_Q = {0.5: 0.6744897501960817, 0.75: 1.1503493803760079, 0.9: 1.6448536269514722}


# --------------------------------------------------------------------------- noise & penalty
def noise_sd(x) -> float:
    """Robust within-patient noise SD from the first differences.

    Where the level is constant, first differences of noisy scores have mean
    zero and SD ``sqrt(2) * sigma``; a level shift affects only one
    difference.  So ``sigma = median(|diff|) / (0.6745 * sqrt(2))`` (the MAD
    of the first differences about zero, scaled to be consistent for normal
    noise) estimates the noise SD even when the series contains ruptures.
    Coarse scores (e.g. item means in steps of 1/12) often repeat, so that
    more than half the differences are zero; then the 75% (or else 90%)
    quantile of ``|diff|`` is used with its own normal-consistency factor.
    Missing values are dropped first.  Returns 0.0 when fewer than three
    scores are observed or (nearly) all differences are zero; callers must
    guard against that (:func:`detect_changepoint` then uses the pooled
    estimate of the other patients).

    Parameters
    ----------
    x : array_like
        One patient's scores in session order.

    Returns
    -------
    float

    Examples
    --------
    >>> round(noise_sd([4.0, 4.2, 3.9, 4.1, 2.0, 2.2, 1.9, 4.0, 4.1]), 3)
    0.262
    >>> noise_sd([3.0, 3.0, 3.0])
    0.0
    """
    arr = np.asarray(x, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size < 3:
        return 0.0
    return float(_noise_sd_rows(arr[None, :])[0][0])


def _noise_sd_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise :func:`noise_sd` for complete equal-length series.

    Returns the estimates and a flag telling which rest on the median (the
    others used a higher quantile or are 0).
    """
    N = X.shape[0]
    if X.shape[1] < 3:
        return np.zeros(N), np.zeros(N, dtype=bool)
    d = np.abs(np.diff(X, axis=1))
    # differences of grid data (e.g. 1/12 steps) can give 1e-16 instead of 0
    tiny = 1e-9 * np.maximum(1.0, np.max(np.abs(X), axis=1))
    sd = np.zeros(N)
    from_median = np.zeros(N, dtype=bool)
    for q in _NOISE_QUANTILES:
        est = np.quantile(d, q, axis=1) / (_NORMAL_Q[q] * math.sqrt(2.0))
        take = (sd == 0) & (est > tiny)
        sd[take] = est[take]
        if q == 0.5:
            from_median = take.copy()
    return sd, from_median


def bic_penalty(sigma, n, model: str = "l2", factor: float = 2.0, gamma=None):
    """BIC-type penalty per change point for a series of ``n`` scores with noise SD ``sigma``.

    With Gaussian noise of known SD, minus twice the log-likelihood of a
    segmentation is its residual sum of squares over ``sigma**2``, and each
    change point adds two parameters (a location and a new mean), so BIC
    charges ``2 * log(n)`` per change; on the scale of the l2 cost (the residual
    sum of squares) that is ``pen = factor * sigma**2 * log(n)`` with
    ``factor=2``.  The other cost models get the same criterion on their own
    scale:

    * ``l1`` (sum of absolute deviations; Laplace noise with scale
      ``b = sigma / sqrt(2)``): ``factor * log(n) * b / 2``;
    * ``normal`` (``m * log(variance)`` per segment; a change adds a location, a
      mean and a variance): ``1.5 * factor * log(n)``, independent of sigma;
    * ``rbf`` (Gaussian kernel ``exp(-gamma * d**2)``; for deviations small
      against the bandwidth its cost is ``2 * gamma * RSS``):
      ``factor * log(n) * 2 * gamma * sigma**2``.  ``gamma`` defaults to
      ``1 / (2 * (RBF_WIDTH * sigma)**2)``.

    Parameters
    ----------
    sigma : float or array_like
        Noise SD (> 0).
    n : int or array_like
        Number of observed scores.
    model : {"l2", "l1", "rbf", "normal"}
    factor : float, default 2.0
        Multiplier of ``log(n)`` (2 = BIC; larger values give fewer change points).
    gamma : float or array_like, optional
        rbf kernel parameter (only for ``model="rbf"``).

    Returns
    -------
    float or numpy.ndarray

    Examples
    --------
    >>> round(bic_penalty(0.2, 20), 4)   # 2 * 0.04 * log(20)
    0.2397
    >>> round(bic_penalty(0.2, 20, model="normal"), 4)
    8.9872
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    logn = np.log(np.asarray(n, dtype=np.float64))
    if model == "l2":
        pen = factor * sigma**2 * logn
    elif model == "l1":
        pen = factor * logn * (sigma / math.sqrt(2.0)) / 2.0
    elif model == "normal":
        pen = 1.5 * factor * logn * np.ones_like(sigma)
    elif model == "rbf":
        g = 1.0 / (2.0 * (RBF_WIDTH * sigma) ** 2) if gamma is None else np.asarray(gamma)
        pen = factor * logn * 2.0 * g * sigma**2
    else:
        raise AllianceDataError(_bad_choice("model", model, MODELS))
    return float(pen) if pen.ndim == 0 else pen


def _bad_choice(name: str, value, allowed: Sequence[str]) -> str:
    return f"{name}={value!r} is not supported; use one of {', '.join(map(repr, allowed))}."


# --------------------------------------------------------------------------- segmentation
@dataclass
class ChangepointSegmenter:
    """One-series segmentation with ruptures, ruptures-style: ``fit(signal).predict(...)``.

    Parameters
    ----------
    model : {"l2", "l1", "rbf", "normal"}
        Cost model.
    search : {"pelt", "binseg", "bottomup", "dynp", "kernelcpd"}
        Search method.  ``"dynp"`` needs ``n_bkps``; ``"pelt"`` with ``n_bkps``
        switches to ``"dynp"`` (PELT cannot fix the number of changes);
        ``"kernelcpd"`` supports ``l2`` (linear kernel) and ``rbf``.
    min_size : int, default 1
        Minimum segment length (raised to the cost's own minimum, 2 for ``normal``).
    jump : int, default 1
        Grid of admissible change points (ruptures' default 5 misses short dips).
    params : dict, optional
        Parameters of the cost (e.g. ``{"gamma": 2.0}`` for rbf).

    Examples
    --------
    >>> seg = ChangepointSegmenter().fit([4.0, 4.1, 3.9, 2.0, 2.1, 4.0, 4.1])
    >>> seg.predict(pen=0.5)
    [3, 5, 7]
    >>> seg.predict(n_bkps=1)
    [3, 7]
    """

    model: str = "l2"
    search: str = "pelt"
    min_size: int = 1
    jump: int = 1
    params: dict | None = None
    signal: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise AllianceDataError(_bad_choice("model", self.model, MODELS))
        if self.search not in SEARCHES:
            raise AllianceDataError(_bad_choice("search", self.search, SEARCHES))
        if self.search == "kernelcpd" and self.model not in ("l2", "rbf"):
            raise AllianceDataError(
                f"search='kernelcpd' supports model='l2' (linear kernel) or 'rbf', "
                f"not {self.model!r}; choose another search or model."
            )
        if int(self.min_size) < 1 or int(self.jump) < 1:
            raise AllianceDataError("min_size and jump must be positive integers.")

    def fit(self, signal) -> ChangepointSegmenter:
        """Store one series (1-D, no missing values)."""
        arr = np.asarray(signal, dtype=np.float64)
        if arr.ndim != 1 or not np.all(np.isfinite(arr)):
            raise AllianceDataError("segment one 1-D series of observed (non-missing) scores.")
        self.signal = arr
        return self

    def _algo(self, search: str):
        import ruptures as rpt  # noqa: PLC0415 (import cost only when used)

        if search == "kernelcpd":
            kernel = "linear" if self.model == "l2" else "rbf"
            return rpt.KernelCPD(kernel=kernel, min_size=self.min_size, params=self.params)
        cls = {"pelt": rpt.Pelt, "binseg": rpt.Binseg, "bottomup": rpt.BottomUp,
               "dynp": rpt.Dynp}[search]
        return cls(model=self.model, min_size=self.min_size, jump=self.jump, params=self.params)

    def predict(self, pen: float | None = None, n_bkps: int | None = None) -> list[int]:
        """Breakpoints (ends of segments, the last one is ``len(signal)``).

        Give ``pen`` (penalty per change) or ``n_bkps`` (number of changes; capped
        at what the series length allows).  Series too short for any change get
        ``[len(signal)]``.
        """
        import ruptures as rpt  # noqa: PLC0415

        if self.signal is None:
            raise AllianceDataError("call fit(signal) before predict().")
        n = self.signal.size
        search = self.search
        if n_bkps is not None:
            if search == "pelt":
                search = "dynp"
            n_bkps = min(int(n_bkps), self._max_bkps(n))
            if n_bkps <= 0:
                return [n]
        elif pen is None:
            raise AllianceDataError("give a penalty (pen=...) or a number of changes (n_bkps=...).")
        elif search == "dynp":
            raise AllianceDataError(
                "search='dynp' fixes the number of changes: give n_bkps=..., "
                "or use search='pelt' for a penalty."
            )
        algo = self._algo(search)
        min_size = max(self.min_size, algo.min_size if hasattr(algo, "min_size") else 1)
        if n < 2 * min_size:
            return [n]
        try:
            algo.fit(self.signal)
            if n_bkps is not None:
                return [int(b) for b in algo.predict(n_bkps=n_bkps)]
            return [int(b) for b in algo.predict(pen=pen)]
        except rpt.exceptions.BadSegmentationParameters:
            return [n]

    def _max_bkps(self, n: int) -> int:
        step = max(self.min_size, 2 if self.model == "normal" else 1)
        step = math.ceil(step / self.jump) * self.jump
        return max(0, (n - step) // step)


def _segment_chunk(args) -> list[list[int]]:
    signals, pens, gammas, n_bkps, config = args
    out = []
    for x, p, g in zip(signals, pens, gammas, strict=True):
        cfg = config if g is None else {**config, "params": {**(config["params"] or {}),
                                                             "gamma": float(g)}}
        seg = ChangepointSegmenter(**cfg).fit(x)
        out.append(seg.predict(pen=None if n_bkps is not None else float(p), n_bkps=n_bkps))
    return out


def _segment_ruptures(signals, pens, gammas, n_bkps, config, n_jobs: int) -> list[list[int]]:
    """Segment every series with ruptures, in ``n_jobs`` processes (order kept)."""
    if n_jobs is None or n_jobs == 0:
        n_jobs = 1
    if n_jobs < 0:
        n_jobs = max(1, (os.cpu_count() or 1) + 1 + n_jobs)
    if n_jobs == 1 or len(signals) < 2 * n_jobs:
        return _segment_chunk((signals, pens, gammas, n_bkps, config))
    size = math.ceil(len(signals) / (4 * n_jobs))
    tasks = [(signals[i:i + size], pens[i:i + size], gammas[i:i + size], n_bkps, config)
             for i in range(0, len(signals), size)]
    with ProcessPoolExecutor(max_workers=n_jobs) as ex:
        parts = list(ex.map(_segment_chunk, tasks))  # map keeps the order: deterministic
    return [b for part in parts for b in part]


# --------------------------------------------------------------------------- episodes
def episodes_from_segments(values, sessions, bkps, *, min_shift: float,
                           repair_fraction: float = 0.5,
                           higher_is_better: bool = True) -> list[dict]:
    """Read rupture-repair episodes off one patient's segmentation.

    Parameters
    ----------
    values, sessions : array_like
        The patient's observed scores and their session numbers.
    bkps : list of int
        Breakpoints as ruptures returns them (segment ends; last = ``len(values)``).
    min_shift : float
        Minimum drop between consecutive segment means (scale units) that opens
        a rupture.
    repair_fraction : float, default 0.5
        Fraction of the drop (pre-rupture mean minus lowest segment mean so far)
        a later segment mean must regain to repair the rupture.
    higher_is_better : bool, default True
        False mirrors everything (a rupture is a rise).

    Returns
    -------
    list of dict
        One dict per episode with the score-based columns of the episode table.

    Examples
    --------
    >>> eps = episodes_from_segments([4, 4, 2, 2, 4], [1, 2, 3, 4, 5], [2, 4, 5],
    ...                              min_shift=1.0)
    >>> [(e["rupture_session"], e["nadir_level"], e["repair_session"]) for e in eps]
    [(3, 2.0, 5)]
    """
    if min_shift <= 0 or not np.isfinite(min_shift):
        raise AllianceDataError(f"min_shift must be a positive number, got {min_shift!r}.")
    if not 0 < repair_fraction <= 1:
        raise AllianceDataError(
            f"repair_fraction must be in (0, 1], got {repair_fraction!r}."
        )
    sign = 1.0 if higher_is_better else -1.0
    y = sign * np.asarray(values, dtype=np.float64)
    sessions = np.asarray(sessions)
    ends = np.asarray(bkps, dtype=np.int64)
    starts = np.concatenate([[0], ends[:-1]])
    means = np.add.reduceat(y, starts) / (ends - starts)
    out: list[dict] = []
    k = len(means)
    i = 1
    while i < k:
        pre = means[i - 1]
        if pre - means[i] < min_shift:
            i += 1
            continue
        low = means[i]
        j = i + 1
        while j < k:
            low = min(low, means[j])
            if means[j] >= low + repair_fraction * (pre - low):
                break
            j += 1
        repaired = j < k
        first = starts[i]
        stop = starts[j] if repaired else len(y)
        nadir_idx = first + int(np.argmin(y[first:stop]))
        out.append({
            "rupture_session": sessions[first].item(),
            "nadir_session": sessions[nadir_idx].item(),
            "nadir_level": float(sign * y[nadir_idx]),
            "pre_level": float(sign * pre),
            "depth": float(pre - y[nadir_idx]),
            "repair_session": sessions[starts[j]].item() if repaired else np.nan,
            "repaired": repaired,
            "censored": not repaired,
        })
        i = j + 1
    return out


def _episodes_batch(values: np.ndarray, sessions: np.ndarray, starts: np.ndarray,
                    lengths: np.ndarray, bkps: Sequence[Sequence[int]], shifts: np.ndarray,
                    repair_fraction: float, higher_is_better: bool) -> dict[str, np.ndarray]:
    """:func:`episodes_from_segments` for every patient at once (no loop over patients).

    ``values``/``sessions`` hold all patients' observed scores back to back
    (patient *i* at ``starts[i]:starts[i] + lengths[i]``), ``bkps[i]`` their
    breakpoints and ``shifts[i]`` the minimum drop in scale units.  The
    segment state machine steps over segment positions, vectorised over
    patients; tests check it equals :func:`episodes_from_segments` patient by
    patient.  Returns episode columns plus ``row`` (the patient's index).
    """
    sign = 1.0 if higher_is_better else -1.0
    y = sign * values
    n_seg = np.fromiter((len(b) for b in bkps), dtype=np.int64, count=len(bkps))
    ends_rel = np.fromiter((e for b in bkps for e in b), dtype=np.int64, count=int(n_seg.sum()))
    pat_of_seg = np.repeat(np.arange(len(bkps)), n_seg)
    seg_end = starts[pat_of_seg] + ends_rel
    first_seg = np.concatenate([[0], np.cumsum(n_seg)[:-1]])
    seg_start = np.empty_like(seg_end)
    seg_start[1:] = seg_end[:-1]
    seg_start[first_seg] = starts
    # segments tile `values`, so reduceat adds exactly as the per-patient version does
    means = np.add.reduceat(y, seg_start) / (seg_end - seg_start)
    width = int(n_seg.max()) if len(n_seg) else 0
    k_in = np.arange(len(seg_end)) - first_seg[pat_of_seg]
    M = np.full((len(bkps), width), np.nan)
    M[pat_of_seg, k_in] = means
    B = np.zeros((len(bkps), width), dtype=np.int64)
    B[pat_of_seg, k_in] = seg_start

    n = len(bkps)
    is_open = np.zeros(n, dtype=bool)
    pre = np.zeros(n)
    low = np.zeros(n)
    rup = np.zeros(n, dtype=np.int64)
    rec_row, rec_rup, rec_rep, rec_pre = [], [], [], []
    for k in range(1, width):
        valid = k < n_seg
        m = M[:, k]
        low = np.where(is_open & valid, np.minimum(low, m), low)
        rep = is_open & valid & (m >= low + repair_fraction * (pre - low))
        idx = np.flatnonzero(rep)
        rec_row.append(idx)
        rec_rup.append(rup[idx])
        rec_rep.append(np.full(idx.size, k))
        rec_pre.append(pre[idx])
        is_open &= ~rep
        new = valid & ~is_open & ~rep & (M[:, k - 1] - m >= shifts)
        is_open |= new
        pre = np.where(new, M[:, k - 1], pre)
        low = np.where(new, m, low)
        rup = np.where(new, k, rup)
    idx = np.flatnonzero(is_open)
    rec_row.append(idx)
    rec_rup.append(rup[idx])
    rec_rep.append(np.full(idx.size, -1))
    rec_pre.append(pre[idx])
    row = np.concatenate(rec_row)
    rup_k = np.concatenate(rec_rup)
    rep_k = np.concatenate(rec_rep)
    pre_v = np.concatenate(rec_pre)
    order = np.lexsort((rup_k, row))
    row, rup_k, rep_k, pre_v = row[order], rup_k[order], rep_k[order], pre_v[order]
    repaired = rep_k >= 0
    first = B[row, rup_k]
    stop = np.where(repaired, B[row, np.maximum(rep_k, 0)], starts[row] + lengths[row])
    # nadir: first position of the lowest score in [first, stop)
    span = stop - first
    gather = np.repeat(first - np.concatenate([[0], np.cumsum(span)[:-1]]), span) + \
        np.arange(int(span.sum()))
    owner = np.repeat(np.arange(len(row)), span)
    g = y[gather]
    lows = np.minimum.reduceat(g, np.concatenate([[0], np.cumsum(span)[:-1]])) if len(row) \
        else np.zeros(0)
    at_low = np.flatnonzero(g == lows[owner])
    _, first_hit = np.unique(owner[at_low], return_index=True)
    nadir_idx = gather[at_low[first_hit]]
    return {
        "row": row,
        "rupture_session": sessions[first],
        "nadir_session": sessions[nadir_idx],
        "nadir_level": sign * y[nadir_idx],
        "pre_level": sign * pre_v,
        "depth": pre_v - y[nadir_idx],
        "repair_session": np.where(repaired, sessions[np.where(repaired, stop, 0)], np.nan),
        "repaired": repaired,
        "censored": ~repaired,
    }


def _validate(model, search, min_size, jump, n_bkps, shift_unit, penalty) -> None:
    if model not in MODELS:
        raise AllianceDataError(_bad_choice("model", model, MODELS))
    if search not in SEARCHES:
        raise AllianceDataError(_bad_choice("search", search, SEARCHES))
    if shift_unit not in ("sd", "scale"):
        raise AllianceDataError(_bad_choice("shift_unit", shift_unit, ("sd", "scale")))
    if not (isinstance(min_size, int | np.integer) and min_size >= 1):
        raise AllianceDataError(f"min_size must be a positive integer, got {min_size!r}.")
    if not (isinstance(jump, int | np.integer) and jump >= 1):
        raise AllianceDataError(f"jump must be a positive integer, got {jump!r}.")
    if n_bkps is not None and not (isinstance(n_bkps, int | np.integer) and n_bkps >= 0):
        raise AllianceDataError(f"n_bkps must be a non-negative integer, got {n_bkps!r}.")
    if isinstance(penalty, str):
        if penalty != "bic":
            raise AllianceDataError(
                f"penalty={penalty!r} is not supported; use 'bic' or a positive number."
            )
    elif not (np.isfinite(penalty) and penalty > 0):
        raise AllianceDataError(f"penalty must be 'bic' or a positive number, got {penalty!r}.")


def _pack(ad: AllianceData):
    """Rated scores of the analysed patients in patient blocks, and raw noise SDs."""
    frame = ad.analysed_frame
    frame = frame.loc[frame["alliance"].notna(), ["patient", "session", "alliance"]]
    if len(frame) == 0:
        return None
    codes, uniques = pd.factorize(frame["patient"], sort=False)
    values = frame["alliance"].to_numpy(dtype=np.float64)
    sessions = frame["session"].to_numpy()
    order = np.argsort(codes, kind="stable")  # frame is sorted already; be safe
    codes, values, sessions = codes[order], values[order], sessions[order]
    bounds = np.flatnonzero(np.diff(codes)) + 1
    starts = np.concatenate([[0], bounds])
    lengths = np.diff(np.concatenate([starts, [len(codes)]]))
    # noise SD per patient, vectorised within groups of equal length
    sigma = np.zeros(len(starts))
    from_median = np.zeros(len(starts), dtype=bool)
    groups: dict[int, np.ndarray] = {}
    for n in np.unique(lengths):
        idx = np.flatnonzero(lengths == n)
        groups[int(n)] = idx
        X = values[starts[idx][:, None] + np.arange(n)[None, :]]
        sigma[idx], from_median[idx] = _noise_sd_rows(X)
    reliable = from_median & (lengths >= MIN_NOISE_N)
    return codes, uniques, values, sessions, starts, lengths, groups, sigma, reliable


def _pool(sigma: np.ndarray, reliable: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    med = float(np.median(sigma[reliable])) if reliable.any() else np.nan
    return med, float(np.max(np.abs(values)))


def noise_statistics(data) -> tuple[np.ndarray, float]:
    """The reliable per-patient noise SDs and the largest absolute score of ``data``.

    :func:`detect_changepoint` pools these over the cohort (the median SD
    replaces unreliable estimates); the Dask engine collects them from every
    partition and passes the pooled values as ``noise_pool``.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"patient": 1, "session": range(1, 7),
    ...                    "alliance": [4.0, 4.2, 3.9, 4.1, 4.0, 4.3]})
    >>> sds, top = noise_statistics(df)
    >>> len(sds), top
    (1, 4.3)
    """
    packed = _pack(as_alliance_data(data))
    if packed is None:
        return np.zeros(0), 0.0
    values, sigma, reliable = packed[2], packed[7], packed[8]
    return sigma[reliable], float(np.max(np.abs(values)))


def detect_changepoint(
    data,
    *,
    penalty: str | float = "bic",
    model: str = "l2",
    min_size: int = 1,
    search: str = "pelt",
    n_bkps: int | None = None,
    min_shift: float = 2.0,
    shift_unit: str = "sd",
    repair_fraction: float = 0.5,
    n_jobs: int = 1,
    jump: int = 1,
    bic_factor: float = 2.0,
    params: dict | None = None,
    engine: str = "auto",
    noise_pool: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """Detect rupture-repair episodes by change-point segmentation of each patient.

    Called by ``at.detect_episodes(data, method="changepoint", ...)``.  Only
    analysed (non-excluded) patients are segmented; missing ratings are
    dropped, the observed scores segmented, and segments mapped back to their
    session numbers.  Patients without episodes have no rows.

    Parameters
    ----------
    data : AllianceData or pandas.DataFrame
        Alliance data (a canonical long DataFrame is accepted).
    penalty : "bic" or float, default "bic"
        Penalty per change point.  ``"bic"``: ``bic_factor * sigma**2 * log(n)``
        for the l2 cost, with ``sigma`` the patient's robust noise SD
        (:func:`noise_sd`; patients with fewer than ``MIN_NOISE_N`` = 5
        scores, or whose differences are mostly zero, get the median estimate
        of the other patients) and ``n`` their number of observed scores; see :func:`bic_penalty` for the other models.  A
        number is used as is for every patient.
    model : {"l2", "l1", "rbf", "normal"}, default "l2"
        Cost model.
    min_size : int, default 1
        Minimum segment length: 1 lets a single-session dip be its own segment.
    search : {"pelt", "binseg", "bottomup", "dynp", "kernelcpd"}, default "pelt"
        Search method (see :class:`ChangepointSegmenter`).
    n_bkps : int, optional
        Fixed number of change points per patient instead of a penalty
        (capped by the series length; ``search="pelt"`` then uses ``dynp``).
    min_shift : float, default 2.0
        Smallest drop between consecutive segment means that counts as a
        rupture: in units of the patient's noise SD (``shift_unit="sd"``) or in
        scale points (``shift_unit="scale"``).
    shift_unit : {"sd", "scale"}, default "sd"
    repair_fraction : float, default 0.5
        Fraction of the drop a later segment must regain to repair the rupture.
    n_jobs : int, default 1
        Processes for the ruptures path (-1: all cores).  Results do not depend
        on it.  The fast path runs in one process.
    jump : int, default 1
        ruptures' grid of admissible change points; keep 1 for short series.
    bic_factor : float, default 2.0
        Multiplier in the BIC penalty (larger: fewer change points).
    params : dict, optional
        Parameters of the ruptures cost (e.g. ``{"gamma": ...}`` for rbf).
    engine : {"auto", "fast", "ruptures"}, default "auto"
        ``"auto"`` uses the exact vectorised PELT (:mod:`alliancetrack.detection.pelt`)
        when it applies (l2 cost, ``search="pelt"``, ``jump=1``, a penalty rather
        than ``n_bkps``) and ruptures otherwise; ``"ruptures"`` forces ruptures;
        ``"fast"`` raises when the fast path does not apply.
    noise_pool : (float, float), optional
        The cohort-wide statistics the noise SDs use: the median of the
        reliable per-patient estimates (NaN if none) and the largest absolute
        score.  By default computed from ``data``; the Dask engine passes the
        values of the whole cohort (see :func:`noise_statistics`), so that
        each partition gives the same episodes as the whole data in memory.

    Returns
    -------
    pandas.DataFrame
        The episode table (``alliancetrack.EPISODE_COLUMNS``), ``method`` =
        ``"changepoint:<model>"``, ``source`` = ``"scores"``.

    Examples
    --------
    >>> import pandas as pd
    >>> scores = [4.0, 4.1, 3.9, 4.0, 2.1, 2.0, 2.2, 4.0, 3.9, 4.1]
    >>> df = pd.DataFrame({"patient": 1, "session": range(1, 11), "alliance": scores})
    >>> ep = detect_changepoint(df)
    >>> ep[["patient", "rupture_session", "nadir_level", "repair_session", "repaired"]]
       patient  rupture_session  nadir_level  repair_session  repaired
    0        1              5.0          2.0             8.0      True
    """
    _validate(model, search, min_size, jump, n_bkps, shift_unit, penalty)
    if engine not in ("auto", "fast", "ruptures"):
        raise AllianceDataError(_bad_choice("engine", engine, ("auto", "fast", "ruptures")))
    if min_shift <= 0:
        raise AllianceDataError(f"min_shift must be positive, got {min_shift!r}.")
    if not 0 < repair_fraction <= 1:
        raise AllianceDataError(f"repair_fraction must be in (0, 1], got {repair_fraction!r}.")
    ad: AllianceData = as_alliance_data(data)
    patient_dtype = ad.frame["patient"].dtype
    packed = _pack(ad)
    if packed is None:
        return empty_episodes(patient_dtype)
    codes, uniques, values, sessions, starts, lengths, groups, sigma, reliable = packed
    n_pat = len(starts)
    # own estimate when it is the median-based one from >= MIN_NOISE_N scores;
    # otherwise the median of those estimates over the other patients; when no
    # patient has one, the patient's own (quantile-based) estimate; else tiny
    pool, max_abs = noise_pool if noise_pool is not None else _pool(sigma, reliable, values)
    if np.isfinite(pool):
        sigma = np.where(reliable, sigma, pool)
    tiny = 1e-3 * max(1.0, max_abs)
    sigma = np.where(sigma > 0, sigma, tiny)  # all differences zero: flat series

    if isinstance(penalty, str):
        gamma = None
        if model == "rbf":
            gamma = (params or {}).get("gamma")
            if gamma is None:
                gamma = 1.0 / (2.0 * (RBF_WIDTH * sigma) ** 2)
        pens = np.asarray(bic_penalty(sigma, np.maximum(lengths, 2), model, bic_factor, gamma))
    else:
        gamma = None
        pens = np.full(n_pat, float(penalty))
    pens = np.broadcast_to(pens, (n_pat,))

    fast_ok = model == "l2" and search == "pelt" and jump == 1 and n_bkps is None
    if engine == "fast" and not fast_ok:
        raise AllianceDataError(
            "engine='fast' needs model='l2', search='pelt', jump=1 and a penalty "
            "(not n_bkps); use engine='auto' or 'ruptures'."
        )
    bkps: list[list[int] | None] = [None] * n_pat
    if fast_ok and engine != "ruptures":
        for n, idx in groups.items():
            if n < min_size:
                for i in idx:
                    bkps[i] = [n]
                continue
            X = values[starts[idx][:, None] + np.arange(n)[None, :]]
            mask = pelt_l2_batch(X, pens[idx], min_size)
            rows, cols = np.nonzero(mask)
            split = np.split(cols, np.flatnonzero(np.diff(rows)) + 1)
            for i, b in zip(idx, split, strict=True):
                bkps[i] = b.tolist()
    else:
        signals = [values[s:s + n] for s, n in zip(starts, lengths, strict=True)]
        if model == "rbf" and gamma is not None and not (params or {}).get("gamma"):
            gammas = list(np.broadcast_to(gamma, (n_pat,)))  # noise-scaled bandwidth
        else:
            gammas = [None] * n_pat
        cfg = {"model": model, "search": search, "min_size": min_size, "jump": jump,
               "params": params}
        bkps = _segment_ruptures(signals, list(pens), gammas, n_bkps, cfg, n_jobs)

    multi = np.flatnonzero([len(b) >= 2 for b in bkps])  # one segment: no shift, no episode
    if multi.size == 0:
        return empty_episodes(patient_dtype)
    shifts = min_shift * sigma[multi] if shift_unit == "sd" else np.full(multi.size,
                                                                          float(min_shift))
    # the chosen patients' scores back to back (positions relative to their own starts)
    take = np.concatenate([np.arange(starts[i], starts[i] + lengths[i]) for i in multi])
    sub_starts = np.concatenate([[0], np.cumsum(lengths[multi])[:-1]])
    eps = _episodes_batch(values[take], np.asarray(sessions)[take], sub_starts, lengths[multi],
                          [bkps[i] for i in multi], shifts, repair_fraction, ad.higher_is_better)
    if len(eps["row"]) == 0:
        return empty_episodes(patient_dtype)
    rows = multi[eps.pop("row")]
    df = pd.DataFrame({"patient": uniques[codes[starts[rows]]], **eps})
    df["method"] = f"changepoint:{model}"
    df["source"] = "scores"
    return finalize_episodes(df, patient_dtype=patient_dtype)
