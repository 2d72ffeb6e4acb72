"""Per-patient predictors from an episode table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from alliancetrack.detection.base import DETECTORS, Detector, detector_from_label
from alliancetrack.detection.engines import engine_for
from alliancetrack.detection.strategies import strategy_counts
from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.alliance import as_alliance_data, patient_codes, therapist_of

__all__ = ["episode_predictors", "episode_definition", "PREDICTOR_COLUMNS"]

#: Columns of :func:`episode_predictors`, in order.
PREDICTOR_COLUMNS: tuple[str, ...] = (
    "patient", "status", "method", "n_sessions", "n_ruptures", "n_repaired", "n_unrepaired",
    "n_censored", "group", "mean_depth", "max_depth", "first_rupture_session",
    "first_rupture_phase", "mean_sessions_to_repair",
)

_NEEDED = ("patient", "rupture_session", "repaired", "depth", "method")
_REPORTED = ("self-report", "observer")


def episode_definition(episodes: pd.DataFrame,
                       detector: Detector | str | None = None) -> tuple[str | None,
                                                                        Detector | None]:
    """The label and detector that made an episode table, read from its ``method`` column.

    One label per table (two definitions in one table are an error).  A table
    without rows cannot name its method in a column: then ``detector`` (a
    detector or its label) is used, or the in-memory hint
    ``episodes.attrs["method"]`` that :func:`alliancetrack.detect_episodes`
    leaves; without either, an error says what is missing.  A label that no
    registered detector claims (a hand-made table, e.g. ``"truth"``) gives
    ``(label, None)``.

    Examples
    --------
    >>> import pandas as pd
    >>> from alliancetrack.predictors import episode_definition
    >>> ep = pd.DataFrame({"method": ["rules:strauss-1sd[min_timepoints=5]"]})
    >>> episode_definition(ep)[1].min_timepoints
    5
    """
    labels = episodes["method"].dropna().unique().tolist()
    if len(labels) > 1:
        raise AllianceDataError(
            f"The episode table mixes methods {labels}; compute predictors per method, e.g. "
            "episodes[episodes['method'] == ...]."
        )
    if isinstance(detector, Detector):
        detector = detector.label
    label = labels[0] if labels else (detector or episodes.attrs.get("method"))
    if label is None:
        raise AllianceDataError(
            "The episode table has no rows, so its method column cannot say which detector "
            "made it (and which patients that detector excluded); pass detector= (the "
            "detector or its label, e.g. 'rules:strauss-1sd[min_timepoints=5]')."
        )
    if labels and detector is not None and detector != label:
        raise AllianceDataError(
            f"detector={detector!r} does not match the episode table's method {label!r}."
        )
    head = str(label).split("[", 1)[0].split(":", 1)[0]
    if head not in DETECTORS:
        return str(label), None
    try:
        return str(label), detector_from_label(str(label))
    except ValueError as exc:
        raise AllianceDataError(
            f"The episode table's method {label!r} is not a valid detector label: {exc}"
        ) from exc


def _counting_data(data, episodes: pd.DataFrame, detector):
    """The data to count in, the table's label and detector, and the detector's exclusions."""
    missing = [c for c in _NEEDED if c not in episodes.columns]
    if missing:
        raise AllianceDataError(
            f"The episode table lacks column(s) {missing}; pass the output of "
            "alliancetrack.detect_episodes."
        )
    label, det = episode_definition(episodes, detector)
    if det is not None:
        data = det.counting_data(data)
        extra = det.exclusions(data)
    else:  # a table not made by a registered detector: only the data's own exclusions
        data = data.coverage_data() if hasattr(data, "coverage_data") else \
            as_alliance_data(data)
        extra = data.excluded.iloc[0:0]
    ep_ids = pd.Index(episodes["patient"].unique())
    unknown = sorted(ep_ids[~ep_ids.isin(data.patients)].tolist())
    if unknown:
        shown = ", ".join(map(str, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
        raise AllianceDataError(
            f"Episodes name {len(unknown)} patient(s) that are not in the data: {shown}. "
            "Pass the same data the episodes were detected in."
        )
    return data, label, det, extra


def episode_predictors(data, episodes: pd.DataFrame,
                       strategies: pd.DataFrame | None = None, *,
                       detector: Detector | str | None = None) -> pd.DataFrame:
    """One row per input patient with episode counts and summaries.

    Parameters
    ----------
    data : AllianceData, PSQData, ObserverData or DataFrame
        The data the episodes were detected in; its ``patients`` define the
        rows of the result.
    episodes : DataFrame
        From :func:`alliancetrack.detect_episodes` (one method), in memory or
        read back from a file: its ``method`` column names the detector, and
        the patients that detector did not analyse (e.g. a rule's own
        ``min_timepoints``) are re-derived from ``data`` (see
        :func:`episode_definition`).  With a Dask DataFrame ``data`` the
        result is a Dask DataFrame; see
        :func:`alliancetrack.scaling.dask_engine.episode_predictors_dask`.
    strategies : DataFrame, optional
        From :func:`alliancetrack.link_strategies`: adds per-patient
        ``n_strategy_episodes, n_strategies, n_immediate, n_expressive``
        (:func:`alliancetrack.detection.strategies.strategy_counts`; missing for a
        patient without an episode in a coded session).
    detector : Detector or str, optional
        The detector (or its label) that made ``episodes``; needed only for an
        episode table without rows that was read back from a file.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`PREDICTOR_COLUMNS`:

        * ``status``: ``"analysed"`` or the reason the patient was excluded
          (counts are then missing, not zero);
        * ``n_sessions``: number of rated sessions;
        * ``n_ruptures``, ``n_repaired``, ``n_unrepaired``, ``n_censored``;
        * ``group``: ``"no_rupture"``, ``"repaired"`` (all ruptures
          repaired) or ``"unrepaired"`` (any unrepaired rupture);
        * ``mean_depth``, ``max_depth`` (scale points);
        * ``first_rupture_session`` and ``first_rupture_phase``: the rank of
          the first rupture session among the patient's rated sessions divided
          by ``n_sessions`` (in (0, 1]; the timing of ruptures matters, Eubanks
          et al. 2018);
        * ``mean_sessions_to_repair`` over repaired episodes.

        With self-report or observer episodes (``data`` from
        :func:`alliancetrack.read_psq` / :func:`alliancetrack.read_3rs`),
        ``n_sessions`` counts the sessions *covered* (answered questionnaires
        of the episodes' rater, coded sessions); ``n_unrepaired`` counts
        ruptures known to be unrepaired and ``group`` is missing for a patient
        whose only not-repaired ruptures have an unknown repair status.  Extra
        columns: ``n_repair_unknown``, ``n_withdrawal``, ``n_confrontation``
        (``"both"`` counts in each; missing for self-report, which cannot tell
        confrontation), ``n_type_unknown``, ``mean_intensity``,
        ``max_intensity``.

    Examples
    --------
    >>> import pandas as pd, alliancetrack as at
    >>> df = pd.DataFrame({"patient": [1] * 8 + [2] * 2, "session": list(range(1, 9)) + [1, 2],
    ...                    "alliance": [4.0, 4.1, 4.0, 2.5, 3.0, 4.1, 4.0, 4.2, 3.0, 3.1]})
    >>> data = at.read_alliance(df)
    >>> pred = at.episode_predictors(data, at.detect_episodes(data, rule="strauss-1sd"))
    >>> pred[["patient", "status", "n_ruptures", "group", "first_rupture_phase"]]
       patient                                 status  n_ruptures       group  first_rupture_phase
    0        1                               analysed           1    repaired                  0.5
    1        2  fewer than 3 rated sessions (2 rated)        <NA>        <NA>                  NaN
    """
    engine = engine_for(data)
    if engine is not None:  # e.g. Dask: alliancetrack.scaling.dask_engine
        if strategies is not None:
            raise ValueError("strategies= is not available with Dask data; compute the "
                             "predictors, then merge strategy_counts(linked, patients).")
        return engine.episode_predictors(data, episodes, detector=detector)
    data, label, det, extra = _counting_data(data, episodes, detector)
    patients = data.patients
    status, analysed = _patient_status(data, extra)
    codes, is_rated, n_sessions = _rated_sessions(data)
    ep = episodes
    n = _episode_summary(ep, patients)
    phase = _first_rupture_phase(n["first"], codes, is_rated, data.frame, n_sessions)
    n_unknown = n["rup"] - n["rep"] - n["unrep"]
    group = np.where(n["rup"].to_numpy() == 0, "no_rupture",
                     np.where(n["unrep"].to_numpy() > 0, "unrepaired",
                              np.where(n_unknown.to_numpy() > 0, None, "repaired"))).astype(object)
    analysed_group = analysed & (group != None)  # noqa: E711 - unknown repair: group missing
    method = pd.NA if label is None else label
    out = pd.DataFrame({
        "patient": patients.to_numpy(),
        "status": status.to_numpy(),
        "method": method,
        "n_sessions": n_sessions.to_numpy().astype("int64"),
        "n_ruptures": _counts(n["rup"], analysed),
        "n_repaired": _counts(n["rep"], analysed),
        "n_unrepaired": _counts(n["unrep"], analysed),
        "n_censored": _counts(n["cens"], analysed),
        "group": pd.Series(np.where(analysed_group, group, None),
                           dtype=object).where(analysed_group, pd.NA),
        "mean_depth": n["mean_depth"].to_numpy(dtype="float64"),
        "max_depth": n["max_depth"].to_numpy(dtype="float64"),
        "first_rupture_session": n["first"].to_numpy(dtype="float64"),
        "first_rupture_phase": phase.to_numpy(dtype="float64"),
        "mean_sessions_to_repair": n["mean_str"].to_numpy(dtype="float64"),
    })
    sources = set(ep["source"].dropna()) if "source" in ep else set()
    source = det.method if det is not None else None
    if source in _REPORTED or sources & set(_REPORTED):
        self_report = source == "self-report" or sources == {"self-report"}
        _add_reported_columns(out, ep, patients, analysed, n_unknown, self_report)
    out["patient"] = out["patient"].astype(patients.dtype)
    if strategies is not None:
        counts_ = strategy_counts(strategies, patients)
        out = pd.concat([out, counts_.drop(columns="patient")], axis=1)
    return _with_therapist(out, data.frame)


def _patient_status(data, extra: pd.DataFrame) -> tuple[pd.Series, np.ndarray]:
    """Each input patient's status ("analysed" or the exclusion reason) and the analysed mask."""
    patients = data.patients
    excluded = pd.concat([data.excluded, extra], ignore_index=True).drop_duplicates("patient")
    reason = pd.Series(excluded["reason"].to_numpy(), index=excluded["patient"].to_numpy())
    status = pd.Series("analysed", index=patients, dtype=object)
    hit = patients.isin(reason.index)
    status[hit] = reason.reindex(patients[hit]).to_numpy()
    return status, (status == "analysed").to_numpy()


def _rated_sessions(data) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """Patient codes and rated-row mask of ``data.frame``; rated sessions per patient."""
    frame, patients = data.frame, data.patients
    codes = patient_codes(frame["patient"])
    if len(codes) == 0 or codes[-1] + 1 != len(patients):
        raise AllianceDataError("Internal error: data.frame and data.patients disagree.")
    is_rated = frame["alliance"].notna().to_numpy()
    n_sessions = pd.Series(np.bincount(codes, weights=is_rated, minlength=len(patients)),
                           index=patients).astype("int64")
    return codes, is_rated, n_sessions


def _per_patient(ep: pd.DataFrame, mask, patients: pd.Index) -> pd.Series:
    """Number of episodes per input patient for which ``mask`` holds."""
    flags = pd.Series(np.asarray(mask, dtype=bool), index=ep.index)
    return flags.groupby(ep["patient"], sort=False).sum().reindex(patients, fill_value=0)


def _counts(s: pd.Series, analysed: np.ndarray) -> pd.arrays.IntegerArray:
    """Counts as nullable integers, missing for patients not analysed."""
    return pd.arrays.IntegerArray(s.to_numpy().astype("int64"), mask=~analysed)


def _episode_summary(ep: pd.DataFrame, patients: pd.Index) -> dict[str, pd.Series]:
    """Per-patient episode counts (ruptures, repaired, unrepaired, censored) and summaries."""
    # repair status may be unknown (<NA>) for self-report / observer episodes
    rep_status = ep["repaired"].astype("boolean")
    repaired = rep_status.fillna(False).astype(bool)
    unrepaired = (~rep_status).fillna(False).astype(bool)
    g = ep.groupby("patient", sort=False)
    censored = ep["censored"].astype(bool) if "censored" in ep else np.zeros(len(ep), dtype=bool)
    if "sessions_to_repair" in ep:
        str_ = ep["sessions_to_repair"]
    else:
        str_ = ep["repair_session"] - ep["rupture_session"]
    return {
        "rup": g.size().reindex(patients, fill_value=0),
        "rep": _per_patient(ep, repaired, patients),
        "unrep": _per_patient(ep, unrepaired, patients),
        "cens": _per_patient(ep, censored, patients),
        "mean_depth": g["depth"].mean().reindex(patients),
        "max_depth": g["depth"].max().reindex(patients),
        "first": g["rupture_session"].min().reindex(patients),
        "mean_str": str_.where(repaired).groupby(ep["patient"], sort=False).mean()
                        .reindex(patients),
    }


def _first_rupture_phase(first: pd.Series, codes: np.ndarray, is_rated: np.ndarray,
                         frame: pd.DataFrame, n_sessions: pd.Series) -> pd.Series:
    """Rank of the first rupture among the patient's rated sessions, over their number."""
    first_by_row = first.to_numpy(dtype="float64")[codes]
    upto = is_rated & (frame["session"].to_numpy(dtype="float64") <= first_by_row)
    rank = np.bincount(codes, weights=upto, minlength=len(first))
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.Series(np.where(first.notna(), rank / n_sessions.to_numpy(), np.nan),
                         index=first.index)


def _add_reported_columns(out: pd.DataFrame, ep: pd.DataFrame, patients: pd.Index,
                          analysed: np.ndarray, n_unknown: pd.Series, self_report: bool) -> None:
    """Self-report / observer sources: repair status unknown, counts by type, intensity."""
    typ = ep["type"] if "type" in ep else pd.Series(pd.NA, index=ep.index, dtype=object)
    out["n_repair_unknown"] = _counts(n_unknown, analysed)
    out["n_withdrawal"] = _counts(
        _per_patient(ep, typ.isin(["withdrawal", "both"]), patients), analysed)
    n_conf = _counts(_per_patient(ep, typ.isin(["confrontation", "both"]), patients), analysed)
    if self_report:
        n_conf = pd.array([pd.NA] * len(patients), dtype="Int64")  # PSQ cannot tell
    out["n_confrontation"] = n_conf
    out["n_type_unknown"] = _counts(_per_patient(ep, typ.isna(), patients), analysed)
    inten = pd.to_numeric(ep["intensity"]).astype("float64") if "intensity" in ep else \
        pd.Series(np.nan, index=ep.index)
    gi = inten.groupby(ep["patient"], sort=False)
    out["mean_intensity"] = gi.mean().reindex(patients).to_numpy(dtype="float64")
    out["max_intensity"] = gi.max().reindex(patients).to_numpy(dtype="float64")


def _with_therapist(out: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """Keep the therapist given to read_alliance (the clustering column of outcome_model)."""
    th = therapist_of(frame)
    if th is not None:
        out["therapist"] = out["patient"].map(th).to_numpy()
    return out
