"""Self-report (PSQ) and observer (3RS) episode detectors.

Ruptures reported by patient or therapist on the Post-Session Questionnaire
(PSQ; Muran et al. 2009) or coded by observers with the Rupture Resolution
Rating System (3RS; Eubanks-Carter, Muran & Safran 2015), read with
:func:`alliancetrack.read_psq` / :func:`alliancetrack.read_3rs`, become
episodes in the common table here: :class:`SelfReportDetector`
(``method="self-report"``) and :class:`ObserverDetector` (``method="observer"``).
Their cutoffs are choices, not settled literature (see
:func:`detect_reported_episodes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from alliancetrack.detection.base import Check, Detector, number, register_detector
from alliancetrack.detection.episodes import finalize_episodes
from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.alliance import AllianceData
from alliancetrack.reading.reported import PSQ_ITEMS, ObserverData, PSQData, read_3rs, read_psq

__all__ = ["OBSERVER_DEFAULTS", "PSQ_DEFAULTS", "ObserverDetector", "SelfReportDetector",
           "detect_reported_episodes"]

#: Default cutoffs of ``method="self-report"`` (choices, see :func:`detect_reported_episodes`).
PSQ_DEFAULTS = {"tension_cutoff": 2, "withdrawal_cutoff": 3, "resolved_cutoff": 4}
#: Default cutoffs of ``method="observer"``.
OBSERVER_DEFAULTS = {"significance_cutoff": 1, "resolution_cutoff": 4}


def _as_psq(data: Any) -> PSQData:
    if isinstance(data, pd.DataFrame):
        cols = set(data.columns)
        data = read_psq(data, **{k: (k if k in cols else None)
                                 for k in ("rater", "therapist", *PSQ_ITEMS[1:])},
                        tension="tension" if "tension" in cols else None)
    if not isinstance(data, PSQData):
        raise TypeError("method='self-report' needs PSQ data from alliancetrack.read_psq, "
                        f"got {type(data).__name__}.")
    return data


def _as_observer(data: Any) -> ObserverData:
    if isinstance(data, pd.DataFrame):
        cols = set(data.columns)
        data = read_3rs(data, **{k: (k if k in cols else None)
                                 for k in ("segment", "marker", "resolution", "therapist")})
    if not isinstance(data, ObserverData):
        raise TypeError("method='observer' needs 3RS codes from alliancetrack.read_3rs, "
                        f"got {type(data).__name__}.")
    return data


@register_detector
@dataclass(frozen=True)
class SelfReportDetector(Detector):
    """PSQ ruptures (``method="self-report"``); see :func:`detect_reported_episodes`.

    ``rater`` keeps one rater's answers (None: every rater, each labelled
    ``"self-report:<rater>"``).

    Examples
    --------
    >>> import alliancetrack as at
    >>> at.SelfReportDetector(rater="patient", tension_cutoff=3).label
    'self-report:patient[tension_cutoff=3]'
    """

    method: ClassVar[str] = "self-report"
    name_field: ClassVar[str | None] = "rater"
    checks: ClassVar[dict[str, Check]] = {k: number() for k in PSQ_DEFAULTS}

    rater: Any = None
    tension_cutoff: float = PSQ_DEFAULTS["tension_cutoff"]
    withdrawal_cutoff: float = PSQ_DEFAULTS["withdrawal_cutoff"]
    resolved_cutoff: float = PSQ_DEFAULTS["resolved_cutoff"]

    def _select(self, data: PSQData) -> PSQData:
        if self.rater is None:
            return data
        if "rater" not in data.frame:
            raise AllianceDataError("These PSQ data have no rater column; rater= cannot "
                                    "select one.")
        named = {str(r): r for r in data.raters}  # a label read back gives the rater as text
        return data.select_rater(named.get(str(self.rater), self.rater))

    def detect(self, data: Any) -> pd.DataFrame:
        """Episodes of PSQ data (see :func:`detect_reported_episodes`)."""
        psq = self._select(_as_psq(data))
        episodes = _finalize(_psq_episodes(psq, self), psq.patients)
        episodes.attrs["coverage"] = _coverage_attr(psq.coverage)
        return episodes

    def counting_data(self, data: Any) -> AllianceData:
        """The covered sessions of this detector's rater(s), for per-patient counts."""
        psq = _as_psq(data)
        return self._select(psq).coverage_data()


@register_detector
@dataclass(frozen=True)
class ObserverDetector(Detector):
    """3RS ruptures (``method="observer"``); see :func:`detect_reported_episodes`.

    Examples
    --------
    >>> import alliancetrack as at
    >>> at.ObserverDetector(significance_cutoff=3).label
    'observer[significance_cutoff=3]'
    """

    method: ClassVar[str] = "observer"
    checks: ClassVar[dict[str, Check]] = {k: number() for k in OBSERVER_DEFAULTS}

    significance_cutoff: float = OBSERVER_DEFAULTS["significance_cutoff"]
    resolution_cutoff: float = OBSERVER_DEFAULTS["resolution_cutoff"]

    def detect(self, data: Any) -> pd.DataFrame:
        """Episodes of 3RS codes (see :func:`detect_reported_episodes`)."""
        obs = _as_observer(data)
        episodes = _finalize(_observer_episodes(obs, self), obs.patients)
        episodes.attrs["coverage"] = _coverage_attr(obs.coverage)
        return episodes

    def counting_data(self, data: Any) -> AllianceData:
        """The coded sessions, for per-patient counts."""
        return _as_observer(data).coverage_data()


