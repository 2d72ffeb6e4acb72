"""The result of :func:`~alliancetrack.fit_mixed`: tables, tests, comparisons, methods text."""

from __future__ import annotations

import importlib.metadata
import math
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy
from scipy import stats

from alliancetrack.errors import AllianceDataError
from alliancetrack.models.results import ModelResult

__all__ = ["DDF_METHODS", "MixedResult", "variance_rows", "variance_rows_terms"]

#: ddf= choices and how they are described in summaries and the methods text
DDF_METHODS = {
    "satterthwaite": "Satterthwaite's approximation (as lmerTest)",
    "kenward-roger": "the Kenward-Roger approximation (as pbkrtest)",
    "residual": "residual degrees of freedom (observations minus fixed effects)",
    "wald": "none (Wald z tests, normal approximation)",
}


def variance_rows(
    groups: str,
    names: Sequence[str],
    cov: np.ndarray,
    vc_names: Sequence[str],
    vcomp: Sequence[float],
    scale: float,
) -> pd.DataFrame:
    """lme4's VarCorr table from the random-effect covariance and residual variance."""
    rows: list[dict[str, Any]] = []
    k_re = len(names)
    for j in range(k_re):
        rows.append(
            {
                "group": groups,
                "term": names[j],
                "term2": None,
                "variance": cov[j, j],
                "sd": math.sqrt(max(cov[j, j], 0.0)),
                "corr": np.nan,
            }
        )
    for j in range(k_re):
        for i in range(j + 1, k_re):
            den = math.sqrt(max(cov[i, i], 0) * max(cov[j, j], 0))
            rows.append(
                {
                    "group": groups,
                    "term": names[j],
                    "term2": names[i],
                    "variance": cov[i, j],
                    "sd": np.nan,
                    "corr": cov[i, j] / den if den > 0 else np.nan,
                }
            )
    for j, n in enumerate(vc_names):
        v = float(vcomp[j])
        rows.append(
            {
                "group": f"{n}:{groups}" if groups else str(n),
                "term": "(Intercept)",
                "term2": None,
                "variance": v,
                "sd": math.sqrt(max(v, 0.0)),
                "corr": np.nan,
            }
        )
    rows.append(
        {
            "group": "Residual",
            "term": None,
            "term2": None,
            "variance": float(scale),
            "sd": math.sqrt(float(scale)),
            "corr": np.nan,
        }
    )
    out = pd.DataFrame(rows, columns=["group", "term", "term2", "variance", "sd", "corr"])
    out["term"] = out["term"].astype(object)
    out["term2"] = out["term2"].astype(object)
    return out


def variance_rows_terms(
    terms: Sequence[Any], covs: Sequence[np.ndarray], scale: float
) -> pd.DataFrame:
    """lme4's VarCorr table for several random-effect terms (``ReTerm`` objects)."""
    parts = []
    for t, cov in zip(terms, covs, strict=True):
        tab = variance_rows(t.name, t.coef_names, cov, [], [], scale)
        parts.append(tab.iloc[:-1])
    parts.append(variance_rows("", [], np.zeros((0, 0)), [], [], scale))
    out = pd.concat(parts, ignore_index=True)
    out["term"] = out["term"].astype(object)
    out["term2"] = out["term2"].astype(object)
    return out


def _package_version() -> str:
    try:
        return importlib.metadata.version("alliancetrack")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout
        return "(source)"


