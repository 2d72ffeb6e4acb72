"""Segmentation of alliance series into constant-level segments (used by change points).

The robust noise SD of a patient's series (:func:`noise_sd`, :func:`noise_statistics`),
the BIC-type penalty per change point (:func:`bic_penalty`), and
:class:`ChangepointSegmenter`, a one-series wrapper around the ``ruptures``
package (Truong, Oudre & Vayatis, 2020) with the defaults short alliance series
need (``jump=1``, ``min_size=1``).  :mod:`alliancetrack.detection.changepoint`
reads rupture-repair episodes off the segments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from alliancetrack.detection.base import worker_count
from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.alliance import AllianceData, as_alliance_data

__all__ = [
    "MIN_NOISE_N",
    "MODELS",
    "RBF_WIDTH",
    "SEARCHES",
    "ChangepointSegmenter",
    "bic_penalty",
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
    n_jobs = worker_count(n_jobs)
    if n_jobs == 1 or len(signals) < 2 * n_jobs:
        return _segment_chunk((signals, pens, gammas, n_bkps, config))
    size = math.ceil(len(signals) / (4 * n_jobs))
    tasks = [(signals[i:i + size], pens[i:i + size], gammas[i:i + size], n_bkps, config)
             for i in range(0, len(signals), size)]
    with ProcessPoolExecutor(max_workers=n_jobs) as ex:
        parts = list(ex.map(_segment_chunk, tasks))  # map keeps the order: deterministic
    return [b for part in parts for b in part]


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