def _coverage_attr(coverage: pd.DataFrame) -> dict[str, list]:
    """The covered sessions as plain lists for ``attrs["coverage"]``.

    A convenience for :func:`alliancetrack.source_agreement` (which then needs
    no ``coverage=``), not part of the episodes' definition: plain lists
    compare by value when pandas concatenates tables and serialise to Parquet;
    when they are lost, the agreement reports its coverage as unknown.
    """
    return coverage.to_dict(orient="list")


def _repair(resolution: pd.Series, cutoff: float) -> pd.arrays.BooleanArray:
    r = resolution.to_numpy(dtype="float64")
    return pd.arrays.BooleanArray(r >= cutoff, mask=np.isnan(r))


def _psq_episodes(psq: PSQData, det: SelfReportDetector) -> pd.DataFrame:
    tension_cutoff, withdrawal_cutoff = det.tension_cutoff, det.withdrawal_cutoff
    resolved_cutoff = det.resolved_cutoff
    f = psq.frame.loc[psq.frame["answered"]]
    if psq.tension_format == "yes/no":
        flag_t = (f["tension"] == 1.0).to_numpy()
    else:
        flag_t = (f["tension"] >= tension_cutoff).to_numpy()
    flag_w = (f["withdrawal"] >= withdrawal_cutoff).to_numpy()
    hit = flag_t | flag_w
    f = f.loc[hit]
    flag_t, flag_w = flag_t[hit], flag_w[hit]
    repaired = _repair(f["resolved"], resolved_cutoff)
    sess = f["session"].to_numpy(dtype="float64")
    rep = repaired.to_numpy(dtype=bool, na_value=False)
    raw = pd.DataFrame({
        "patient": f["patient"].to_numpy(),
        "method": det.label,
        "source": "self-report",
        "type": np.where(flag_w & ~flag_t, "withdrawal", None).astype(object),
        "intensity": f[["tension_intensity", "withdrawal_intensity"]].max(axis=1).to_numpy(),
        "rupture_session": sess,
        "nadir_session": np.nan, "nadir_level": np.nan, "pre_level": np.nan, "depth": np.nan,
        "repair_session": np.where(rep, sess, np.nan),
        "repaired": repaired,
        "censored": False,
        "tension": f["tension"].to_numpy(),
        "withdrawal": f["withdrawal"].to_numpy(),
        "addressed": f["addressed"].to_numpy(),
        "resolved": f["resolved"].to_numpy(),
    })
    if "rater" in f:
        raw.insert(len(raw.columns), "rater", f["rater"].to_numpy())
        raw["method"] = [det.replace(rater=r).label for r in raw["rater"]]
    return raw


def _observer_episodes(obs: ObserverData, det: ObserverDetector) -> pd.DataFrame:
    significance_cutoff, resolution_cutoff = det.significance_cutoff, det.resolution_cutoff
    m = obs.frame.loc[obs.frame["type"].notna()
                      & (obs.frame["significance"] >= significance_cutoff)]
    g = m.groupby(["patient", "session"], sort=True)
    types = g["type"].agg(lambda t: t.iloc[0] if t.nunique() == 1 else "both")
    summary = pd.DataFrame({"type": types, "intensity": g["significance"].max(),
                            "n_markers": g["type"].size(),
                            "resolution": g["resolution"].max()}).reset_index()
    repaired = _repair(summary["resolution"], resolution_cutoff)
    sess = summary["session"].to_numpy(dtype="float64")
    rep = repaired.to_numpy(dtype=bool, na_value=False)
    return pd.DataFrame({
        "patient": summary["patient"].to_numpy(),
        "method": det.label,
        "source": "observer",
        "type": summary["type"].to_numpy(dtype=object),
        "intensity": summary["intensity"].to_numpy(dtype="float64"),
        "rupture_session": sess,
        "nadir_session": np.nan, "nadir_level": np.nan, "pre_level": np.nan, "depth": np.nan,
        "repair_session": np.where(rep, sess, np.nan),
        "repaired": repaired,
        "censored": False,
        "n_markers": summary["n_markers"].to_numpy(dtype="int64"),
        "resolution": summary["resolution"].to_numpy(dtype="float64"),
    })


