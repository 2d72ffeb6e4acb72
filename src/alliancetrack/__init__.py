"""alliancetrack: therapeutic-alliance rupture-repair episodes from repeated alliance ratings.

>>> import alliancetrack as at
>>> sorted(at.SCALES)[:3]
['arm', 'arm-12', 'calpas']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from . import datasets
from .data import AllianceData, as_alliance_data, read_alliance
from .detect import detect_episodes
from .episode_table import EPISODE_COLUMNS
from .errors import AllianceDataError
from .predictors import episode_predictors
from .rules import PRESETS, DipRecoveryRule
from .scales import SCALES, Scale
from .simulate import SCENARIOS, SimulatedCohort, simulate_cohort

__version__ = "0.1.0"

# Modules that pull in statsmodels, scipy or plotnine are imported on first use, so that
# `import alliancetrack` and the command line start quickly.
_LAZY: dict[str, tuple[str, ...]] = {
    "agreement": ("source_agreement",),
    "compare": ("EpisodeComparison", "compare_episodes"),
    "detection.hmm": ("HMMDetector", "rupture_probabilities"),
    "mixed": ("ConvergenceWarning", "MixedResult", "SingularFitWarning", "fit_mixed"),
    "outcome": ("DroppedPatientsWarning", "fit_gee_logistic", "group_contrasts",
                "outcome_model"),
    "plots": ("plot_coefficients", "plot_cohort", "plot_episode_summary", "plot_trajectories"),
    "report": ("write_report",),
    "reported": ("ObserverData", "PSQData", "read_3rs", "read_psq"),
    "session_level": ("lag_within", "split_within_between"),
    "source_plots": ("plot_source_agreement", "plot_sources_timeline"),
    "sudden": ("describe_sudden_changes", "reliable_change_cutoff", "select_changes",
               "sudden_changes"),
    "validation": ("evaluate_detection", "power_analysis", "rupture_definitions",
                   "sensitivity_analysis", "validation_study"),
    "validation_plots": ("plot_power", "plot_specification_curve", "plot_validation"),
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
    from .agreement import source_agreement
    from .compare import EpisodeComparison, compare_episodes
    from .detection.hmm import HMMDetector, rupture_probabilities
    from .mixed import ConvergenceWarning, MixedResult, SingularFitWarning, fit_mixed
    from .outcome import DroppedPatientsWarning, fit_gee_logistic, group_contrasts, outcome_model
    from .plots import plot_coefficients, plot_cohort, plot_episode_summary, plot_trajectories
    from .report import write_report
    from .reported import ObserverData, PSQData, read_3rs, read_psq
    from .session_level import lag_within, split_within_between
    from .source_plots import plot_source_agreement, plot_sources_timeline
    from .sudden import (
        describe_sudden_changes,
        reliable_change_cutoff,
        select_changes,
        sudden_changes,
    )
    from .validation import (
        evaluate_detection,
        power_analysis,
        rupture_definitions,
        sensitivity_analysis,
        validation_study,
    )
    from .validation_plots import plot_power, plot_specification_curve, plot_validation

__all__ = [
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
    "HMMDetector",
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
    "rupture_probabilities",
    "Scale",
    "SCALES",
    "SCENARIOS",
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