@dataclass(frozen=True)
class MixedResult(ModelResult):
    """Result of :func:`~alliancetrack.fit_mixed`.

    Attributes
    ----------
    coefs : pandas.DataFrame
        Fixed effects: ``term, estimate, se, statistic, p_value, ci_low,
        ci_high, df``.  With ``ddf="satterthwaite"`` (default),
        ``"kenward-roger"`` or ``"residual"`` the statistic is a t with ``df``
        and the p-value and interval are t-based; with ``"wald"`` they are
        normal (z) and ``df`` is infinite.  Kenward-Roger also adjusts ``se``.
    variance : pandas.DataFrame
        Random-effect standard deviations and correlations as lme4's ``VarCorr``:
        ``group, term, term2, variance, sd, corr``.  Standard-deviation rows have
        ``term2`` missing; correlation rows have ``term`` and ``term2`` set and
        ``sd``/``variance`` missing (``variance`` then holds the covariance).
        The last row is ``group="Residual"``.
    llf : float
        Log-likelihood (restricted if REML); ``-2 * llf`` is lme4's REMLcrit.
    converged : bool
        Whether the final optimum passed the gradient and Hessian checks.
    singular : bool
        Boundary fit (a relative random-effect SD below 1e-4, or a correlation of
        +/-1), as lme4's ``isSingular``.
    optimizer : str
        The optimiser and starting point that reached the best log-likelihood.
    attempts : pandas.DataFrame
        Every optimisation attempt: ``optimizer, start, llf, success, nfev``.
    diagnostics : dict
        Gradient, Hessian eigenvalue and Newton-gain checks at the optimum.
    result : statsmodels MixedLMResults or None
        The underlying statsmodels result for the old ``groups=`` form (built on
        first access); ``None`` for models written with lme4 random terms.
    engine : str
        ``"fast"`` (one grouping factor, vectorised over groups), ``"blocked"``
        (several nested or crossed terms, blocked Cholesky) or ``"statsmodels"``
        (nested variance components given as ``vc_formula``).
    ddf : str
        The df method of ``coefs``.
    n_params : int
        Number of estimated parameters (fixed effects, variance parameters and
        the residual variance), for likelihood-ratio tests.
    group_sizes : dict
        Number of levels of each grouping factor.
    """

    formula: str
    groups: str
    reml: bool
    coefs: pd.DataFrame
    variance: pd.DataFrame
    llf: float
    converged: bool
    singular: bool
    optimizer: str
    attempts: pd.DataFrame
    diagnostics: dict
    result: Any = field(repr=False)
    nobs: int = 0
    n_groups: int = 0
    n_dropped: int = 0
    alpha: float = 0.05
    engine: str = "statsmodels"
    ddf: str = "wald"
    n_params: int = 0
    group_sizes: dict = field(default_factory=dict)
    _fitted: Any = field(default=None, repr=False, compare=False)
    _design_info: Any = field(default=None, repr=False, compare=False)
    _refit: Any = field(default=None, repr=False, compare=False)
    _title = "Linear mixed model"

    @property
    def fitted(self) -> pd.Series:
        """Fitted values including the predicted random effects (BLUPs)."""
        if self._fitted is not None:
            return pd.Series(np.asarray(self._fitted), name="fitted")
        return pd.Series(np.asarray(self.result.fittedvalues), name="fitted")

    @property
    def df_resid(self) -> int:
        """Residual degrees of freedom ``nobs - number of fixed effects``."""
        return int(self.nobs - len(self.coefs))

    @property
    def aic(self) -> float:
        """Akaike's information criterion ``-2 llf + 2 n_params`` (lme4's AIC)."""
        return float(-2 * self.llf + 2 * self.n_params)

    def predict(self, newdata: pd.DataFrame | None = None) -> pd.Series:
        """Predictions.

        Parameters
        ----------
        newdata : DataFrame, optional
            Without it, the fitted values of the data used (fixed effects plus
            the predicted random effects, lme4's ``fitted``).  With it, the
            population-level prediction from the fixed effects only (lme4's
            ``predict(..., re.form = NA)``).

        Returns
        -------
        pandas.Series
        """
        if newdata is None:
            return self.fitted
        if self._design_info is not None and self._design_info.obj is not None:
            import patsy

            (X,) = patsy.build_design_matrices([self._design_info.obj], newdata)
            est = self.coefs["estimate"].to_numpy()
            return pd.Series(np.asarray(X) @ est, index=newdata.index, name="predicted")
        return pd.Series(
            np.asarray(self.result.predict(exog=newdata)), index=newdata.index, name="predicted"
        )

    def effect_size(self, term: str, df: float | None = None) -> dict[str, float]:
        """Effect sizes r and d for a fixed effect, with the term's own df.

        ``r = t / sqrt(t^2 + df)`` and ``d = 2 t / sqrt(df)`` (Rosenthal, 1994;
        Rosnow & Rosenthal, 1996).  ``df`` defaults to the term's df in
        ``coefs`` (Satterthwaite by default), so a therapist-level predictor
        with 8 therapists gets about 6 df, not the number of sessions: the
        residual df (``nobs - p``) would treat repeated sessions as
        independent and inflate r.  With ``ddf="wald"`` the residual df is used.

        Parameters
        ----------
        term : str
            A fixed-effect name from ``coefs.term`` (``"Intercept"`` is accepted).
        df : float, optional
            Degrees of freedom to use instead.

        Returns
        -------
        dict
            ``term, estimate, t, df, r, d``.
        """
        return ModelResult.effect_size(self, term, df)

    def term_df(self, term: str) -> float:
        row = self._row(term)
        if "df" in row.index and np.isfinite(row["df"]):
            return float(row["df"])
        return float(self.df_resid)

    def compare(self, other: MixedResult, *, refit: bool | None = None) -> pd.DataFrame:
        """Likelihood-ratio test of two nested fits (lme4's ``anova``).

        Parameters
        ----------
        other : MixedResult
            The other model (either may be the larger one).
        refit : bool, optional
            Refit REML fits by ML first.  Default: when the fixed effects of the
            two models differ (REML likelihoods of models with different fixed
            effects are not comparable); ``True`` always refits, as lme4's
            ``anova`` does by default.

        Returns
        -------
        pandas.DataFrame
            One row per model (smaller first): ``model, n_params, aic, llf,
            deviance, chisq, df, p_value, refitted_ml``.
        """
        if not isinstance(other, MixedResult):
            raise ValueError("compare() needs another MixedResult (a fit_mixed result).")
        if self.nobs != other.nobs:
            raise AllianceDataError(
                f"the two models were fitted to different rows ({self.nobs} vs {other.nobs}); "
                "a likelihood-ratio test needs the same data."
            )
        a, b = sorted((self, other), key=lambda r: r.n_params)
        if a.n_params == b.n_params:
            raise ValueError("the two models have the same number of parameters; not nested.")
        same_fixed = list(a.coefs["term"]) == list(b.coefs["term"])
        if refit is None:
            refit = not same_fixed
        if a.reml != b.reml and not refit:
            raise ValueError("one fit is REML and the other ML; pass refit=True.")
        if refit:
            fits = []
            for r in (a, b):
                if r.reml:
                    if r._refit is None:
                        raise ValueError("this fit cannot be refitted by ML; fit it with reml=False.")
                    r = r._refit(False)
                fits.append(r)
            a, b = fits
        chisq = max(0.0, 2 * (b.llf - a.llf))
        dfd = b.n_params - a.n_params
        rows = []
        for k, r in enumerate((a, b)):
            rows.append({
                "model": r.formula,
                "n_params": r.n_params,
                "aic": r.aic,
                "llf": r.llf,
                "deviance": -2 * r.llf,
                "chisq": chisq if k else np.nan,
                "df": dfd if k else np.nan,
                "p_value": float(stats.chi2.sf(chisq, dfd)) if k else np.nan,
                "refitted_ml": bool(refit),
            })
        return pd.DataFrame(rows)

    def methods_text(self) -> str:
        """A "Methods" paragraph for a report (Meteyard & Davies, 2020, checklist).

        States the model formula, estimator, optimiser and its checks, the df
        method of the tests, convergence and singularity, and software versions.
        """
        at_version = _package_version()
        sizes = "; ".join(f"{g}: {n:,} levels" for g, n in self.group_sizes.items())
        est = "restricted maximum likelihood (REML)" if self.reml else "maximum likelihood (ML)"
        ddf = DDF_METHODS.get(self.ddf, self.ddf)
        conv = (
            "The optimum passed the gradient and Hessian checks."
            if self.converged
            else "WARNING: the optimum could not be verified by the gradient and Hessian checks."
        )
        sing = (
            " The fit is singular (a random-effect variance estimated as zero or a correlation "
            "of +/-1); the random-effects structure may be too complex for the data."
            if self.singular
            else " The fit is not singular."
        )
        tests = (
            "Fixed effects were tested with Wald z tests (normal approximation), which are "
            "anti-conservative with few clusters."
            if self.ddf == "wald"
            else f"Fixed effects were tested with t tests, degrees of freedom by {ddf}."
        )
        return (
            f"A linear mixed-effects model ({self.formula}) was fitted by {est} to "
            f"{self.nobs:,} observations"
            + (f" ({sizes})" if sizes else "")
            + f" using alliancetrack {at_version} ({self.engine} engine: lme4's profiled "
            f"deviance, Bates et al., 2015), optimiser {self.optimizer}. {conv}{sing} {tests} "
            f"Confidence intervals are {round(100 * (1 - self.alpha))}% intervals from the same "
            f"distribution. Software: Python {platform.python_version()}, NumPy "
            f"{np.__version__}, SciPy {scipy.__version__}."
        )

    def _summary_text(self) -> str:
        crit = "REML criterion" if self.reml else "-2 log-likelihood"
        sizes = "   ".join(f"{g}: {n}" for g, n in self.group_sizes.items()) or str(self.n_groups)
        lines = [
            f"Linear mixed model fit by {'REML' if self.reml else 'maximum likelihood'} "
            f"(alliancetrack.fit_mixed, engine: {self.engine})",
            f"Formula: {self.formula}" + (f"   groups: {self.groups}" if self.groups else ""),
            f"{crit}: {-2 * self.llf:.4f}   log-likelihood: {self.llf:.4f}",
            f"Observations: {self.nobs}   groups: {sizes}"
            + (f"   rows dropped for missing values: {self.n_dropped}" if self.n_dropped else ""),
            f"Optimizer: {self.optimizer}   converged: {self.converged}   "
            f"singular: {self.singular}",
            "",
            "Random effects:",
        ]
        for _, r in self.variance.iterrows():
            if pd.isna(r["term2"]):
                lines.append(
                    f"  {r['group']:<14} {str(r['term'] if pd.notna(r['term']) else ''):<14} "
                    f"var {r['variance']:<12.6g} sd {r['sd']:.6g}"
                )
            else:
                lines.append(
                    f"  {r['group']:<14} corr({r['term']}, {r['term2']}) = {r['corr']:.4f}"
                )
        test = "Wald z" if self.ddf == "wald" else f"t, df: {self.ddf}"
        lines += ["", f"Fixed effects ({test}, {round(100 * (1 - self.alpha))}% CI):"]
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            lines.append(self.coefs.to_string(index=False, float_format=lambda z: f"{z:.5g}"))
        if not self.converged:
            lines.append("WARNING: the optimum could not be verified (see .diagnostics).")
        if self.singular:
            lines.append("NOTE: singular (boundary) fit.")
        return "\n".join(lines)

