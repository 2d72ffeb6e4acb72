"""Vectorised dip-and-recovery detection (the engine behind ``method="rules"``).

The rated scores of all patients are packed into one ``patients × positions``
matrix; the episode state machine then steps over positions (at most the
longest series, typically 10-40 steps) with every operation vectorised over
patients.  There is no Python loop over patients.

The semantics are documented in :mod:`alliancetrack.detection.rules`; the tests hold a
plain per-patient implementation of the same semantics that this engine must
agree with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.alliance import patient_codes
from alliancetrack.reading.scales import Scale

if TYPE_CHECKING:  # the rule objects call this engine; it only reads their fields
    from alliancetrack.detection.rules import DipRecoveryRule

__all__ = ["detect_rule_episodes", "pack_series", "rule_thresholds"]

#: Absolute tolerance for threshold comparisons (guards float rounding).
EPS = 1e-9


def pack_series(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pack the rated scores of a sorted long frame into padded matrices.

    Returns ``(ids, lengths, X, S)``: patient ids (one per row of the
    matrices), number of rated sessions, scores and session numbers, with
    NaN padding after each patient's last rated session.

    Examples
    --------
    >>> import pandas as pd
    >>> from alliancetrack.detection.rule_engine import pack_series
    >>> f = pd.DataFrame({"patient": [1, 1, 1, 2], "session": [1, 2, 4, 1],
    ...                   "alliance": [4.0, None, 3.0, 5.0]})
    >>> ids, lengths, X, S = pack_series(f)
    >>> ids.tolist(), lengths.tolist(), X.tolist(), S.tolist()
    ([1, 2], [2, 1], [[4.0, 3.0], [5.0, nan]], [[1.0, 4.0], [1.0, nan]])
    """
    rated = frame["alliance"].notna().to_numpy()
    pid = frame["patient"].to_numpy()[rated]
    scores = frame["alliance"].to_numpy(dtype="float64")[rated]
    sessions = frame["session"].to_numpy(dtype="float64")[rated]
    if len(pid) == 0:
        empty = np.empty((0, 0))
        return pid[:0], np.zeros(0, dtype=np.int64), empty, empty
    codes = patient_codes(pid)  # the frame is sorted by patient: one pass, no hashing
    first_rows = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    ids = pid[first_rows]
    lengths = np.diff(np.r_[first_rows, len(codes)]).astype(np.int64)
    pos = np.arange(len(codes), dtype=np.int64) - np.repeat(first_rows, lengths)
    width = int(lengths.max())
    flat = codes * width + pos
    X = np.full(len(ids) * width, np.nan)
    S = np.full(len(ids) * width, np.nan)
    X[flat] = scores
    S[flat] = sessions
    X = X.reshape(len(ids), width)
    S = S.reshape(len(ids), width)
    return np.asarray(ids), lengths, X, S


