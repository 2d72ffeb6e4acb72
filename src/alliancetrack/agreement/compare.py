"""Agreement between two episode tables (two detectors, or a detector and the truth)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.alliance import AllianceData

__all__ = ["EpisodeComparison", "cohen_kappa", "compare_episodes"]


def cohen_kappa(x, y) -> float:
    """Cohen's kappa for two binary (or categorical) ratings of the same units.

    ``(p_o - p_e) / (1 - p_e)`` with ``p_o`` the observed agreement and ``p_e``
    the agreement expected from the marginals.  NaN when ``p_e == 1`` (both
    raters used a single, identical category: kappa is undefined) or there
    are no units.

    Examples
    --------
    >>> cohen_kappa([1, 1, 0, 0], [1, 0, 0, 0])   # p_o = 3/4, p_e = 1/2
    0.5
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.shape != y.shape:
        raise AllianceDataError("cohen_kappa needs two ratings of the same units (same length).")
    if x.size == 0:
        return float("nan")
    cats = np.union1d(x, y)
    po = float(np.mean(x == y))
    pe = float(sum(np.mean(x == c) * np.mean(y == c) for c in cats))
    if pe >= 1.0:
        return float("nan")
    return (po - pe) / (1.0 - pe)


def _prf(tp: int, n_a: int, n_b: int) -> tuple[float, float, float]:
    precision = tp / n_a if n_a else np.nan
    recall = tp / n_b if n_b else np.nan
    if n_a + n_b == 0:
        f1 = np.nan
    else:
        f1 = 2 * tp / (n_a + n_b)
    return precision, recall, f1


def _prepare(table, name: str) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise AllianceDataError(f"{name} must be an episode table (a pandas DataFrame).")
    missing = [c for c in ("patient", "rupture_session") if c not in table]
    if missing:
        raise AllianceDataError(
            f"{name} lacks column(s) {', '.join(missing)}; an episode table needs "
            "patient and rupture_session (repair_session / repaired are optional)."
        )
    out = pd.DataFrame({
        "patient": table["patient"].to_numpy(),
        "rupture_session": pd.to_numeric(table["rupture_session"]).astype("float64"),
    })
    if "repaired" in table:
        rep = table["repaired"]
        if rep.dtype == object or str(rep.dtype) in ("string", "str"):
            rep = rep.astype(str).str.strip().str.lower().map(
                {"true": True, "false": False, "1": True, "0": False})
        out["repaired"] = rep.astype("boolean").to_numpy()
    elif "repair_session" in table:
        out["repaired"] = pd.to_numeric(table["repair_session"]).notna().to_numpy()
    else:
        out["repaired"] = pd.array([pd.NA] * len(table), dtype="boolean")
    out["depth"] = (pd.to_numeric(table["depth"]).astype("float64").to_numpy() if "depth" in table
                    else np.nan)
    if out["rupture_session"].isna().any():
        raise AllianceDataError(f"{name} has episodes without a rupture_session; drop them.")
    return out


def _harmonise_ids(*series: pd.Series) -> list[pd.Series]:
    """Make patient ids comparable (e.g. 3 vs "3") when the tables disagree on type."""
    kinds = {pd.api.types.is_numeric_dtype(s) for s in series if len(s)}
    if len(kinds) <= 1:
        return list(series)
    return [s.astype(str) for s in series]


def _match(sa: np.ndarray, sb: np.ndarray, tolerance: float) -> list[tuple[int, int]]:
    """One-to-one matching of rupture sessions within ``tolerance``.

    Maximises the number of matched pairs, then minimises their total distance.
    """
    if sa.size == 0 or sb.size == 0:
        return []
    dist = np.abs(sa[:, None] - sb[None, :])
    ok = dist <= tolerance
    if not ok.any():
        return []
    big = 1.0 + dist[ok].sum() + 1.0
    cost = np.where(ok, dist, big * (1 + sa.size + sb.size))
    r, c = linear_sum_assignment(cost)
    return [(int(i), int(j)) for i, j in zip(r, c, strict=True) if ok[i, j]]


