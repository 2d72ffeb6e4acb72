"""alliancetrack: therapeutic-alliance rupture-repair episodes from repeated alliance ratings.

>>> import alliancetrack as at
>>> sorted(at.SCALES)[:3]
['arm', 'arm-12', 'calpas']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from alliancetrack import datasets
from alliancetrack.detection.detect import detect_episodes
from alliancetrack.detection.episodes import EPISODE_COLUMNS
from alliancetrack.detection.rules import PRESETS, DipRecoveryRule
from alliancetrack.errors import AllianceDataError
from alliancetrack.predictors import episode_predictors
from alliancetrack.reading.alliance import AllianceData, as_alliance_data, read_alliance
from alliancetrack.reading.scales import SCALES, Scale
from alliancetrack.reading.strategies import STRATEGIES, Strategy
from alliancetrack.simulation.cohort import SimulatedCohort, simulate_cohort

__version__ = "0.1.0"

# Modules that pull in statsmodels, scipy or plotnine are imported on first use, so that
# `import alliancetrack` and the command line start quickly.
_LAZY: dict[str, tuple[str, ...]] = {
    "agreement.sources": ("source_agreement",),
    "agreement.compare": ("EpisodeComparison", "compare_episodes"),
    "models.lmm": ("ConvergenceWarning", "MixedResult", "SingularFitWarning", "fit_mixed"),
    "models.formula": ("MixedFormula", "RandomTerm", "parse_mixed_formula"),
    "models.random_effects": ("RandomEffects", "build_random_effects"),
    "models.results": ("ModelResult", "Summary"),
    "models.glmm": ("GLMMResult", "fit_glmm"),
    "models.glmm.helpers": ("compare_count_models", "overdispersion", "repair_table",
                            "rupture_counts"),
    "models.outcome": ("DroppedPatientsWarning", "FewClustersWarning", "GEEResult",
                       "OutcomeResult", "fit_gee_logistic", "group_contrasts", "outcome_model"),
    "plotting.trajectories": ("plot_coefficients", "plot_cohort", "plot_episode_summary", "plot_trajectories"),
    "report.html": ("write_report",),
    "reading.reported": ("ObserverData", "PSQData", "read_3rs", "read_psq"),
    "models.session_level": ("lag_within", "split_within_between"),
    "plotting.sources": ("plot_source_agreement", "plot_sources_timeline"),
    "detection.sudden": ("CHANGE_COLUMNS", "INTERVAL_COLUMNS", "describe_sudden_changes", "reliable_change_cutoff", "select_changes",
               "sudden_changes"),
    "simulation.studies": ("EVALUATION_COLUMNS", "evaluate_detection", "power_analysis", "rupture_definitions",
                   "sensitivity_analysis", "validation_study"),
    "plotting.validation": ("plot_power", "plot_specification_curve", "plot_validation"),
    "strategy_links": ("link_strategies", "repair_rates"),
    "models.strategies": ("SeparationWarning", "StrategyEffects", "strategy_effects"),
    "plotting.strategies": ("plot_strategy_repair",),
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
    from alliancetrack.agreement.sources import source_agreement
    from alliancetrack.detection.sudden import (
        CHANGE_COLUMNS,
        INTERVAL_COLUMNS,
        describe_sudden_changes,
        reliable_change_cutoff,
        select_changes,
        sudden_changes,
    )
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
    from alliancetrack.simulation.studies import (
        EVALUATION_COLUMNS,
        evaluate_detection,
        power_analysis,
        rupture_definitions,
        sensitivity_analysis,
        validation_study,
    )
    from alliancetrack.strategy_links import link_strategies, repair_rates

__all__ = [
    "Summary",
    "ModelResult",
    "build_random_effects",
    "RandomEffects",
    "parse_mixed_formula",
    "RandomTerm",
    "MixedFormula",
    "OutcomeResult",
    "GEEResult",
    "FewClustersWarning",
    "GLMMResult",
    "fit_glmm",
    "compare_count_models",
    "overdispersion",
    "repair_table",
    "rupture_counts",
    "CHANGE_COLUMNS",
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
    "link_strategies",
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
    "plot_strategy_repair",
    "plot_trajectories",
    "plot_validation",
    "power_analysis",
    "PRESETS",
    "PSQData",
    "read_3rs",
    "read_alliance",
    "read_psq",
    "repair_rates",
    "reliable_change_cutoff",
    "rupture_definitions",
    "Scale",
    "SCALES",
    "select_changes",
    "SeparationWarning",
    "sensitivity_analysis",
    "Strategy",
    "STRATEGIES",
    "simulate_cohort",
    "SimulatedCohort",
    "SingularFitWarning",
    "source_agreement",
    "split_within_between",
    "strategy_effects",
    "StrategyEffects",
    "sudden_changes",
    "validation_study",
    "write_report",
]
