"""Agreement between rupture measurement sources: scores, self-report (PSQ), observers (3RS).

What patients and therapists report agrees poorly with what observers code
(Eubanks, Muran & Safran 2018); :func:`source_agreement` puts any number of
episode tables side by side, pairwise, over the sessions both sources of a
pair cover.  The matching and kappa are those of
:func:`alliancetrack.compare_episodes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations

import numpy as np
import pandas as pd

from alliancetrack.agreement.compare import _prepare, cohen_kappa, compare_episodes
from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.alliance import AllianceData

__all__ = ["source_agreement", "AGREEMENT_COLUMNS"]

#: Columns of :func:`source_agreement`, in order.
AGREEMENT_COLUMNS: tuple[str, ...] = (
    "source_a", "source_b", "coverage", "n_patients", "n_sessions", "n_a", "n_b", "n_matched",
    "precision", "recall", "f1", "session_kappa", "patient_agreement", "patient_kappa",
    "n_group", "group_kappa", "repaired_kappa", "tolerance",
)


def _attrs_coverage(table: pd.DataFrame) -> pd.DataFrame | None:
    """``attrs["coverage"]`` left by detect_episodes for self-report and observer tables."""
    cov = table.attrs.get("coverage")
    return None if cov is None else pd.DataFrame(cov)


def _rater_of(table: pd.DataFrame):
    if "rater" in table.columns:
        raters = table["rater"].dropna().unique().tolist()
        if len(raters) == 1:
            return raters[0]
        if len(raters) > 1:
            return raters
    return None


def _coverage_of(name: str, table: pd.DataFrame, given) -> pd.DataFrame | None:
    """The sessions a source covers, ``patient, session`` (float), or None when unknown."""
    rater = _rater_of(table)
    if isinstance(rater, list):
        raise AllianceDataError(
            f"Source {name!r} holds episodes of several raters {rater}; pass one table per "
            "rater (e.g. ep[ep['rater'] == 'patient']), or the whole table alone for "
            "patient-vs-therapist agreement."
        )
    if given is None:
        cov = _attrs_coverage(table)
    elif isinstance(given, AllianceData):
        f = given.analysed_frame
        cov = f.loc[f["alliance"].notna(), ["patient", "session"]]
    elif hasattr(given, "coverage"):  # PSQData, ObserverData
        cov = given.coverage
    elif isinstance(given, pd.DataFrame):
        cov = given
    else:
        raise AllianceDataError(
            f"coverage[{name!r}] must be AllianceData, PSQData, ObserverData or a DataFrame "
            f"with columns patient, session; got {type(given).__name__}."
        )
    if cov is None:
        return None
    missing = [c for c in ("patient", "session") if c not in cov.columns]
    if missing:
        raise AllianceDataError(f"The coverage of {name!r} lacks column(s) {missing}.")
    if "rater" in cov.columns and rater is not None:
        cov = cov.loc[cov["rater"] == rater]
    out = pd.DataFrame({"patient": cov["patient"].to_numpy(),
                        "session": pd.to_numeric(cov["session"]).astype("float64").to_numpy()})
    return out.drop_duplicates().reset_index(drop=True)


def _prepared(name: str, table) -> pd.DataFrame:
    out = _prepare(table, f"Source {name!r}")
    out["repaired"] = out["repaired"].astype("boolean")
    return out


def _split_raters(table: pd.DataFrame) -> tuple[dict, dict]:
    if "rater" not in table.columns:
        raise AllianceDataError(
            "A single episode table is compared across its raters (patient vs therapist) and "
            "needs a rater column; pass a dict {name: episodes, ...} to compare sources."
        )
    cov = _attrs_coverage(table)
    raters = set(table["rater"].dropna())
    if cov is not None and "rater" in cov.columns:
        raters |= set(cov["rater"].dropna())
    raters = sorted(raters)
    if len(raters) < 2:
        raise AllianceDataError(f"The episode table has a single rater {raters}; nothing to "
                                "compare.")
    sources, coverage = {}, {}
    for r in raters:
        part = table.loc[table["rater"] == r]
        part.attrs = {}
        sources[str(r)] = part
        if cov is not None:
            c = cov.loc[cov["rater"] == r] if "rater" in cov.columns else cov
            coverage[str(r)] = c[["patient", "session"]]
    return sources, coverage


def _groups(t: pd.DataFrame, patients: pd.Index) -> pd.Series:
    """no_rupture / repaired / unrepaired per patient (missing when a repair is unknown)."""
    rep = t["repaired"].astype("boolean")
    by = t["patient"].to_numpy()
    n = pd.Series(1, index=t.index).groupby(by).sum().reindex(patients, fill_value=0)
    n_false = (~rep).fillna(False).astype(int).groupby(by).sum().reindex(patients, fill_value=0)
    n_na = rep.isna().astype(int).groupby(by).sum().reindex(patients, fill_value=0)
    out = np.where(n == 0, "no_rupture", np.where(n_false > 0, "unrepaired",
                                                  np.where(n_na > 0, None, "repaired")))
    return pd.Series(out, index=patients, dtype=object)


def _same_id_type(frames: list[pd.DataFrame | None]) -> None:
    kinds = {pd.api.types.is_numeric_dtype(f["patient"]) for f in frames
             if f is not None and len(f)}
    if len(kinds) > 1:
        for f in frames:
            if f is not None:
                f["patient"] = f["patient"].astype(str)


def _pair(a: pd.DataFrame, b: pd.DataFrame, cov_a, cov_b, tolerance: float,
          patients) -> dict:
    if cov_a is not None and cov_b is not None:
        common = cov_a.merge(cov_b, on=["patient", "session"])
        label = "common"
    else:
        common = cov_a if cov_a is not None else cov_b
        label = "unknown" if common is None else "one source"
    if common is not None:
        keys = pd.MultiIndex.from_frame(common[["patient", "session"]])
        a = a[pd.MultiIndex.from_arrays([a["patient"], a["rupture_session"]]).isin(keys)]
        b = b[pd.MultiIndex.from_arrays([b["patient"], b["rupture_session"]]).isin(keys)]
        pats = pd.Index(pd.unique(common["patient"]))
        n_sessions = len(common)
    else:
        pats = pd.Index(pd.unique(pd.concat([a["patient"], b["patient"]])))
        n_sessions = np.nan
    if patients is not None:
        pats = pats[pats.isin(list(patients))]
    res = compare_episodes(a, b, tolerance=tolerance, patients=list(pats))
    o = res.overall.iloc[0]
    tp, n_a, n_b = int(o["n_matched"]), int(o["n_episodes_a"]), int(o["n_episodes_b"])
    if np.isnan(n_sessions):
        session_kappa = np.nan
    else:
        tn = int(n_sessions) - (n_a + n_b - tp)
        x = np.repeat([1, 1, 0, 0], [tp, n_a - tp, n_b - tp, tn])
        y = np.repeat([1, 0, 1, 0], [tp, n_a - tp, n_b - tp, tn])
        session_kappa = cohen_kappa(x, y)
    a = a[a["patient"].isin(pats)]
    b = b[b["patient"].isin(pats)]
    ga, gb = _groups(a, pats), _groups(b, pats)
    known = (ga.notna() & gb.notna()).to_numpy()
    return {"coverage": label, "n_patients": len(pats), "n_sessions": n_sessions,
            "n_a": n_a, "n_b": n_b, "n_matched": tp, "precision": o["precision"],
            "recall": o["recall"], "f1": o["f1"], "session_kappa": session_kappa,
            "patient_agreement": o["patient_agreement"], "patient_kappa": o["kappa"],
            "n_group": int(known.sum()),
            "group_kappa": cohen_kappa(ga.to_numpy()[known].astype(str),
                                       gb.to_numpy()[known].astype(str)),
            "repaired_kappa": o["repaired_kappa"]}


def source_agreement(sources: Mapping[str, pd.DataFrame] | pd.DataFrame, tolerance: float = 0,
                     coverage: Mapping | None = None, patients=None) -> pd.DataFrame:
    """Pairwise agreement between rupture measurement sources.

    For every pair of sources (in the order given; ``a`` is the first,
    ``b`` the second of the pair), over the sessions **both** cover:

    * **session level** -- rupture sessions matched one-to-one within
      ``tolerance`` sessions (:func:`alliancetrack.compare_episodes`);
      ``precision`` = matched / ruptures of ``a`` (the share of ``a``'s
      ruptures that ``b`` also has), ``recall`` = matched / ruptures of ``b``;
      ``session_kappa`` is Cohen's kappa on "the session has a rupture" over
      the ``n_sessions`` common sessions, from the 2x2 table matched /
      ``a`` only / ``b`` only / neither (with ``tolerance=0`` exactly the
      session-by-session kappa);
    * **patient level** -- over the ``n_patients`` patients with a common
      session: kappa on "has a rupture" (``patient_kappa``) and on the group
      no_rupture / repaired / unrepaired (``group_kappa``; over the
      ``n_group`` patients whose group is known in both: a rupture with
      unknown repair status and no unrepaired one leaves it unknown);
    * ``repaired_kappa`` -- kappa on the repair status of matched ruptures.

    Score-based episodes are repaired over later sessions, self-report and
    observer episodes within the session: repair agreement between them
    compares different things.

    **Coverage.**  The sessions a source covers come, in this order, from
    ``coverage[name]`` (an :class:`AllianceData`: its rated sessions of
    analysed patients; a :class:`PSQData` or :class:`ObserverData`: answered
    questionnaires or coded sessions, of the episodes' rater; a DataFrame
    with ``patient, session``), else from ``episodes.attrs["coverage"]``
    (set by ``detect_episodes`` for self-report and observer episodes, a
    convenience lost when the table is saved).  Score-based
    episode tables do not carry their coverage: pass
    ``coverage={"scores": data}``.  When only one source of a pair has known
    coverage, its sessions are used (column ``coverage`` says
    ``"one source"``); when neither has, the comparison runs over the patients
    with episodes in either table and ``session_kappa`` is NaN
    (``"unknown"``).

    **Patient vs therapist.**  Pass a single self-report episode table with a
    ``rater`` column (``detect_episodes(psq, method="self-report")``): its
    raters are compared with each other, over the sessions both answered.

    Parameters
    ----------
    sources : dict of str to DataFrame, or DataFrame
        Episode tables by source name, e.g. ``{"scores": ep1, "patient PSQ":
        ep2, "3RS": ep3}``; or one table with a ``rater`` column.
    tolerance : float, default 0
        Largest difference in sessions for two ruptures to match.
    coverage : dict of str to data, optional
        The covered sessions of some sources (see above).
    patients : sequence, optional
        Restrict every comparison to these patients.

    Returns
    -------
    pandas.DataFrame
        One row per pair, columns :data:`AGREEMENT_COLUMNS`.

    Examples
    --------
    >>> import pandas as pd, alliancetrack as at
    >>> psq = at.read_psq(pd.DataFrame({
    ...     "patient": [1] * 8 + [2] * 8, "session": [1, 1, 2, 2, 3, 3, 4, 4] * 2,
    ...     "rater": ["patient", "therapist"] * 8,
    ...     "tension": ["yes", "yes", "no", "yes", "no", "no", "no", "no",
    ...                 "no", "no", "no", "yes", "no", "no", "yes", "yes"],
    ...     "resolved": [5, 4, None, 2, None, None, None, None,
    ...                  None, None, None, 4, None, None, 4, 5]}), rater="rater")
    >>> ep = at.detect_episodes(psq, method="self-report")
    >>> tab = at.source_agreement(ep)  # patient vs therapist, over 8 common sessions
    >>> tab[["source_a", "source_b", "n_sessions", "n_a", "n_b", "n_matched",
    ...      "session_kappa", "patient_kappa"]].round(3)
      source_a   source_b  n_sessions  n_a  n_b  n_matched  session_kappa  patient_kappa
    0  patient  therapist           8    2    4          2            0.5            NaN
    """
    if tolerance < 0 or not np.isfinite(tolerance):
        raise AllianceDataError(f"tolerance must be a non-negative number, got {tolerance!r}.")
    coverage = dict(coverage or {})
    if isinstance(sources, pd.DataFrame):
        sources, from_raters = _split_raters(sources)
        coverage = {**from_raters, **coverage}
    if not isinstance(sources, Mapping) or len(sources) < 2:
        raise AllianceDataError("source_agreement needs at least two episode tables, e.g. "
                                "{'scores': ep1, 'patient PSQ': ep2}.")
    unknown = sorted(set(coverage) - set(sources))
    if unknown:
        raise AllianceDataError(f"coverage names unknown source(s) {unknown}; the sources are "
                                f"{list(sources)}.")
    names = [str(n) for n in sources]
    if len(set(names)) < len(names):
        raise AllianceDataError(f"Source names must be distinct, got {names}.")
    tables = {n: _prepared(n, sources[n]) for n in sources}
    covs = {n: _coverage_of(n, sources[n], coverage.get(n)) for n in sources}
    _same_id_type([*tables.values(), *covs.values()])
    if patients is not None and not isinstance(patients, AllianceData):
        patients = list(patients)
    elif isinstance(patients, AllianceData):
        patients = list(patients.analysed_patients)
    rows = []
    for na, nb in combinations(list(sources), 2):
        row = {"source_a": str(na), "source_b": str(nb)}
        row.update(_pair(tables[na], tables[nb], covs[na], covs[nb], tolerance, patients))
        row["tolerance"] = tolerance
        rows.append(row)
    out = pd.DataFrame(rows, columns=list(AGREEMENT_COLUMNS))
    for c in ("n_patients", "n_a", "n_b", "n_matched", "n_group"):
        out[c] = out[c].astype("int64")
    if out["n_sessions"].notna().all():
        out["n_sessions"] = out["n_sessions"].astype("int64")
    return out