def rule_thresholds(rule: DipRecoveryRule, X: np.ndarray, lengths: np.ndarray,
                    scale: Scale | None, sample_sd: float | None = None) -> np.ndarray:
    """Per-patient dip threshold in scale points (NaN for ``unit="percent"``).

    ``sample_sd``: the SD of all analysed ratings, when computed elsewhere (the
    Dask engine computes it over the whole cohort); by default from ``X``.

    Examples
    --------
    >>> import numpy as np, alliancetrack as at
    >>> from alliancetrack.detection.rule_engine import rule_thresholds
    >>> X = np.array([[4.0, 3.0, 5.0], [2.0, 2.0, np.nan]])
    >>> rule_thresholds(at.PRESETS["stiles-2sd"], X, np.array([3, 2]), None).round(3).tolist()
    [2.0, 0.0]
    """
    n = X.shape[0]
    if rule.unit == "points":
        return np.full(n, float(rule.threshold))
    if rule.unit == "percent":
        return np.full(n, np.nan)
    if sample_sd is None:
        observed = X[~np.isnan(X)]
        sample_sd = float(np.std(observed, ddof=1)) if observed.size > 1 else np.nan
    if rule.unit == "sample_sd":
        return np.full(n, rule.threshold * sample_sd)
    if rule.unit == "rci":
        if scale is None or scale.reliability is None:
            raise AllianceDataError(
                f"Rule {rule.name!r} uses a reliable-change threshold, which needs the scale's "
                "reliability: pass scale='wai-sr' (or another name from at.SCALES) to "
                "read_alliance, or scale=at.Scale(name, low, high, reliability=...)."
            )
        sd = scale.sd if scale.sd is not None else sample_sd
        return np.full(n, rule.threshold * 1.96 * sd * np.sqrt(2 * (1 - scale.reliability)))
    mean = np.nanmean(X, axis=1) if X.size else np.zeros(n)
    with np.errstate(invalid="ignore", divide="ignore"):
        within = np.sqrt(np.nansum((X - mean[:, None]) ** 2, axis=1) / (lengths - 1))
    if rule.unit == "within_sd":
        return rule.threshold * within
    return rule.threshold * np.maximum(within, sample_sd)  # max_sd


