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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from alliancetrack.detection.base import (
    Check,
    Detector,
    number,
    one_of,
    positive,
    register_detector,
    single_rater,
    whole,
)
from alliancetrack.detection.episodes import empty_episodes, finalize_episodes
from alliancetrack.detection.pelt import pelt_l2_batch
from alliancetrack.detection.segmentation import (
    MIN_NOISE_N,
    MODELS,
    RBF_WIDTH,
    SEARCHES,
    ChangepointSegmenter,
    _pack,
    _pool,
    _segment_ruptures,
    bic_penalty,
    noise_sd,
    noise_statistics,
)
from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.alliance import AllianceData, as_alliance_data

__all__ = [
    "MIN_NOISE_N",
    "MODELS",
    "SEARCHES",
    "ChangepointDetector",
    "ChangepointSegmenter",
    "bic_penalty",
    "detect_changepoint",
    "episodes_from_segments",
    "noise_sd",
    "noise_statistics",
]

_ENGINES = ("auto", "fast", "ruptures")


def _penalty_ok(value) -> bool:
    if isinstance(value, str):
        return value == "bic"
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and bool(np.isfinite(value)) and value > 0


@register_detector
@dataclass(frozen=True)
class ChangepointDetector(Detector):
    """Change-point detection of rupture-repair episodes (``method="changepoint"``).

    The parameters of :func:`detect_changepoint` as one frozen object; see
    there for their meaning.  ``n_jobs`` and ``engine`` change how the
    episodes are computed, not which: they are not compared and not part of
    the :attr:`label` (``"changepoint:<model>[<changed fields>]"``).

    Examples
    --------
    >>> import alliancetrack as at
    >>> det = at.ChangepointDetector(min_size=2)
    >>> det.label
    'changepoint:l2[min_size=2]'
    >>> at.detector_from_label(det.label) == det
    True
    """

    method: ClassVar[str] = "changepoint"
    name_field: ClassVar[str | None] = "model"
    error: ClassVar[type[Exception]] = AllianceDataError
    checks: ClassVar[dict[str, Check]] = {
        "model": one_of(*MODELS),
        "search": one_of(*SEARCHES),
        "penalty": Check(_penalty_ok, "be 'bic' or a positive number"),
        "min_size": whole(1),
        "jump": whole(1),
        "n_bkps": whole(0, optional=True),
        "min_shift": positive(),
        "shift_unit": one_of("sd", "scale"),
        "repair_fraction": positive(upper=1),
        "bic_factor": positive(),
        "n_jobs": number(),
        "engine": one_of(*_ENGINES),
    }

    model: str = "l2"
    penalty: str | float = "bic"
    min_size: int = 1
    search: str = "pelt"
    n_bkps: int | None = None
    min_shift: float = 2.0
    shift_unit: str = "sd"
    repair_fraction: float = 0.5
    jump: int = 1
    bic_factor: float = 2.0
    params: dict | None = None
    n_jobs: int = field(default=1, compare=False)
    engine: str = field(default="auto", compare=False)

    def _check_combination(self) -> None:
        if self.search == "kernelcpd" and self.model not in ("l2", "rbf"):
            raise AllianceDataError(
                f"search='kernelcpd' supports model='l2' (linear kernel) or 'rbf', "
                f"not {self.model!r}; choose another search or model."
            )
        if self.engine == "fast" and not self.fast_path:
            raise AllianceDataError(
                "engine='fast' needs model='l2', search='pelt', jump=1 and a penalty "
                "(not n_bkps); use engine='auto' or 'ruptures'."
            )

    @property
    def fast_path(self) -> bool:
        """Whether the exact vectorised PELT (:mod:`alliancetrack.detection.pelt`) applies."""
        return (self.model == "l2" and self.search == "pelt" and self.jump == 1
                and self.n_bkps is None)

    def detect(self, data, *, noise_pool: tuple[float, float] | None = None) -> pd.DataFrame:
        """Episodes of ``data`` (see :func:`detect_changepoint`)."""
        ad: AllianceData = as_alliance_data(data)
        single_rater(ad)
        patient_dtype = ad.frame["patient"].dtype
        packed = _pack(ad)
        if packed is None:
            return empty_episodes(patient_dtype)
        codes, uniques, values, sessions, starts, lengths, groups, sigma, reliable = packed
        sigma = _pooled_sigma(sigma, reliable, values, noise_pool)
        pens, gamma = self._penalties(sigma, lengths)
        bkps = self._breakpoints(values, starts, lengths, groups, pens, gamma)
        multi = np.flatnonzero([len(b) >= 2 for b in bkps])  # one segment: no episode
        if multi.size == 0:
            return empty_episodes(patient_dtype)
        shifts = (self.min_shift * sigma[multi] if self.shift_unit == "sd"
                  else np.full(multi.size, float(self.min_shift)))
        # the chosen patients' scores back to back (positions relative to their own starts)
        take = np.concatenate([np.arange(starts[i], starts[i] + lengths[i]) for i in multi])
        sub_starts = np.concatenate([[0], np.cumsum(lengths[multi])[:-1]])
        eps = _episodes_batch(values[take], np.asarray(sessions)[take], sub_starts,
                              lengths[multi], [bkps[i] for i in multi], shifts,
                              self.repair_fraction, ad.higher_is_better)
        if len(eps["row"]) == 0:
            return empty_episodes(patient_dtype)
        rows = multi[eps.pop("row")]
        df = pd.DataFrame({"patient": uniques[codes[starts[rows]]], **eps})
        df["method"] = self.label
        df["source"] = "scores"
        return finalize_episodes(df, patient_dtype=patient_dtype)

    def _penalties(self, sigma: np.ndarray, lengths: np.ndarray):
        """Penalty per patient, and the rbf bandwidth parameter (or None)."""
        n_pat = len(sigma)
        gamma = None
        if isinstance(self.penalty, str):
            if self.model == "rbf":
                gamma = (self.params or {}).get("gamma")
                if gamma is None:
                    gamma = 1.0 / (2.0 * (RBF_WIDTH * sigma) ** 2)
            pens = np.asarray(bic_penalty(sigma, np.maximum(lengths, 2), self.model,
                                          self.bic_factor, gamma))
        else:
            pens = np.full(n_pat, float(self.penalty))
        return np.broadcast_to(pens, (n_pat,)), gamma

    def _breakpoints(self, values, starts, lengths, groups, pens, gamma) -> list[list[int]]:
        """Breakpoints per patient: the exact vectorised PELT, or ruptures."""
        n_pat = len(starts)
        if self.fast_path and self.engine != "ruptures":
            bkps: list[list[int]] = [[] for _ in range(n_pat)]
            for n, idx in groups.items():
                if n < self.min_size:
                    for i in idx:
                        bkps[i] = [n]
                    continue
                X = values[starts[idx][:, None] + np.arange(n)[None, :]]
                mask = pelt_l2_batch(X, pens[idx], self.min_size)
                rows, cols = np.nonzero(mask)
                split = np.split(cols, np.flatnonzero(np.diff(rows)) + 1)
                for i, b in zip(idx, split, strict=True):
                    bkps[i] = b.tolist()
            return bkps
        signals = [values[s:s + n] for s, n in zip(starts, lengths, strict=True)]
        if self.model == "rbf" and gamma is not None and not (self.params or {}).get("gamma"):
            gammas = list(np.broadcast_to(gamma, (n_pat,)))  # noise-scaled bandwidth
        else:
            gammas = [None] * n_pat
        cfg = {"model": self.model, "search": self.search, "min_size": self.min_size,
               "jump": self.jump, "params": self.params}
        return _segment_ruptures(signals, list(pens), gammas, self.n_bkps, cfg, self.n_jobs)


