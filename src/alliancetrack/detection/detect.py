"""``detect_episodes``: one entry point for every episode detector."""

from __future__ import annotations

import pandas as pd

from alliancetrack.detection.episodes import attach, finalize_episodes
from alliancetrack.detection.rule_engine import detect_rule_episodes
from alliancetrack.detection.rules import DipRecoveryRule, get_rule
from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.alliance import AllianceData, as_alliance_data
from alliancetrack.scaling.dask_engine import detect_episodes_dask, is_dask_dataframe

__all__ = ["detect_episodes"]

_METHODS = ("rules", "changepoint", "hmm", "self-report", "observer")


def _single_rater(data: AllianceData) -> None:
    if len(data.raters) > 1:
        raise AllianceDataError(
            f"The data hold ratings from several raters {data.raters}; episodes are detected "
            "in one perspective at a time. Use data.select_rater('patient') (or another rater) "
            "first."
        )


def _rule_exclusions(data: AllianceData, rule: DipRecoveryRule) -> pd.DataFrame:
    """Patients analysed by ``data`` but with fewer rated sessions than the rule needs."""
    if rule.min_timepoints <= data.min_timepoints:
        return data.excluded.iloc[0:0]
    rated = data.analysed_frame.groupby("patient", sort=False)["alliance"].count()
    few = rated[rated < rule.min_timepoints]
    return pd.DataFrame({
        "patient": few.index.to_numpy(),
        "reason": [f"fewer than {rule.min_timepoints} rated sessions ({n} rated; rule "
                   f"{rule.name!r})" for n in few.to_numpy()],
    })


def detect_episodes(data, method: str = "rules", rule: str | DipRecoveryRule = "stiles-2sd",
                    **options) -> pd.DataFrame:
    """Detect rupture-repair episodes.

    Parameters
    ----------
    data : AllianceData, DataFrame, PSQData or ObserverData
        From :func:`alliancetrack.read_alliance`, or a long DataFrame with
        columns ``patient, session, alliance``; for the self-report and
        observer methods, from :func:`alliancetrack.read_psq` /
        :func:`alliancetrack.read_3rs`.
    method : {"rules", "changepoint", "hmm", "self-report", "observer"}
        ``"rules"``: a dip-and-recovery rule (see :mod:`alliancetrack.detection.rules`
        for the exact semantics).  ``"changepoint"``: change-point detection
        with ``ruptures`` (see :mod:`alliancetrack.detection.changepoint`).  ``"hmm"``:
        a cohort hidden Markov model with rupture probabilities (see
        :class:`alliancetrack.detection.hmm.HMMDetector`; ``options`` are its
        parameters).
        ``"self-report"`` (PSQ) and ``"observer"`` (3RS): within-session
        ruptures reported or coded (see :mod:`alliancetrack.reading.reported`).
    rule : str or DipRecoveryRule
        With ``method="rules"``: a preset name from
        :data:`alliancetrack.PRESETS` or a rule object.
    **options
        With ``method="rules"``: fields of the rule to override
        (e.g. ``threshold=1.5, repair_window=3``).  With
        ``method="changepoint"``: options of the change-point detector
        (``penalty``, ``model``, ``min_size``, ...).  With the self-report
        and observer methods: their cutoffs (``tension_cutoff``,
        ``significance_cutoff``, ...).  A Dask DataFrame
        ``data`` is processed out of core and gives a Dask DataFrame; see
        :func:`alliancetrack.scaling.dask_engine.detect_episodes_dask` for its options.

    Returns
    -------
    pandas.DataFrame
        One row per episode, columns :data:`alliancetrack.EPISODE_COLUMNS`:
        ``patient, episode, method, source, type, intensity,
        rupture_session, nadir_session, nadir_level, pre_level, depth,
        repair_session, repaired, censored, sessions_to_repair``.  Patients
        that were not analysed are listed in ``result.attrs["excluded"]``
        (``patient, reason``); :func:`alliancetrack.episode_predictors` puts
        every patient in its output.

    Examples
    --------
    >>> import pandas as pd, alliancetrack as at
    >>> df = pd.DataFrame({"patient": 1, "session": range(1, 9),
    ...                    "alliance": [4.0, 4.1, 4.0, 2.5, 3.0, 4.1, 4.0, 4.2]})
    >>> ep = at.detect_episodes(df, rule="strauss-1sd")
    >>> ep[["patient", "rupture_session", "nadir_level", "pre_level", "repair_session",
    ...     "repaired", "sessions_to_repair"]]
       patient  rupture_session  nadir_level  pre_level  repair_session  repaired  sessions_to_repair
    0        1              4.0          2.5        4.0             6.0      True                 2.0
    """
    if method not in _METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {_METHODS}.")
    if is_dask_dataframe(data):  # out of core / distributed: alliancetrack.scaling.dask_engine
        return detect_episodes_dask(data, method=method, rule=rule, **options)
    if method in ("self-report", "observer"):
        from alliancetrack.reading.reported import detect_reported_episodes  # noqa: PLC0415

        return detect_reported_episodes(data, method=method, **options)
    data = as_alliance_data(data)
    _single_rater(data)
    if method == "hmm":  # cohort hidden Markov model (alliancetrack.detection.hmm)
        from alliancetrack.detection.hmm import HMMDetector  # noqa: PLC0415

        return HMMDetector(**options).detect(data)
    if method == "changepoint":
        if "rule" in options:
            raise TypeError("rule= applies to method='rules' only.")
        from alliancetrack.detection.changepoint import detect_changepoint  # noqa: PLC0415

        episodes = detect_changepoint(data, **options)
        excluded = data.excluded
    else:
        sample_sd = options.pop("sample_sd", None)  # cohort-wide, from the Dask engine
        rule_obj = get_rule(rule, **options)
        hib = data.higher_is_better if rule_obj.higher_is_better is None else \
            rule_obj.higher_is_better
        extra = _rule_exclusions(data, rule_obj)
        frame = data.analysed_frame
        if len(extra):
            frame = frame.loc[~frame["patient"].isin(extra["patient"])]
        raw = detect_rule_episodes(frame, rule_obj, data.scale, higher_is_better=hib,
                                   sample_sd=sample_sd)
        episodes = finalize_episodes(raw, patient_dtype=data.patients.dtype)
        excluded = pd.concat([data.excluded, extra], ignore_index=True) if len(extra) else \
            data.excluded
        episodes.attrs["rule"] = repr(rule_obj)
    episodes.attrs["excluded"] = attach(excluded.reset_index(drop=True))
    return episodes
