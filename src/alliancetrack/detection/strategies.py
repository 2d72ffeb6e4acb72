"""Link 3RS resolution strategies to rupture episodes (:func:`link_strategies`).

:mod:`alliancetrack.reading.strategies` reads the strategies; this module
joins them to the episodes of any detector, counts them per patient
(:func:`strategy_counts`, used by :func:`alliancetrack.episode_predictors`) and
gives repair rates by strategy (:func:`repair_rates`).

Episodes come from any source (alliance scores, PSQ, 3RS markers); the
strategies from :func:`alliancetrack.read_3rs` with ``strategy=``.  The link is
by patient and session: the strategies used from the rupture session up to
``window`` sessions later, never after the repair.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.alliance import _listing, therapist_of
from alliancetrack.reading.reported import ObserverData
from alliancetrack.reading.strategies import STRATEGIES, STRATEGY_CLASSES

__all__ = ["link_strategies", "strategy_counts", "repair_rates", "LINK_COLUMNS"]

#: Leading columns of :func:`link_strategies` (``therapist`` and ``rater`` follow when known).
LINK_COLUMNS: tuple[str, ...] = (
    "patient", "episode", "method", "rupture_session", "repair_session", "repaired",
    "window_end", "sessions_coded", "n_strategies", "n_immediate", "n_expressive", "strategies",
)
_NEEDED = ("patient", "episode", "method", "rupture_session", "repair_session", "repaired")
_CARRIED = ("rater", "source", "type", "intensity", "censored")


def _check_window(window) -> int:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 0:
        raise ValueError(f"window must be a whole number of sessions >= 0, got {window!r}.")
    return int(window)


def _classes(classes: Mapping[str, str] | None) -> dict[str, str]:
    out = {s.name: s.strategy_class for s in STRATEGIES.values()}
    if classes is None:
        return out
    if not isinstance(classes, Mapping):
        raise ValueError("classes= must map strategy names to 'immediate' or 'expressive', got "
                         f"{type(classes).__name__}.")
    unknown = sorted(set(classes) - set(out))
    if unknown:
        raise ValueError(f"classes= names unknown strateg(ies) {unknown}; known: {sorted(out)}.")
    bad = {k: v for k, v in classes.items() if v not in STRATEGY_CLASSES}
    if bad:
        raise ValueError(f"classes= must give 'immediate' or 'expressive'; got {bad}.")
    return {**out, **classes}


def _check_inputs(episodes, codes) -> None:
    if not isinstance(episodes, pd.DataFrame):
        raise TypeError("episodes must be an episode table (DataFrame from "
                        f"alliancetrack.detect_episodes), got {type(episodes).__name__}.")
    if not isinstance(codes, ObserverData):
        raise TypeError("codes must be 3RS codes from alliancetrack.read_3rs(..., strategy=...), "
                        f"got {type(codes).__name__}.")
    if codes.strategies is None:
        raise AllianceDataError("These 3RS codes carry no resolution strategies; read them with "
                                "alliancetrack.read_3rs(..., strategy='<column>').")
    missing = [c for c in _NEEDED if c not in episodes.columns]
    if missing:
        raise AllianceDataError(f"The episode table lacks column(s) {missing}; pass the output "
                                "of alliancetrack.detect_episodes.")
    if len(episodes) and not episodes["patient"].isin(codes.patients).any():
        raise AllianceDataError(
            "None of the episodes' patients has 3RS codes: episode patients "
            f"{_listing(sorted(map(repr, pd.unique(episodes['patient']))))}; coded patients "
            f"{_listing(sorted(map(repr, codes.patients)))}. Check that the ids agree (type and "
            "spelling, e.g. 1 vs '001')."
        )


def link_strategies(episodes: pd.DataFrame, codes: ObserverData, window: int = 0, *,
                    classes: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The resolution strategies used in each rupture episode.

    For each episode the strategies coded from its rupture session up to
    ``window`` sessions later are counted, but never after the repair: the
    sessions ``rupture_session <= s <= min(rupture_session + window,
    repair_session)``.  Strategies coded in the repair session count (for a
    within-session repair, ``repair_session == rupture_session``, they are the
    strategies of that session).  Counts are segment-level uses (a strategy in
    three segments counts three).  With ``window > 0`` the windows of
    successive episodes may overlap; a strategy then counts for both.

    An episode whose rupture session was **not coded** gets missing counts
    (``<NA>``), not zeros; a coded rupture session without strategies gives
    zeros.  Later sessions of the window count when coded; ``sessions_coded``
    says how many of the window's sessions were.

    The 3RS codes strategies alongside markers, so strategy codes exist for
    the sessions observers coded; episodes from alliance scores or the PSQ
    link wherever their rupture session was coded (Eubanks, Muran & Safran
    2015; classes after Muran & Eubanks 2020).

    Parameters
    ----------
    episodes : pandas.DataFrame
        An episode table (any method).
    codes : ObserverData
        From :func:`alliancetrack.read_3rs` with ``strategy=``.
    window : int
        Sessions after the rupture session whose strategies count (0: only
        the rupture session).
    classes : mapping, optional
        Override the class of strategies, e.g. ``{"validate": "expressive"}``
        (default: :data:`alliancetrack.STRATEGIES`).

    Returns
    -------
    pandas.DataFrame
        One row per episode, columns :data:`LINK_COLUMNS` (``window_end``:
        the last session counted; ``strategies``: the distinct strategies in
        manual order joined by ``"; "``, ``""`` for none, missing when not
        coded; counts nullable integers) plus ``therapist`` (from the episodes
        or the codes, when known) and ``rater``, ``source``, ``type``,
        ``intensity``, ``censored`` when the episode table has them.

    Raises
    ------
    AllianceDataError
        Codes without strategies, an episode table without its columns, or no
        patient in common (ids that disagree).
    ValueError
        ``window`` not a whole number >= 0; bad ``classes``.

    Examples
    --------
    >>> import pandas as pd, alliancetrack as at
    >>> rows = pd.DataFrame({"patient": 1, "session": [3, 3, 4], "segment": [1, 2, 1],
    ...                      "type": ["W", None, None], "significance": [3, None, None],
    ...                      "resolution": [2, None, None],
    ...                      "strategy": ["clarify", "invite; disclose", "acknowledge"]})
    >>> codes = at.read_3rs(rows, resolution="resolution", strategy="strategy")
    >>> ep = pd.DataFrame({"patient": [1, 1], "episode": [1, 2], "method": "rules:x",
    ...                    "rupture_session": [3.0, 6.0], "repair_session": [5.0, None],
    ...                    "repaired": [True, False]})
    >>> at.link_strategies(ep, codes, window=1)[["episode", "n_immediate", "n_expressive",
    ...                                         "strategies"]]
       episode  n_immediate  n_expressive                              strategies
    0        1            1             3  clarify; invite; acknowledge; disclose
    1        2         <NA>          <NA>                                     <NA>
    """
    _check_inputs(episodes, codes)
    window = _check_window(window)
    klass = _classes(classes)
    ep = episodes.reset_index(drop=True)
    rupture, repair, end = _windows(ep, window)
    frame = pd.DataFrame({"_row": np.arange(len(ep)), "patient": ep["patient"].to_numpy(),
                          "_lo": rupture, "_hi": end})

    def in_window(table: pd.DataFrame) -> pd.DataFrame:
        m = frame.merge(table, on="patient", how="inner")
        s = m["session"].to_numpy(dtype="float64")
        return m.loc[(s >= m["_lo"].to_numpy()) & (s <= m["_hi"].to_numpy())]

    cov = codes.sessions[["patient", "session"]]
    coded_rows = in_window(cov)
    n_coded = np.bincount(coded_rows["_row"], minlength=len(ep))
    rupture_coded = np.zeros(len(ep), dtype=bool)
    rupture_coded[coded_rows.loc[coded_rows["session"].to_numpy(dtype="float64")
                                 == coded_rows["_lo"].to_numpy(), "_row"].to_numpy()] = True
    uses = codes.strategies[["patient", "session", "strategy", "number"]].assign(
        strategy_class=codes.strategies["strategy"].map(klass))
    used = in_window(uses)
    rows = used["_row"].to_numpy()

    def count(mask=None) -> pd.arrays.IntegerArray:
        c = np.bincount(rows if mask is None else rows[mask], minlength=len(ep))
        return pd.arrays.IntegerArray(c.astype("int64"), mask=~rupture_coded)

    cls = used["strategy_class"].to_numpy()
    text = _strategy_names(used, len(ep))
    out = pd.DataFrame({
        "patient": ep["patient"].to_numpy(), "episode": ep["episode"].to_numpy(),
        "method": ep["method"].to_numpy(), "rupture_session": rupture,
        "repair_session": repair, "repaired": ep["repaired"].astype("boolean").to_numpy(),
        "window_end": end, "sessions_coded": n_coded.astype("int64"),
        "n_strategies": count(), "n_immediate": count(cls == "immediate"),
        "n_expressive": count(cls == "expressive"),
        "strategies": pd.array(text.where(rupture_coded, None).to_numpy(), dtype="string"),
    })
    out["patient"] = out["patient"].astype(ep["patient"].dtype)
    therapist = _therapists(ep, codes)
    if therapist is not None:
        out.insert(3, "therapist", therapist)
    for c in _CARRIED:
        if c in ep.columns:
            out[c] = ep[c].to_numpy()
    out.attrs["window"] = window
    return out


