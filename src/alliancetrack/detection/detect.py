"""``detect_episodes``: one entry point for every registered episode detector."""

from __future__ import annotations

from typing import Any

import pandas as pd

# the detector modules register their methods (rules, changepoint, sudden, self-report,
# observer, hmm) in alliancetrack.detection.base.DETECTORS when imported
from alliancetrack.detection import changepoint, hmm, reported, rules, sudden  # noqa: F401
from alliancetrack.detection.base import DETECTORS, Detector, make_detector
from alliancetrack.detection.engines import engine_for
from alliancetrack.detection.rules import DipRecoveryRule
from alliancetrack.reading.alliance import AllianceData, add_session_dates, as_alliance_data

__all__ = ["detect_episodes", "resolve_detector"]


#: The defaults of ``method`` and ``rule``; a default ``rule`` is not an option given (so
#: ``method="changepoint"`` with the default rule is not refused as inapplicable).
_METHOD = "rules"
_RULE = "stiles-2sd"


def resolve_detector(method: str = "rules", rule: str | Detector = "stiles-2sd",
                     **options: Any) -> Detector:
    """The detector ``detect_episodes(data, method=, rule=, **options)`` runs.

    Every option is checked against the method's detector: unknown and
    inapplicable options (``method="changepoint", rule="rci"``) raise
    :class:`alliancetrack.OptionError` naming the option and listing the
    valid ones.  ``rule`` may also be any detector object; its method is
    then used.

    Examples
    --------
    >>> from alliancetrack.detection.detect import resolve_detector
    >>> resolve_detector(rule="strauss-1sd", repair_window=1).label
    'rules:strauss-1sd[repair_window=1]'
    >>> resolve_detector("changepoint", min_shift=1.5).label
    'changepoint:l2[min_shift=1.5]'
    """
    if isinstance(rule, Detector) and method == _METHOD:
        method = rule.method
    if method not in DETECTORS:
        raise ValueError(f"Unknown method {method!r}; choose one of {tuple(DETECTORS)}.")
    default_rule = rule is None or (isinstance(rule, str) and rule == _RULE)
    return make_detector(method, None if default_rule else rule, **options)


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
    method : {"rules", "changepoint", "sudden", "self-report", "observer", ...}
        Any registered detector (:data:`alliancetrack.DETECTORS`).
        ``"rules"``: a dip-and-recovery rule (:class:`alliancetrack.DipRecoveryRule`,
        see :mod:`alliancetrack.detection.rules` for the exact semantics).
        ``"changepoint"``: change-point detection with ``ruptures``
        (:class:`alliancetrack.ChangepointDetector`).  ``"sudden"``: sudden
        changes (Tang & DeRubeis 1999; :class:`alliancetrack.SuddenChangeDetector`),
        a sudden drop being a rupture and its reversal the repair.
        ``"self-report"`` (PSQ) and ``"observer"`` (3RS): within-session
        ruptures reported or coded (:class:`alliancetrack.SelfReportDetector`,
        :class:`alliancetrack.ObserverDetector`).  ``"hmm"``: a cohort hidden
        Markov model with rupture probabilities
        (:class:`alliancetrack.HMMDetector`).
    rule : str or Detector
        With ``method="rules"``: a preset name from
        :data:`alliancetrack.PRESETS` or a rule object.  Any detector object
        is accepted (its method is used); with other methods a preset name is
        an error.
    **options
        Fields of the method's detector to set (for rules: fields of the rule
        to override, e.g. ``threshold=1.5, repair_window=3``; for change
        points ``penalty``, ``model``, ``min_size``, ...; for the self-report
        and observer methods their cutoffs ``tension_cutoff``,
        ``significance_cutoff``, ...).  An option the detector does not take
        raises :class:`alliancetrack.OptionError` (a ``ValueError``) naming it
        and listing the valid ones.  A Dask DataFrame ``data`` is processed
        out of core and gives a Dask DataFrame; see
        :func:`alliancetrack.scaling.dask_engine.detect_episodes_dask` for its
        options.

    Returns
    -------
    pandas.DataFrame
        One row per episode, columns :data:`alliancetrack.EPISODE_COLUMNS`:
        ``patient, episode, method, source, type, intensity,
        rupture_session, nadir_session, nadir_level, pre_level, depth,
        repair_session, repaired, censored, sessions_to_repair``.  ``method``
        holds the detector's label, which names every non-default
        parameter (``"rules:strauss-1sd[repair_window=1]"``) and turns back
        into the detector with :func:`alliancetrack.detector_from_label`, so
        the table still says how it was made after a CSV or Parquet round
        trip.  Patients that were not analysed are re-derived from the data
        and the label by :func:`alliancetrack.episode_predictors`, which puts
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
    >>> at.detect_episodes(df, rule="strauss-1sd", repair_window=1)["method"].tolist()
    ['rules:strauss-1sd[repair_window=1]']
    """
    engine = engine_for(data)
    if engine is not None:  # e.g. Dask: alliancetrack.scaling.dask_engine
        kw = dict(options)
        if not (isinstance(rule, str) and rule == _RULE):
            kw["rule"] = rule
        return engine.detect_episodes(data, method=str(method), **kw)
    detector = resolve_detector(method, rule, **options)
    if isinstance(data, pd.DataFrame) and detector.method not in ("self-report", "observer"):
        data = as_alliance_data(data)
    episodes = detector.detect(data)
    if isinstance(data, AllianceData):  # dated sessions: the rupture session's date
        episodes = add_session_dates(episodes, data)
    # a hint for an episode table without rows, which cannot name its method in a column;
    # episode_predictors never relies on it when the table has rows
    episodes.attrs["method"] = detector.label
    return episodes
