"""alliancetrack: therapeutic-alliance rupture-repair episodes from repeated alliance ratings.

>>> import alliancetrack as at
>>> sorted(at.SCALES)[:3]
['arm', 'arm-12', 'calpas']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from alliancetrack import datasets
from alliancetrack._version import __version__
from alliancetrack.detection.base import DETECTORS, Detector, detector_from_label
from alliancetrack.detection.changepoint import ChangepointDetector
from alliancetrack.detection.detect import detect_episodes
from alliancetrack.detection.episodes import EPISODE_COLUMNS
from alliancetrack.detection.reported import ObserverDetector, SelfReportDetector
from alliancetrack.detection.rules import PRESETS, DipRecoveryRule
from alliancetrack.detection.sudden import SuddenChangeDetector
from alliancetrack.errors import AllianceDataError, OptionError
from alliancetrack.predictors import PREDICTOR_COLUMNS, episode_predictors
from alliancetrack.reading.alliance import AllianceData, as_alliance_data, read_alliance
from alliancetrack.reading.scales import SCALES, Scale

# registers the Dask engine, through which detect_episodes and episode_predictors accept
# Dask DataFrames (Dask itself is imported only when such data arrive)
from alliancetrack.scaling import dask_engine as _dask_engine  # noqa: F401
from alliancetrack.simulation.cohort import SimulatedCohort, simulate_cohort

# Modules that pull in statsmodels, scipy or plotnine are imported on first use, so that
# `import alliancetrack` and the command line start quickly.
_LAZY: dict[str, tuple[str, ...]] = {
    "agreement.sources": ("AGREEMENT_COLUMNS", "source_agreement"),
    "agreement.compare": ("EpisodeComparison", "compare_episodes"),
    "models.mixed": ("ConvergenceWarning", "MixedResult", "SingularFitWarning", "fit_mixed"),
    "models.outcome": ("DroppedPatientsWarning", "fit_gee_logistic", "group_contrasts",
                "outcome_model"),
    "plotting.trajectories": ("plot_coefficients", "plot_cohort", "plot_episode_summary", "plot_trajectories"),
    "report.html": ("write_report",),
    "reading.reported": ("ObserverData", "PSQData", "read_3rs", "read_psq"),
    "models.session_level": ("lag_within", "split_within_between"),
    "plotting.sources": ("plot_source_agreement", "plot_sources_timeline"),
    "detection.sudden": ("CHANGE_COLUMNS", "INTERVAL_COLUMNS", "reliable_change_cutoff",
                         "sudden_changes"),
    "detection.sudden_summary": ("describe_sudden_changes", "select_changes"),
    "simulation.studies": ("EVALUATION_COLUMNS", "PowerResult", "SensitivityResult",
                           "ValidationResult", "evaluate_detection", "power_analysis",
                           "rupture_definitions", "sensitivity_analysis", "validation_study"),
    "plotting.validation": ("plot_power", "plot_specification_curve", "plot_validation"),
}
_LAZY_NAMES = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str):
    module = _LAZY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'alliancetrack' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_NAMES))


if TYPE_CHECKING:  # static analysers see the lazy names as ordinary imports
    from alliancetrack.agreement.compare import EpisodeComparison, compare_episodes
    from alliancetrack.agreement.sources import AGREEMENT_COLUMNS, source_agreement
    from alliancetrack.detection.sudden import (
        CHANGE_COLUMNS,
        INTERVAL_COLUMNS,
        reliable_change_cutoff,
        sudden_changes,
    )
    from alliancetrack.detection.sudden_summary import describe_sudden_changes, select_changes
    from alliancetrack.models.mixed import (
        ConvergenceWarning,
        MixedResult,
        SingularFitWarning,
        fit_mixed,
    )
    from alliancetrack.models.outcome import (
        DroppedPatientsWarning,
        fit_gee_logistic,
        group_contrasts,
        outcome_model,
    )
    from alliancetrack.models.session_level import lag_within, split_within_between
    from alliancetrack.plotting.sources import plot_source_agreement, plot_sources_timeline
    from alliancetrack.plotting.trajectories import (
        plot_coefficients,
        plot_cohort,
        plot_episode_summary,
        plot_trajectories,
    )
    from alliancetrack.plotting.validation import (
        plot_power,
        plot_specification_curve,
        plot_validation,
    )
    from alliancetrack.reading.reported import ObserverData, PSQData, read_3rs, read_psq
    from alliancetrack.report.html import write_report
    from alliancetrack.simulation.studies import (
        EVALUATION_COLUMNS,
        PowerResult,
        SensitivityResult,
        ValidationResult,
        evaluate_detection,
        power_analysis,
        rupture_definitions,
        sensitivity_analysis,
        validation_study,
    )

__all__ = [
    "__version__",
    "AGREEMENT_COLUMNS",
    "PowerResult",
    "SensitivityResult",
    "ValidationResult",
    "CHANGE_COLUMNS",
    "ChangepointDetector",
    "DETECTORS",
    "Detector",
    "detector_from_label",
    "ObserverDetector",
    "OptionError",
    "PREDICTOR_COLUMNS",
    "SelfReportDetector",
    "SuddenChangeDetector",
    "EVALUATION_COLUMNS",
    "INTERVAL_COLUMNS",
    "AllianceData",
    "AllianceDataError",
    "as_alliance_data",
    "compare_episodes",
    "ConvergenceWarning",
    "datasets",
    "describe_sudden_changes",
    "detect_episodes",
    "DipRecoveryRule",
    "DroppedPatientsWarning",
    "EPISODE_COLUMNS",
    "episode_predictors",
    "EpisodeComparison",
    "evaluate_detection",
    "fit_gee_logistic",
    "fit_mixed",
    "group_contrasts",
    "lag_within",
    "MixedResult",
    "ObserverData",
    "outcome_model",
    "plot_coefficients",
    "plot_cohort",
    "plot_episode_summary",
    "plot_power",
    "plot_source_agreement",
    "plot_sources_timeline",
    "plot_specification_curve",
    "plot_trajectories",
    "plot_validation",
    "power_analysis",
    "PRESETS",
    "PSQData",
    "read_3rs",
    "read_alliance",
    "read_psq",
    "reliable_change_cutoff",
    "rupture_definitions",
    "Scale",
    "SCALES",
    "select_changes",
    "sensitivity_analysis",
    "simulate_cohort",
    "SimulatedCohort",
    "SingularFitWarning",
    "source_agreement",
    "split_within_between",
    "sudden_changes",
    "validation_study",
    "write_report",
]
