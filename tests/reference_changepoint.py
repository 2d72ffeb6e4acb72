"""A plain per-patient reading of episodes off a change-point segmentation.

The test oracle for :mod:`alliancetrack.detection.changepoint`: one patient at a
time, with Python loops over the segments, sharing no code with the vectorised
production mapping (``_episodes_batch``) that ``episodes_from_segments`` and
``detect_changepoint`` use.  ``tests/test_changepoint.py`` checks with hypothesis
that both agree exactly.
"""

from __future__ import annotations

import numpy as np


def segment_episodes(values, sessions, bkps, *, min_shift: float,
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

    """
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