@dataclass(frozen=True)
class EpisodeComparison:
    """Result of :func:`compare_episodes`.

    Attributes
    ----------
    overall : pandas.DataFrame
        One row: ``n_patients, n_episodes_a, n_episodes_b, n_matched, precision,
        recall, f1, patient_agreement, kappa, repaired_agreement,
        repaired_kappa, tolerance``.
    per_patient : pandas.DataFrame
        One row per patient: ``patient, n_a, n_b, has_rupture_a,
        has_rupture_b, n_matched, precision, recall, f1, repaired_agree``.
    matches : pandas.DataFrame
        One row per matched pair: ``patient, rupture_session_a,
        rupture_session_b, repaired_a, repaired_b, depth_a, depth_b`` (depth
        NaN when a table has no ``depth`` column).
    """

    overall: pd.DataFrame
    per_patient: pd.DataFrame
    matches: pd.DataFrame

    def __getitem__(self, key: str) -> pd.DataFrame:
        return {"overall": self.overall, "per_patient": self.per_patient,
                "matches": self.matches}[key]

    def __repr__(self) -> str:
        row = self.overall.iloc[0]
        return (f"EpisodeComparison(patients={int(row['n_patients'])}, "
                f"precision={row['precision']:.3f}, recall={row['recall']:.3f}, "
                f"f1={row['f1']:.3f}, kappa={row['kappa']:.3f})")


