"""Per-patient predictors from an episode table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from alliancetrack.detection.base import DETECTORS, Detector, detector_from_label
from alliancetrack.detection.engines import engine_for
from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.alliance import as_alliance_data, patient_codes
from alliancetrack.strategy_links import strategy_counts

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
        (:func:`alliancetrack.strategy_links.strategy_counts`; missing for a
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
    excluded = pd.concat([data.excluded, extra], ignore_index=True).drop_duplicates("patient")
    reason = pd.Series(excluded["reason"].to_numpy(), index=excluded["patient"].to_numpy())
    status = pd.Series("analysed", index=patients, dtype=object)
    hit = patients.isin(reason.index)
    status[hit] = reason.reindex(patients[hit]).to_numpy()
    analysed = (status == "analysed").to_numpy()

    frame = data.frame
    codes = patient_codes(frame["patient"])
    if len(codes) == 0 or codes[-1] + 1 != len(patients):
        raise AllianceDataError("Internal error: data.frame and data.patients disagree.")
    is_rated = frame["alliance"].notna().to_numpy()
    n_sessions = pd.Series(np.bincount(codes, weights=is_rated, minlength=len(patients)),
                           index=patients).astype("int64")
    ep = episodes
    # repair status may be unknown (<NA>) for self-report / observer episodes
    rep_status = ep["repaired"].astype("boolean")
    repaired = rep_status.fillna(False).astype(bool)
    unrepaired = (~rep_status).fillna(False).astype(bool)
    g = ep.groupby("patient", sort=False)

    def per_patient(mask) -> pd.Series:
        """Number of episodes per input patient for which ``mask`` holds."""
        flags = pd.Series(np.asarray(mask, dtype=bool), index=ep.index)
        return flags.groupby(ep["patient"], sort=False).sum().reindex(patients, fill_value=0)

    n_rup = g.size().reindex(patients, fill_value=0)
    n_rep = per_patient(repaired)
    n_cens = per_patient(ep["censored"].astype(bool)) if "censored" in ep else per_patient(
        np.zeros(len(ep), dtype=bool))
    mean_depth = g["depth"].mean().reindex(patients)
    max_depth = g["depth"].max().reindex(patients)
    first = g["rupture_session"].min().reindex(patients)
    if "sessions_to_repair" in ep:
        str_ = ep["sessions_to_repair"]
    else:
        str_ = ep["repair_session"] - ep["rupture_session"]
    mean_str = str_.where(repaired).groupby(ep["patient"], sort=False).mean().reindex(patients)

    # rank of the first rupture among the patient's rated sessions
    first_by_row = first.to_numpy(dtype="float64")[codes]
    upto = is_rated & (frame["session"].to_numpy(dtype="float64") <= first_by_row)
    rank = np.bincount(codes, weights=upto, minlength=len(patients))
    with np.errstate(invalid="ignore", divide="ignore"):
        phase = pd.Series(np.where(first.notna(), rank / n_sessions.to_numpy(), np.nan),
                          index=patients)

    n_unrep = per_patient(unrepaired)
    n_unknown = n_rup - n_rep - n_unrep
    group = np.where(n_rup.to_numpy() == 0, "no_rupture",
                     np.where(n_unrep.to_numpy() > 0, "unrepaired",
                              np.where(n_unknown.to_numpy() > 0, None, "repaired"))).astype(object)
    analysed_group = analysed & (group != None)  # noqa: E711 - unknown repair: group missing

    def counts(s: pd.Series) -> pd.arrays.IntegerArray:
        """Counts as nullable integers, missing for patients not analysed."""
        return pd.arrays.IntegerArray(s.to_numpy().astype("int64"), mask=~analysed)

    method = pd.NA if label is None else label
    out = pd.DataFrame({
        "patient": patients.to_numpy(),
        "status": status.to_numpy(),
        "method": method,
        "n_sessions": n_sessions.to_numpy().astype("int64"),
        "n_ruptures": counts(n_rup),
        "n_repaired": counts(n_rep),
        "n_unrepaired": counts(n_unrep),
        "n_censored": counts(n_cens),
        "group": pd.Series(np.where(analysed_group, group, None),
                           dtype=object).where(analysed_group, pd.NA),
        "mean_depth": mean_depth.to_numpy(dtype="float64"),
        "max_depth": max_depth.to_numpy(dtype="float64"),
        "first_rupture_session": first.to_numpy(dtype="float64"),
        "first_rupture_phase": phase.to_numpy(dtype="float64"),
        "mean_sessions_to_repair": mean_str.to_numpy(dtype="float64"),
    })
    sources = set(ep["source"].dropna()) if "source" in ep else set()
    source = det.method if det is not None else None
    if source in _REPORTED or sources & set(_REPORTED):
        # self-report / observer sources: repair status unknown, counts by type, intensity
        typ = ep["type"] if "type" in ep else pd.Series(pd.NA, index=ep.index, dtype=object)

        out["n_repair_unknown"] = counts(n_unknown)
        out["n_withdrawal"] = counts(per_patient(typ.isin(["withdrawal", "both"])))
        n_conf = counts(per_patient(typ.isin(["confrontation", "both"])))
        if source == "self-report" or sources == {"self-report"}:
            n_conf = pd.array([pd.NA] * len(patients), dtype="Int64")  # PSQ cannot tell
        out["n_confrontation"] = n_conf
        out["n_type_unknown"] = counts(per_patient(typ.isna()))
        inten = pd.to_numeric(ep["intensity"]).astype("float64") if "intensity" in ep else \
            pd.Series(np.nan, index=ep.index)
        gi = inten.groupby(ep["patient"], sort=False)
        out["mean_intensity"] = gi.mean().reindex(patients).to_numpy(dtype="float64")
        out["max_intensity"] = gi.max().reindex(patients).to_numpy(dtype="float64")
    out["patient"] = out["patient"].astype(patients.dtype)
    if strategies is not None:
        counts_ = strategy_counts(strategies, patients)
        out = pd.concat([out, counts_.drop(columns="patient")], axis=1)
    return out
