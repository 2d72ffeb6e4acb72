"""Per-patient predictors from an episode table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from alliancetrack.detection.episodes import attached
from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.alliance import as_alliance_data, patient_codes
from alliancetrack.scaling.dask_engine import episode_predictors_dask, is_dask_dataframe
from alliancetrack.strategy_links import strategy_counts

__all__ = ["episode_predictors", "PREDICTOR_COLUMNS"]

#: Columns of :func:`episode_predictors`, in order.
PREDICTOR_COLUMNS: tuple[str, ...] = (
    "patient", "status", "method", "n_sessions", "n_ruptures", "n_repaired", "n_unrepaired",
    "n_censored", "group", "mean_depth", "max_depth", "first_rupture_session",
    "first_rupture_phase", "mean_sessions_to_repair",
)

_NEEDED = ("patient", "rupture_session", "repaired", "depth", "method")
_REPORTED = ("self-report", "observer")


def episode_predictors(data, episodes: pd.DataFrame,
                       strategies: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per input patient with episode counts and summaries.

    Parameters
    ----------
    data : AllianceData, PSQData, ObserverData or DataFrame
        The data the episodes were detected in; its ``patients`` define the
        rows of the result.
    episodes : DataFrame
        From :func:`alliancetrack.detect_episodes` (one method).  With a Dask
        DataFrame ``data`` the result is a Dask DataFrame; see
        :func:`alliancetrack.scaling.dask_engine.episode_predictors_dask`.
    strategies : DataFrame, optional
        From :func:`alliancetrack.link_strategies`: adds per-patient
        ``n_strategy_episodes, n_strategies, n_immediate, n_expressive``
        (:func:`alliancetrack.strategy_links.strategy_counts`; missing for a
        patient without an episode in a coded session).

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
    if is_dask_dataframe(data):  # out of core / distributed: alliancetrack.scaling.dask_engine
        if strategies is not None:
            raise ValueError("strategies= is not available with Dask data; compute the "
                             "predictors, then merge strategy_counts(linked, patients).")
        return episode_predictors_dask(data, episodes)
    if hasattr(data, "_coverage_data"):  # PSQData / ObserverData: sessions covered
        data = data._coverage_data(episodes)
    else:
        data = as_alliance_data(data)
    missing = [c for c in _NEEDED if c not in episodes.columns]
    if missing:
        raise AllianceDataError(
            f"The episode table lacks column(s) {missing}; pass the output of "
            "alliancetrack.detect_episodes."
        )
    methods = episodes["method"].dropna().unique().tolist()
    if len(methods) > 1:
        raise AllianceDataError(
            f"The episode table mixes methods {methods}; compute predictors per method, e.g. "
            "episodes[episodes['method'] == ...]."
        )
    ep_ids = pd.Index(episodes["patient"].unique())
    unknown = sorted(ep_ids[~ep_ids.isin(data.patients)].tolist())
    if unknown:
        shown = ", ".join(map(str, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
        raise AllianceDataError(
            f"Episodes name {len(unknown)} patient(s) that are not in the data: {shown}. "
            "Pass the same data the episodes were detected in."
        )
    patients = data.patients
    from_episodes = attached(episodes, "excluded")
    excluded = pd.concat(
        [data.excluded, data.excluded.iloc[0:0] if from_episodes is None else from_episodes],
        ignore_index=True,
    ).drop_duplicates("patient")
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

    method = methods[0] if methods else episodes.attrs.get("method", pd.NA)
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
    source = episodes.attrs.get("source")
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
