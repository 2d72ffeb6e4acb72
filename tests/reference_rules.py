"""A plain per-patient implementation of the dip-and-recovery semantics.

This is the reference the vectorised engine must agree with (see
``alliancetrack.detection.rules`` for the semantics).  It is written for clarity, one
patient at a time with ``groupby().apply``, and shares no code with the engine.
It is also used by ``benchmarks/bench_rules.py`` as the slow baseline.
"""

from __future__ import annotations

import math
import statistics

import pandas as pd

EPS = 1e-9
COLUMNS = ["patient", "rupture_session", "nadir_session", "nadir_level", "pre_level", "depth",
           "repair_session", "repaired", "censored"]


def _reference_level(rule, x, t, lb):
    if rule.reference == "patient_mean":
        return sum(x) / len(x)
    k = rule.reference_sessions if rule.reference == "mean_previous" else 1
    best = None
    for d in range(1, rule.decline_sessions + 1):
        j = t - d
        if j < 0 or j < lb:
            break
        lo = max(j - k + 1, lb)
        level = sum(x[lo:j + 1]) / (j + 1 - lo)
        if best is None or level > best:
            best = level
    return best


def _one_patient(g, rule, sample_sd, scale, sign):
    g = g[g["alliance"].notna()]
    x = [sign * v for v in g["alliance"].tolist()]
    s = g["session"].astype(float).tolist()
    n = len(x)
    rows = []
    if n < rule.min_timepoints:
        return rows
    within = statistics.stdev(x) if n > 1 else math.nan
    unit = {
        "points": 1.0,
        "within_sd": within,
        "sample_sd": sample_sd,
        "max_sd": max(within, sample_sd),
        "percent": math.nan,
    }.get(rule.unit)
    if rule.unit == "rci":
        sd = scale.sd if scale.sd is not None else sample_sd
        unit = 1.96 * sd * math.sqrt(2 * (1 - scale.reliability))
    window = rule.repair_window
    lb = 0
    ep = None  # dict of the open episode

    def close(rep_t, censored):
        rows.append({
            "rupture_session": s[ep["rup"]], "nadir_session": s[ep["nad_t"]],
            "nadir_level": sign * ep["nad"], "pre_level": sign * ep["pre"],
            "depth": ep["pre"] - ep["nad"],
            "repair_session": s[rep_t] if rep_t is not None else math.nan,
            "repaired": rep_t is not None, "censored": censored,
        })

    for t in range(1, n):
        if ep is not None:
            if window is not None and s[t] - s[ep["rup"]] > window:
                close(None, False)
                ep = None
                lb = t - 1
            elif x[t] >= ep["nad"] + rule.recovery_fraction * (ep["pre"] - ep["nad"]) - EPS:
                close(t, False)
                ep = None
                lb = t
                continue
            else:
                if x[t] < ep["nad"]:
                    ep["nad"], ep["nad_t"] = x[t], t
                continue
        ref = _reference_level(rule, x, t, lb)
        if ref is None:
            continue
        threshold = abs(ref) * rule.threshold / 100 if rule.unit == "percent" \
            else rule.threshold * unit
        drop = ref - x[t]
        if drop >= threshold - EPS and drop > EPS:
            ep = {"rup": t, "pre": ref, "nad": x[t], "nad_t": t}
    if ep is not None:
        close(None, True if window is None else s[-1] - s[ep["rup"]] < window)
    return rows


def reference_episodes(frame: pd.DataFrame, rule, scale=None, higher_is_better=True):
    """Episodes of every patient of a canonical long frame, one patient at a time."""
    sign = 1.0 if higher_is_better else -1.0
    rated = frame["alliance"].dropna() * sign
    sample_sd = rated.std(ddof=1) if len(rated) > 1 else math.nan
    per_patient = frame.groupby("patient", sort=True)[["session", "alliance"]].apply(
        lambda g: _one_patient(g, rule, sample_sd, scale, sign)
    )
    rows = [dict(r, patient=p) for p, eps in per_patient.items() for r in eps]
    return pd.DataFrame(rows, columns=COLUMNS)
