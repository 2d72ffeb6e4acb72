"""Compatibility module: the mixed-model code lives in :mod:`alliancetrack.models.lmm`.

Kept so that ``from alliancetrack.models.mixed import fit_mixed`` keeps working.
"""

from alliancetrack.models.lmm import ConvergenceWarning, MixedResult, SingularFitWarning, fit_mixed
from alliancetrack.models.lmm.design import formula_columns as _formula_columns
from alliancetrack.models.lmm.likelihood import BatchProfile as _BatchProfile
from alliancetrack.models.lmm.optimizer import _Attempt, _diagnose, _diagnostics_ok, _run
from alliancetrack.models.lmm.statsmodels_bridge import StatsmodelsProfile as _Profile
from alliancetrack.models.results import coef_table, effect_size_from_t
from alliancetrack.models.results import rename_term as _rename


def wald_table(names, estimates, se, alpha: float = 0.05):
    """Tidy Wald (z) table: ``term, estimate, se, statistic, p_value, ci_low, ci_high``.

    Examples
    --------
    >>> wald_table(["Intercept", "x"], [1.0, 0.5], [0.5, 0.25])[["term", "statistic"]]
              term  statistic
    0  (Intercept)        2.0
    1            x        2.0
    """
    return coef_table(names, estimates, se, None, alpha)


__all__ = [
    "ConvergenceWarning",
    "MixedResult",
    "SingularFitWarning",
    "_Attempt",
    "_BatchProfile",
    "_Profile",
    "_diagnose",
    "_diagnostics_ok",
    "_formula_columns",
    "_rename",
    "_run",
    "effect_size_from_t",
    "fit_mixed",
    "wald_table",
]
