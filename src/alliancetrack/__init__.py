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

from alliancetrack import datasets
from alliancetrack.detection.detect import detect_episodes
from alliancetrack.detection.episodes import EPISODE_COLUMNS
from alliancetrack.detection.rules import PRESETS, DipRecoveryRule
from alliancetrack.errors import AllianceDataError
from alliancetrack.predictors import episode_predictors
from alliancetrack.reading.alliance import AllianceData, as_alliance_data, read_alliance
from alliancetrack.reading.scales import SCALES, Scale
from alliancetrack.reading.strategies import STRATEGIES, Strategy
from alliancetrack.simulation.cohort import SCENARIOS, SimulatedCohort, simulate_cohort

__version__ = "0.1.0"

_EAGER = (
    "AllianceData", "AllianceDataError", "as_alliance_data", "datasets", "detect_episodes",
    "DipRecoveryRule", "EPISODE_COLUMNS", "episode_predictors", "PRESETS", "read_alliance",
    "Scale", "SCALES", "SCENARIOS", "simulate_cohort", "SimulatedCohort", "Strategy", "STRATEGIES",
)

# module (relative to the package) -> the public names it provides, imported on first use.
_LAZY: dict[str, tuple[str, ...]] = {
    "agreement.compare": ("EpisodeComparison", "compare_episodes"),
    "agreement.sources": ("source_agreement",),
    "detection.hmm": ("HMMDetector", "rupture_probabilities"),
    "detection.sudden": ("CHANGE_COLUMNS", "INTERVAL_COLUMNS", "describe_sudden_changes",
                         "reliable_change_cutoff", "select_changes", "sudden_changes"),
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
    "simulation.studies": ("EVALUATION_COLUMNS", "evaluate_detection", "power_analysis",
                           "rupture_definitions", "sensitivity_analysis", "validation_study"),
    "strategy_links": ("link_strategies", "repair_rates"),
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


__all__ = sorted({*_EAGER, *_LAZY_NAMES}, key=str.lower)