def _reference(rule: DipRecoveryRule, t: int, X: np.ndarray, lb: np.ndarray,
               patient_mean: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Reference level at position ``t`` for ``rows``, using positions >= lb only.

    Window means are summed directly (not from cumulative sums) so that a
    one-session reference is exactly the previous score.
    """
    if rule.reference == "patient_mean":
        return patient_mean[rows]
    k = rule.reference_sessions if rule.reference == "mean_previous" else 1
    lo_bound = lb[rows]
    best = np.full(len(rows), -np.inf)
    for d in range(1, rule.decline_sessions + 1):
        j = t - d
        if j < 0:
            break
        total = np.zeros(len(rows))
        count = np.zeros(len(rows))
        for m in range(k):
            if j - m < 0:
                break
            use = (j - m) >= lo_bound
            total += np.where(use, X[rows, j - m], 0.0)
            count += use
        with np.errstate(invalid="ignore", divide="ignore"):
            level = total / count
        best = np.where((count > 0) & (level > best), level, best)
    return best


def detect_rule_episodes(frame: pd.DataFrame, rule: DipRecoveryRule, scale: Scale | None,
                         higher_is_better: bool = True,
                         sample_sd: float | None = None) -> pd.DataFrame:
    """Detect episodes for every patient of a sorted canonical long frame.

    ``frame`` must hold only the patients to analyse (one rater), sorted by
    patient then session.  Returns the raw episode columns (without
    ``episode`` numbering; see :func:`alliancetrack.detect_episodes`).
    ``sample_sd`` is passed to :func:`rule_thresholds`.

    Examples
    --------
    >>> import pandas as pd, alliancetrack as at
    >>> from alliancetrack.detection.rule_engine import detect_rule_episodes
    >>> f = pd.DataFrame({"patient": 1, "session": range(1, 7),
    ...                   "alliance": [4.0, 4.0, 2.0, 3.0, 4.0, 4.0]})
    >>> ep = detect_rule_episodes(f, at.PRESETS["strauss-1sd"], None)
    >>> ep[["rupture_session", "repair_session", "depth"]].values.tolist()
    [[3.0, 5.0, 2.0]]
    """
    ids, lengths, X, S = pack_series(frame)
    sign = 1.0 if higher_is_better else -1.0
    delta = rule_thresholds(rule, X, lengths, scale, sample_sd)
    Xs = sign * X
    n, width = Xs.shape
    patient_mean = np.nansum(Xs, axis=1) / np.maximum(lengths, 1)

    is_open = np.zeros(n, dtype=bool)
    rup = np.zeros(n, dtype=np.int64)
    pre = np.zeros(n)
    nad = np.zeros(n)
    nad_idx = np.zeros(n, dtype=np.int64)
    lb = np.zeros(n, dtype=np.int64)
    out: dict[str, list[np.ndarray]] = {k: [] for k in
                                        ("code", "rup", "nad_idx", "pre", "nad", "rep", "cens")}

    def record(mask: np.ndarray, rep_idx, censored) -> None:
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            return
        out["code"].append(idx)
        out["rup"].append(rup[idx])
        out["nad_idx"].append(nad_idx[idx])
        out["pre"].append(pre[idx])
        out["nad"].append(nad[idx])
        out["rep"].append(np.broadcast_to(np.asarray(rep_idx), idx.shape).copy()
                          if np.ndim(rep_idx) == 0 else np.asarray(rep_idx)[idx])
        out["cens"].append(np.broadcast_to(np.asarray(censored), idx.shape).copy()
                           if np.ndim(censored) == 0 else np.asarray(censored)[idx])

    all_rows = np.arange(n)
    f = rule.recovery_fraction
    window = rule.repair_window
    eligible = lengths >= rule.min_timepoints
    for t in range(1, width):
        valid = eligible & (t < lengths)
        x = Xs[:, t]
        s = S[:, t]
        if window is not None:
            rup_s = S[all_rows, rup]
            expired = is_open & valid & (s - rup_s > window)
            record(expired, -1, False)
            is_open &= ~expired
            lb = np.where(expired, t - 1, lb)
        repaired = is_open & valid & (x >= nad + f * (pre - nad) - EPS)
        record(repaired, t, False)
        is_open &= ~repaired
        lb = np.where(repaired, t, lb)
        lower = is_open & valid & (x < nad)
        nad = np.where(lower, x, nad)
        nad_idx = np.where(lower, t, nad_idx)

        cand = np.flatnonzero(valid & ~is_open & ~repaired)
        if cand.size == 0:
            continue
        ref = _reference(rule, t, Xs, lb, patient_mean, cand)
        drop = ref - x[cand]
        thr = np.abs(ref) * rule.threshold / 100 if rule.unit == "percent" else delta[cand]
        new = (drop >= thr - EPS) & (drop > EPS) & np.isfinite(ref)
        hit = cand[new]
        is_open[hit] = True
        rup[hit] = t
        pre[hit] = ref[new]
        nad[hit] = x[hit]
        nad_idx[hit] = t
    if is_open.any():
        last_s = S[all_rows, np.maximum(lengths - 1, 0)]
        rup_s = S[all_rows, rup]
        cens = np.ones(n, dtype=bool) if window is None else (last_s - rup_s < window)
        record(is_open, -1, cens)

    if out["code"]:
        code = np.concatenate(out["code"])
        rup_i = np.concatenate(out["rup"])
        nad_i = np.concatenate(out["nad_idx"])
        pre_v = np.concatenate(out["pre"]) * sign
        nad_v = np.concatenate(out["nad"]) * sign
        rep_i = np.concatenate(out["rep"]).astype(np.int64)
        cens = np.concatenate(out["cens"]).astype(bool)
    else:
        code = rup_i = nad_i = rep_i = np.zeros(0, dtype=np.int64)
        pre_v = nad_v = np.zeros(0)
        cens = np.zeros(0, dtype=bool)
    repaired_flag = rep_i >= 0
    rep_session = np.where(repaired_flag, S[code, np.maximum(rep_i, 0)], np.nan)
    return pd.DataFrame({
        "patient": ids[code] if len(ids) else np.array([], dtype=object),
        "method": rule.label,
        "rupture_session": S[code, rup_i] if len(code) else np.zeros(0),
        "nadir_session": S[code, nad_i] if len(code) else np.zeros(0),
        "nadir_level": nad_v,
        "pre_level": pre_v,
        "depth": (pre_v - nad_v) * sign,
        "repair_session": rep_session,
        "repaired": repaired_flag,
        "censored": cens,
    })
