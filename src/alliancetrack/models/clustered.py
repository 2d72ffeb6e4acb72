"""Per-patient models with therapist clustering: random-intercept mixed model or OLS.

:func:`fit_clustered` is the fitting step of :func:`~alliancetrack.outcome_model`
and :func:`~alliancetrack.group_contrasts`: ``outcome ~ ... + (1 | therapist)``
with t tests of the chosen df method, OLS when there is no clustering variable,
and a :class:`FewClustersWarning` when there are fewer than :data:`FEW_CLUSTERS`
clusters (tests of therapist-level predictors then rest on few clusters; Luke, 2017).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from alliancetrack.models.lmm import fit_mixed
from alliancetrack.models.results import rename_term as _rename

__all__ = ["FEW_CLUSTERS", "FewClustersWarning", "fit_clustered"]

#: Below this many clusters, outcome models warn that cluster-level tests rest on few clusters.
FEW_CLUSTERS = 20


class FewClustersWarning(UserWarning):
    """An outcome model has fewer than :data:`FEW_CLUSTERS` clusters (therapists)."""



def _ols_coefs(res: Any, alpha: float) -> pd.DataFrame:
    ci = np.asarray(res.conf_int(alpha=alpha))
    return pd.DataFrame(
        {
            "term": [_rename(n) for n in res.model.exog_names],
            "estimate": np.asarray(res.params),
            "se": np.asarray(res.bse),
            "statistic": np.asarray(res.tvalues),
            "p_value": np.asarray(res.pvalues),
            "ci_low": ci[:, 0],
            "ci_high": ci[:, 1],
            "df": float(res.df_resid),
        }
    )


def fit_clustered(
    formula: str,
    data: pd.DataFrame,
    groups: str | None,
    reml: bool,
    alpha: float,
    notes: list[str],
    ddf: str = "satterthwaite",
) -> tuple[str, Any, pd.DataFrame, pd.DataFrame | None]:
    """Mixed model with a random intercept for ``groups``, or OLS without clusters.

    Returns ``(model, fit, coefs, variance)``; appends plain-language notes
    (OLS fallback, few clusters) to ``notes``.
    """
    import statsmodels.formula.api as smf

    if groups is None:
        notes.append("no clustering variable (groups=None): fitted OLS.")
    elif data[groups].nunique() < 2:
        notes.append(
            f"only {data[groups].nunique()} value of {groups!r} among the analysed patients: "
            "fitted OLS (a random intercept needs at least two clusters)."
        )
        groups = None
    if groups is None:
        res = smf.ols(formula, data).fit()
        return "ols", res, _ols_coefs(res, alpha), None
    fit = fit_mixed(formula, data, groups=groups, reml=reml, alpha=alpha, ddf=ddf)
    k = int(data[groups].nunique())
    if k < FEW_CLUSTERS:
        test = (
            "Wald z tests, which are anti-conservative here (too small p-values, too narrow "
            "intervals)"
            if fit.ddf == "wald"
            else f"t tests with {fit.ddf} df (see coefs['df']; a z test would be "
            "anti-conservative)"
        )
        msg = (
            f"only {k} {groups} clusters: tests of {groups}-level predictors rest on {k} "
            f"clusters, not on the {len(data)} patients, and have little power; reported "
            f"with {test}. Treat {groups}-level effects as tentative (Luke, 2017)."
        )
        notes.append(msg)
        warnings.warn(msg, FewClustersWarning, stacklevel=3)
    return "mixed", fit, fit.coefs, fit.variance
