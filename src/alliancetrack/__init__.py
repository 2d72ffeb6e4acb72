"""alliancetrack: therapeutic-alliance rupture-repair episodes from repeated alliance ratings.

Everything public is importable from here. The reading, detection and predictor functions are
imported at once; modules that pull in statsmodels, scipy or plotnine (models, plots, report,
simulation studies) are imported on first use, so that ``import alliancetrack`` and the command
line start quickly.

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
from alliancetrack.reading.strategies import STRATEGIES, Strategy

# registers the Dask engine, through which detect_episodes and episode_predictors accept
# Dask DataFrames (Dask itself is imported only when such data arrive)
from alliancetrack.scaling import dask_engine as _dask_engine  # noqa: F401
from alliancetrack.simulation.cohort import SCENARIOS, SimulatedCohort, simulate_cohort

_EAGER = (
    "__version__", "AllianceData", "AllianceDataError", "as_alliance_data",
    "ChangepointDetector", "datasets", "detect_episodes", "Detector", "detector_from_label",
    "DETECTORS", "DipRecoveryRule", "EPISODE_COLUMNS", "episode_predictors",
    "ObserverDetector", "OptionError", "PREDICTOR_COLUMNS", "PRESETS", "read_alliance",
    "Scale", "SCALES", "SelfReportDetector", "simulate_cohort", "SimulatedCohort",
    "SCENARIOS", "Strategy", "STRATEGIES", "SuddenChangeDetector",
)

# module (relative to the package) -> the public names it provides, imported on first use.
_LAZY: dict[str, tuple[str, ...]] = {
    "agreement.compare": ("EpisodeComparison", "compare_episodes"),
    "agreement.sources": ("AGREEMENT_COLUMNS", "source_agreement"),
    "detection.hmm": ("HMMDetector", "expected_ruptures", "rupture_probabilities"),
    "detection.strategies": ("link_strategies", "repair_rates"),
    "detection.sudden": ("CHANGE_COLUMNS", "INTERVAL_COLUMNS", "reliable_change_cutoff",
                         "sudden_changes"),
    "detection.sudden_summary": ("describe_sudden_changes", "select_changes"),
    "models.formula": ("MixedFormula", "RandomTerm", "parse_mixed_formula"),
    "models.glmm": ("GLMMResult", "fit_glmm"),
    "models.glmm.helpers": ("compare_count_models", "overdispersion", "repair_table",
                            "rupture_counts"),
    "models.lmm": ("ConvergenceWarning", "MixedResult", "SingularFitWarning", "fit_mixed"),
    "models.outcome": ("DroppedPatientsWarning", "FewClustersWarning", "GEEResult",
                       "OutcomeResult", "fit_gee_logistic", "group_contrasts", "outcome_model"),
    "models.random_effects": ("RandomEffects", "build_random_effects"),
    "models.results": ("ModelResult", "Summary"),
    "models.session_level": ("lag_within", "split_within_between"),
    "plotting.sources": ("plot_source_agreement", "plot_sources_timeline"),
    "plotting.trajectories": ("plot_coefficients", "plot_cohort", "plot_episode_summary",
                              "plot_trajectories"),
    "plotting.validation": ("plot_power", "plot_specification_curve", "plot_validation"),
    "models.strategies": ("SeparationWarning", "StrategyEffects", "strategy_effects"),
    "plotting.strategies": ("plot_strategy_repair",),
    "reading.reported": ("ObserverData", "PSQData", "read_3rs", "read_psq"),
    "report.html": ("write_report",),
    "simulation.outcome_studies": ("PowerResult", "SensitivityResult", "power_analysis",
                                   "rupture_definitions", "sensitivity_analysis"),
    "simulation.studies": ("EVALUATION_COLUMNS", "ValidationResult", "evaluate_detection",
                           "validation_study"),
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


if TYPE_CHECKING:  # static analysers and the API docs see the lazy names as imports
    from alliancetrack.agreement.compare import EpisodeComparison, compare_episodes
    from alliancetrack.agreement.sources import AGREEMENT_COLUMNS, source_agreement
    from alliancetrack.detection.hmm import HMMDetector, expected_ruptures, rupture_probabilities
    from alliancetrack.detection.strategies import link_strategies, repair_rates
    from alliancetrack.detection.sudden import (
        CHANGE_COLUMNS,
        INTERVAL_COLUMNS,
        reliable_change_cutoff,
        sudden_changes,
    )
    from alliancetrack.detection.sudden_summary import describe_sudden_changes, select_changes
    from alliancetrack.models.formula import MixedFormula, RandomTerm, parse_mixed_formula
    from alliancetrack.models.glmm import GLMMResult, fit_glmm
    from alliancetrack.models.glmm.helpers import (
        compare_count_models,
        overdispersion,
        repair_table,
        rupture_counts,
    )
    from alliancetrack.models.lmm import (
        ConvergenceWarning,
        MixedResult,
        SingularFitWarning,
        fit_mixed,
    )
    from alliancetrack.models.outcome import (
        DroppedPatientsWarning,
        FewClustersWarning,
        GEEResult,
        OutcomeResult,
        fit_gee_logistic,
        group_contrasts,
        outcome_model,
    )
    from alliancetrack.models.random_effects import RandomEffects, build_random_effects
    from alliancetrack.models.results import ModelResult, Summary
    from alliancetrack.models.session_level import lag_within, split_within_between
    from alliancetrack.models.strategies import (
        SeparationWarning,
        StrategyEffects,
        strategy_effects,
    )
    from alliancetrack.plotting.sources import plot_source_agreement, plot_sources_timeline
    from alliancetrack.plotting.strategies import plot_strategy_repair
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
    from alliancetrack.simulation.outcome_studies import (
        PowerResult,
        SensitivityResult,
        power_analysis,
        rupture_definitions,
        sensitivity_analysis,
    )
    from alliancetrack.simulation.studies import (
        EVALUATION_COLUMNS,
        ValidationResult,
        evaluate_detection,
        validation_study,
    )

__all__ = sorted({*_EAGER, *_LAZY_NAMES}, key=str.lower)