def _pooled_sigma(sigma, reliable, values, noise_pool) -> np.ndarray:
    """Own noise SD when reliable, else the cohort's median estimate; never zero.

    Own estimate when it is the median-based one from >= MIN_NOISE_N scores;
    otherwise the median of those estimates over the other patients; when no
    patient has one, the patient's own (quantile-based) estimate; else tiny.
    """
    pool, max_abs = noise_pool if noise_pool is not None else _pool(sigma, reliable, values)
    if np.isfinite(pool):
        sigma = np.where(reliable, sigma, pool)
    tiny = 1e-3 * max(1.0, max_abs)
    return np.where(sigma > 0, sigma, tiny)  # all differences zero: flat series


# --------------------------------------------------------------------------- episodes
def episodes_from_segments(values, sessions, bkps, *, min_shift: float,
                           repair_fraction: float = 0.5,
                           higher_is_better: bool = True) -> list[dict]:
    """Read rupture-repair episodes off one patient's segmentation.

    The rules of the module notes, applied to one series; the same code
    :func:`detect_changepoint` runs for all patients at once.

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
    [(3, 2.0, 5.0)]
    """
    if not (np.isfinite(min_shift) and min_shift > 0):
        raise AllianceDataError(f"min_shift must be a positive number, got {min_shift!r}.")
    if not 0 < repair_fraction <= 1:
        raise AllianceDataError(f"repair_fraction must be in (0, 1], got {repair_fraction!r}.")
    y = np.asarray(values, dtype=np.float64)
    eps = _episodes_batch(y, np.asarray(sessions), np.array([0]), np.array([y.size]),
                          [list(bkps)], np.array([float(min_shift)]), repair_fraction,
                          higher_is_better)
    eps.pop("row")
    return [{k: v[i].item() for k, v in eps.items()} for i in range(len(eps["repaired"]))]


def _episodes_batch(values: np.ndarray, sessions: np.ndarray, starts: np.ndarray,
                    lengths: np.ndarray, bkps: Sequence[Sequence[int]], shifts: np.ndarray,
                    repair_fraction: float, higher_is_better: bool) -> dict[str, np.ndarray]:
    """Episodes of every patient's segmentation at once (no loop over patients).

    ``values``/``sessions`` hold all patients' observed scores back to back
    (patient *i* at ``starts[i]:starts[i] + lengths[i]``), ``bkps[i]`` their
    breakpoints and ``shifts[i]`` the minimum drop in scale units.  The
    segment state machine steps over segment positions, vectorised over
    patients; ``tests/test_changepoint.py`` checks it against a plain
    per-patient oracle (``tests/reference_changepoint.py``).  Returns episode columns plus ``row`` (the patient's index).
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
        the detector's label ``"changepoint:<model>"`` (plus the changed
        parameters, e.g. ``"changepoint:l2[min_shift=1.5]"``), ``source`` =
        ``"scores"``.

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
    detector = ChangepointDetector(
        model=model, penalty=penalty, min_size=min_size, search=search, n_bkps=n_bkps,
        min_shift=min_shift, shift_unit=shift_unit, repair_fraction=repair_fraction,
        jump=jump, bic_factor=bic_factor, params=params, n_jobs=n_jobs, engine=engine,
    )
    return detector.detect(data, noise_pool=noise_pool)