def _windows(ep: pd.DataFrame, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rupture and repair sessions; the window end (``window`` later, never after the repair)."""
    rupture = pd.to_numeric(ep["rupture_session"]).to_numpy(dtype="float64")
    repair = pd.to_numeric(ep["repair_session"]).to_numpy(dtype="float64")
    rep = ep["repaired"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    end = rupture + window
    end = np.where(rep & ~np.isnan(repair), np.minimum(end, repair), end)
    return rupture, repair, end


def _strategy_names(used: pd.DataFrame, n_episodes: int) -> pd.Series:
    """Per episode, the strategies used in its window ("; "-joined, first use first)."""
    order = used.sort_values(["_row", "number", "strategy"], kind="stable", na_position="last")
    names = order.groupby("_row", sort=False)["strategy"].agg(
        lambda s: "; ".join(dict.fromkeys(s)))
    text = pd.Series("", index=range(n_episodes), dtype=object)
    text.loc[names.index] = names.to_numpy()
    return text


def _therapists(ep: pd.DataFrame, codes: ObserverData):
    if "therapist" in ep.columns:
        return ep["therapist"].to_numpy()
    th = therapist_of(codes.frame)
    return None if th is None else ep["patient"].map(th).to_numpy(dtype=object)


def strategy_counts(linked: pd.DataFrame, patients: pd.Index) -> pd.DataFrame:
    """Per-patient strategy counts over the episodes with coded rupture sessions.

    Columns ``patient, n_strategy_episodes`` (episodes whose rupture session
    was coded), ``n_strategies, n_immediate, n_expressive`` (sums; missing
    for a patient without such an episode).  Every patient of ``patients``
    appears once.

    Examples
    --------
    >>> import pandas as pd
    >>> from alliancetrack.detection.strategies import strategy_counts
    >>> linked = pd.DataFrame({"patient": [1, 1, 2], "n_strategies": pd.array([2, 1, None]),
    ...                        "n_immediate": pd.array([1, 1, None]),
    ...                        "n_expressive": pd.array([1, 0, None])})
    >>> strategy_counts(linked, pd.Index([1, 2, 3]))
       patient  n_strategy_episodes  n_strategies  n_immediate  n_expressive
    0        1                    2             3            2             1
    1        2                    0          <NA>         <NA>          <NA>
    2        3                    0          <NA>         <NA>          <NA>
    """
    cols = ("n_strategies", "n_immediate", "n_expressive")
    missing = [c for c in ("patient", *cols) if c not in linked.columns]
    if missing:
        raise AllianceDataError(f"The strategy table lacks column(s) {missing}; pass the output "
                                "of alliancetrack.link_strategies.")
    unknown = pd.unique(linked.loc[~linked["patient"].isin(patients), "patient"])
    if len(unknown):
        raise AllianceDataError(
            f"The strategy table names {len(unknown)} patient(s) not in the data: "
            f"{_listing(sorted(map(repr, unknown)))}. Link the episodes of these data."
        )
    coded = linked["n_strategies"].notna()
    g = linked.loc[coded].groupby("patient", sort=False)
    n_ep = g.size().reindex(patients, fill_value=0).to_numpy().astype("int64")
    out = pd.DataFrame({"patient": patients.to_numpy(), "n_strategy_episodes": n_ep})
    for c in cols:
        s = g[c].sum().reindex(patients).to_numpy(dtype="float64")
        out[c] = pd.array(np.where(n_ep > 0, s, np.nan)).astype("Int64")
    return out


def repair_rates(linked: pd.DataFrame, outcome: str = "repaired", by: str | None = None,
                 level: float = 0.95) -> pd.DataFrame:
    """Repair rate by strategy class used, with Wilson intervals.

    Episodes with a coded rupture session and a known outcome fall into
    ``"none"``, ``"immediate only"``, ``"expressive only"`` or ``"both"``.

    Returns ``[by,] strategy_class, n, repaired, rate, ci_low, ci_high``.

    Examples
    --------
    >>> import pandas as pd
    >>> from alliancetrack.detection.strategies import repair_rates
    >>> linked = pd.DataFrame({"n_immediate": pd.array([1, 0, 2, 0, None]),
    ...                        "n_expressive": pd.array([0, 1, 1, 0, None]),
    ...                        "repaired": [True, True, False, False, True]})
    >>> repair_rates(linked)[["strategy_class", "n", "repaired"]].values.tolist()
    [['none', 1, 0], ['immediate only', 1, 1], ['expressive only', 1, 1], ['both', 1, 0]]
    """
    need = ["n_immediate", "n_expressive", outcome] + ([by] if by else [])
    missing = [c for c in need if c not in linked.columns]
    if missing:
        raise AllianceDataError(f"Column(s) {missing} not in the linked table.")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}.")
    df = linked.loc[linked["n_immediate"].notna() & linked[outcome].notna()]
    ni = pd.to_numeric(df["n_immediate"]).to_numpy(dtype=float) > 0
    ne = pd.to_numeric(df["n_expressive"]).to_numpy(dtype=float) > 0
    labels = ["none", "immediate only", "expressive only", "both"]
    cls = np.select([~ni & ~ne, ni & ~ne, ~ni & ne], labels[:3], labels[3])
    y = df[outcome].astype("boolean").astype(bool).to_numpy()
    tab = pd.DataFrame({"k": cls, "y": y})
    if by:
        tab.insert(0, by, df[by].to_numpy())
    grp = tab.groupby(([by] if by else []) + ["k"], sort=False)["y"]
    out = pd.DataFrame({"n": grp.size(), "repaired": grp.sum()}).reset_index()
    out = out.rename(columns={"k": "strategy_class"})
    out["strategy_class"] = pd.Categorical(out["strategy_class"], categories=labels)
    out = out.sort_values(([by] if by else []) + ["strategy_class"]).reset_index(drop=True)
    z = stats.norm.ppf(0.5 + level / 2)
    n, k = out["n"].to_numpy(float), out["repaired"].to_numpy(float)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    out["rate"], out["ci_low"], out["ci_high"] = p, centre - half, centre + half
    out["n"] = out["n"].astype("int64")
    out["repaired"] = out["repaired"].astype("int64")
    return out
