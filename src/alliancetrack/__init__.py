"""alliancetrack: therapeutic-alliance rupture-repair episodes from repeated alliance ratings.

>>> import alliancetrack as at
>>> sorted(at.SCALES)[:3]
['arm', 'arm-12', 'calpas']
"""

from . import datasets
from .agreement import source_agreement
from .compare import EpisodeComparison, compare_episodes
from .data import AllianceData, as_alliance_data, read_alliance
from .detect import detect_episodes
from .episode_table import EPISODE_COLUMNS
from .errors import AllianceDataError
from .mixed import ConvergenceWarning, MixedResult, SingularFitWarning, fit_mixed
from .outcome import DroppedPatientsWarning, fit_gee_logistic, group_contrasts, outcome_model
from .plots import plot_coefficients, plot_cohort, plot_episode_summary, plot_trajectories
from .predictors import episode_predictors
from .report import write_report
from .reported import ObserverData, PSQData, read_3rs, read_psq
from .rules import PRESETS, DipRecoveryRule
from .source_plots import plot_source_agreement, plot_sources_timeline
from .scales import SCALES, Scale
from .session_level import lag_within, split_within_between
from .simulate import SimulatedCohort, simulate_cohort
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

__version__ = "0.1.0"

__all__ = [
    "AllianceData",
    "AllianceDataError",
    "ConvergenceWarning",
    "MixedResult",
    "SingularFitWarning",
    "DipRecoveryRule",
    "EPISODE_COLUMNS",
    "PRESETS",
    "SCALES",
    "Scale",
    "SimulatedCohort",
    "datasets",
    "simulate_cohort",
    "evaluate_detection",
    "power_analysis",
    "rupture_definitions",
    "sensitivity_analysis",
    "validation_study",
    "plot_power",
    "plot_specification_curve",
    "plot_validation",
    "as_alliance_data",
    "compare_episodes",
    "source_agreement",
    "EpisodeComparison",
    "detect_episodes",
    "episode_predictors",
    "fit_mixed",
    "DroppedPatientsWarning",
    "fit_gee_logistic",
    "group_contrasts",
    "lag_within",
    "outcome_model",
    "plot_coefficients",
    "plot_cohort",
    "plot_episode_summary",
    "plot_trajectories",
    "plot_source_agreement",
    "plot_sources_timeline",
    "split_within_between",
    "read_alliance",
    "read_psq",
    "read_3rs",
    "PSQData",
    "ObserverData",
    "write_report",
    "describe_sudden_changes",
    "reliable_change_cutoff",
    "select_changes",
    "sudden_changes",
]