def compare_episodes(a: pd.DataFrame, b: pd.DataFrame, tolerance: float = 1,
                     patients=None) -> EpisodeComparison:
    """Agreement between two episode tables: ``a`` (tested) against ``b`` (reference).

    Three kinds of agreement are reported, per patient and overall:

    * **Patient level** -- Cohen's kappa on "the patient has at least one
      rupture".  Units are the patients in ``patients``; by default the union
      of the patients appearing in ``a`` or ``b``.  *A patient without episodes
      in either table is then invisible* (it would be an agreement on
      "no rupture"): pass ``patients=data`` (an :class:`AllianceData`; its
      analysed patients are used) or a list of ids to count them.
    * **Session level** -- rupture sessions of ``a`` are matched one-to-one to
      those of ``b`` of the same patient when they differ by at most
      ``tolerance`` sessions (maximum number of matches, then smallest total
      distance).  Precision = matched / episodes in ``a``, recall = matched /
      episodes in ``b``, F1 = 2 matched / (episodes in a + episodes in b).
    * **Repair status** -- for matched pairs, the proportion with the same
      ``repaired`` value, and kappa on it.

    ``b`` may be a ground-truth table with only ``patient, rupture_session``
    and ``repair_session`` or ``repaired`` (e.g. ``cohort101_truth.csv``).
    Episodes of patients outside ``patients`` are ignored.

    Parameters
    ----------
    a, b : pandas.DataFrame
        Episode tables (at least ``patient`` and ``rupture_session``).
    tolerance : float, default 1
        Largest difference in session numbers for two ruptures to match.
    patients : AllianceData or sequence, optional
        The patients to compare over.

    Returns
    -------
    EpisodeComparison
        With ``.overall`` (one row), ``.per_patient`` and ``.matches``.

    Examples
    --------
    >>> import pandas as pd
    >>> a = pd.DataFrame({"patient": [1, 2, 2], "rupture_session": [4, 3, 9],
    ...                   "repaired": [True, True, False]})
    >>> b = pd.DataFrame({"patient": [1, 2], "rupture_session": [5, 9],
    ...                   "repair_session": [7, None]})
    >>> res = compare_episodes(a, b, tolerance=1, patients=[1, 2, 3, 4])
    >>> res.overall[["n_matched", "precision", "recall", "kappa"]].round(3)
       n_matched  precision  recall  kappa
    0          2      0.667     1.0    1.0
    """
    if tolerance < 0 or not np.isfinite(tolerance):
        raise AllianceDataError(f"tolerance must be a non-negative number, got {tolerance!r}.")
    ta, tb = _prepare(a, "a"), _prepare(b, "b")
    if patients is None:
        pa, pb = _harmonise_ids(ta["patient"], tb["patient"])
        pats = pd.Series(pd.unique(pd.concat([pa, pb], ignore_index=True)))
    else:
        if isinstance(patients, AllianceData):
            ids = patients.analysed_patients
        elif isinstance(patients, str) or not hasattr(patients, "__iter__"):
            raise AllianceDataError(
                "patients must be AllianceData or a list of patient ids, "
                f"got {type(patients).__name__}."
            )
        else:
            ids = list(patients)
        pa, pb, pats = _harmonise_ids(ta["patient"], tb["patient"], pd.Series(ids))
        pats = pd.Series(pd.unique(pats))
    ta["patient"], tb["patient"] = pa.to_numpy(), pb.to_numpy()
    ta = ta[ta["patient"].isin(pats)]
    tb = tb[tb["patient"].isin(pats)]
    ga = dict(tuple(ta.groupby("patient", sort=False)))
    gb = dict(tuple(tb.groupby("patient", sort=False)))

    rows, match_rows = [], []
    empty = ta.iloc[:0]
    for p in pats:
        ea = ga.get(p, empty).sort_values("rupture_session")
        eb = gb.get(p, empty).sort_values("rupture_session")
        pairs = _match(ea["rupture_session"].to_numpy(), eb["rupture_session"].to_numpy(),
                       tolerance)
        agree = []
        for i, j in pairs:
            ra, rb = ea["repaired"].iloc[i], eb["repaired"].iloc[j]
            match_rows.append({"patient": p,
                               "rupture_session_a": ea["rupture_session"].iloc[i],
                               "rupture_session_b": eb["rupture_session"].iloc[j],
                               "repaired_a": ra, "repaired_b": rb,
                               "depth_a": ea["depth"].iloc[i], "depth_b": eb["depth"].iloc[j]})
            if not (pd.isna(ra) or pd.isna(rb)):
                agree.append(bool(ra) == bool(rb))
        prec, rec, f1 = _prf(len(pairs), len(ea), len(eb))
        rows.append({"patient": p, "n_a": len(ea), "n_b": len(eb),
                     "has_rupture_a": len(ea) > 0, "has_rupture_b": len(eb) > 0,
                     "n_matched": len(pairs), "precision": prec, "recall": rec, "f1": f1,
                     "repaired_agree": float(np.mean(agree)) if agree else np.nan})
    per = pd.DataFrame(rows, columns=["patient", "n_a", "n_b", "has_rupture_a", "has_rupture_b",
                                      "n_matched", "precision", "recall", "f1",
                                      "repaired_agree"])
    matches = pd.DataFrame(match_rows, columns=["patient", "rupture_session_a",
                                                "rupture_session_b", "repaired_a",
                                                "repaired_b", "depth_a", "depth_b"])
    tp, n_a, n_b = int(per["n_matched"].sum()), int(per["n_a"].sum()), int(per["n_b"].sum())
    prec, rec, f1 = _prf(tp, n_a, n_b)
    both = matches.dropna(subset=["repaired_a", "repaired_b"])
    ra, rb = both["repaired_a"].astype(bool), both["repaired_b"].astype(bool)
    overall = pd.DataFrame([{
        "n_patients": len(per), "n_episodes_a": n_a, "n_episodes_b": n_b, "n_matched": tp,
        "precision": prec, "recall": rec, "f1": f1,
        "patient_agreement": float(np.mean(per["has_rupture_a"] == per["has_rupture_b"]))
        if len(per) else np.nan,
        "kappa": cohen_kappa(per["has_rupture_a"].to_numpy(), per["has_rupture_b"].to_numpy()),
        "repaired_agreement": float(np.mean(ra.to_numpy() == rb.to_numpy())) if len(both)
        else np.nan,
        "repaired_kappa": cohen_kappa(ra.to_numpy(), rb.to_numpy()),
        "tolerance": tolerance,
    }])
    return EpisodeComparison(overall=overall, per_patient=per, matches=matches)
