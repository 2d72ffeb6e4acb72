"""Linear mixed models matching lme4: formula terms, likelihood engines, optimiser, inference.

Modules: :mod:`.design` (fixed-effects design and data preparation),
:mod:`.likelihood` (lme4's profiled deviance: one grouping factor vectorised over
groups, and several nested or crossed terms by a blocked Cholesky),
:mod:`.optimizer` (robust optimisation and its checks), :mod:`.statsmodels_bridge`
(the only module touching statsmodels internals), :mod:`.inference`
(Satterthwaite and Kenward-Roger degrees of freedom), :mod:`.results`
(:class:`MixedResult`) and :mod:`.fit` (:func:`fit_mixed`).
"""

from alliancetrack.models.lmm.fit import fit_mixed
from alliancetrack.models.lmm.optimizer import ConvergenceWarning, SingularFitWarning
from alliancetrack.models.lmm.results import MixedResult

__all__ = ["ConvergenceWarning", "MixedResult", "SingularFitWarning", "fit_mixed"]