def _finalize(raw: pd.DataFrame, patients: pd.Index) -> pd.DataFrame:
    if "rater" not in raw or raw.empty:
        out = finalize_episodes(raw, patient_dtype=patients.dtype)
    else:
        parts = [finalize_episodes(grp, patient_dtype=patients.dtype)
                 for _, grp in raw.groupby("rater", sort=True)]
        out = pd.concat(parts, ignore_index=True)
        out = out.sort_values(["patient", "rater", "rupture_session"],
                              kind="stable").reset_index(drop=True)
    out["repaired"] = out["repaired"].astype("boolean")  # unknown repair: <NA>
    return out


def detect_reported_episodes(data, method: str = "self-report", **options) -> pd.DataFrame:
    """Episodes from PSQ answers (``"self-report"``) or 3RS codes (``"observer"``).

    Usually called as ``at.detect_episodes(psq, method="self-report", ...)``
    or ``at.detect_episodes(codes, method="observer", ...)``.

    **Self-report** (PSQ; Muran et al. 2009; Eubanks, Muran & Safran 2018):
    a session is a rupture when the tension item is "yes" (or, when it is a
    1-5 rating, at least ``tension_cutoff``, default 2) or the withdrawal item
    is at least ``withdrawal_cutoff`` (default 3).  It is repaired in that
    session when the resolved item is at least ``resolved_cutoff`` (default
    4); ``repaired`` is missing when the resolved item was not answered.
    ``type`` is ``"withdrawal"`` when only the withdrawal item flags the
    session and missing otherwise (the tension item does not tell the type);
    ``intensity`` is the larger of the tension and withdrawal intensity
    ratings given.  With a rater column, every rater's episodes are returned
    with a ``rater`` column and method ``"self-report:<rater>"``; ``rater=``
    keeps one.

    **Observer** (3RS; Eubanks-Carter, Muran & Safran 2015): a coded session
    with any marker of significance at least ``significance_cutoff``
    (default 1) is a rupture; ``type`` is ``"withdrawal"``,
    ``"confrontation"`` or ``"both"``; ``intensity`` is the largest
    significance and ``n_markers`` counts the markers; repaired when the
    resolution rating is at least ``resolution_cutoff`` (default 4), missing
    when no resolution rating was coded.

    The default cutoffs are choices, not settled literature: the PSQ and 3RS
    manuals give ratings, not thresholds, and published studies dichotomise
    differently (e.g. "any tension reported"; a resolution rating at the
    scale midpoint or above).  Change them by keyword, e.g.
    ``tension_cutoff=3`` (only clear tension), ``resolved_cutoff=3`` (a
    partial resolution counts), ``significance_cutoff=3`` (only markers of at
    least moderate significance), and report how the results depend on them.

    Parameters
    ----------
    data : PSQData, ObserverData or DataFrame
        From :func:`read_psq` / :func:`read_3rs`, or a DataFrame with their
        default column names (``rater``, ``withdrawal``, ... are used when
        present).
    method : {"self-report", "observer"}
    **options
        ``rater``, ``tension_cutoff``, ``withdrawal_cutoff``,
        ``resolved_cutoff`` (self-report: the fields of
        :class:`SelfReportDetector`); ``significance_cutoff``,
        ``resolution_cutoff`` (observer: :class:`ObserverDetector`).

    Returns
    -------
    pandas.DataFrame
        The episode table (:data:`alliancetrack.EPISODE_COLUMNS`, ``repaired``
        a nullable boolean) plus ``rater``, ``tension``, ``withdrawal``,
        ``addressed``, ``resolved`` (self-report) or ``n_markers``,
        ``resolution`` (observer).  ``method`` is the detector's label
        (``"self-report"``, ``"self-report:<rater>"``, ``"observer"``, with
        changed cutoffs in brackets).  Patients without a covered session are
        ``data.excluded``; :func:`alliancetrack.episode_predictors` and
        :func:`alliancetrack.source_agreement` take them from the data.

    Examples
    --------
    >>> import pandas as pd, alliancetrack as at
    >>> df = pd.DataFrame({"patient": 1, "session": [1, 2, 3, 4],
    ...                    "tension": [1, 3, 1, 2], "withdrawal": [1, 1, 4, 1],
    ...                    "tension_intensity": [None, 4, None, 2],
    ...                    "resolved": [None, 5, 2, None]})
    >>> psq = at.read_psq(df, withdrawal="withdrawal", tension_intensity="tension_intensity")
    >>> ep = at.detect_episodes(psq, method="self-report")
    >>> ep[["rupture_session", "type", "intensity", "repaired", "sessions_to_repair"]]
       rupture_session        type  intensity  repaired  sessions_to_repair
    0              2.0         NaN        4.0      True                 0.0
    1              3.0  withdrawal        NaN     False                 NaN
    2              4.0         NaN        2.0      <NA>                 NaN
    >>> at.detect_episodes(psq, method="self-report", tension_cutoff=3)["rupture_session"].tolist()
    [2.0, 3.0]
    """
    if method == "self-report":
        detector: Detector = SelfReportDetector().replace(**options)
    elif method == "observer":
        detector = ObserverDetector().replace(**options)
    else:
        raise ValueError(f"method must be 'self-report' or 'observer', got {method!r}.")
    return detector.detect(data)
