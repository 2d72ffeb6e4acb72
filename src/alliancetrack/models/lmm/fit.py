""":func:`fit_mixed`: linear mixed models in lme4 syntax, fitted robustly, with small-sample tests.

The model is written either with lme4 random-effect terms in the formula
(``"alliance ~ session + (session | patient) + (1 | therapist)"``) or, as
before, with ``groups=``/``re_formula=``/``vc_formula=``.  The likelihood
engine follows from the terms (one grouping factor: ``"fast"``; several
nested or crossed terms: ``"blocked"``; ``vc_formula``: ``"statsmodels"``),
the optimiser and its checks are those of :mod:`.optimizer`, and the tests of
the fixed effects use the df method ``ddf`` (:mod:`.inference`).
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from alliancetrack.errors import AllianceDataError
from alliancetrack.models.formula import MixedFormula, RandomTerm, parse_mixed_formula
from alliancetrack.models.lmm.blocked import BlockedProfile
from alliancetrack.models.lmm.design import Opaque, fixed_design, model_rows
from alliancetrack.models.lmm.inference import kenward_roger, satterthwaite_df
from alliancetrack.models.lmm.likelihood import BatchProfile
from alliancetrack.models.lmm.optimizer import (
    _SINGULAR_TOL,
    ConvergenceWarning,
    SingularFitWarning,
    _diagnostics_ok,
    _optimise,
)
from alliancetrack.models.lmm.results import DDF_METHODS, MixedResult, variance_rows_terms
from alliancetrack.models.lmm.statsmodels_bridge import (
    LazyResult,
    StatsmodelsProfile,
    build_sm_result,
    sm_model,
    variance_table,
)
from alliancetrack.models.random_effects import RandomEffects, build_random_effects
from alliancetrack.models.results import coef_table

__all__ = ["fit_mixed"]

_OPTIMIZERS = {"lbfgs", "lbfgsb", "bfgs", "powell", "nelder-mead", "cg"}
_VC_PATTERN = re.compile(r"^\s*0\s*\+\s*C\(\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\)\s*$")


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """One BLAS thread while fitting, if threadpoolctl is installed.

    Every likelihood evaluation works on many small matrices; on a loaded
    machine a multi-threaded BLAS spends more time waking threads than
    computing (measured: half the fit time on the 42,000-row benchmark).
    threadpoolctl is optional; without it nothing changes.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@dataclass
class _Model:
    """Everything an engine needs, and what the result needs from it."""

    prof: Any
    engine: str
    X: np.ndarray
    y: np.ndarray
    fe_names: list[str]
    design_info: Any
    re: RandomEffects | None  # lme4 structure (None: statsmodels with general vc_formula)
    sm: Any = None  # statsmodels model (statsmodels engine)
    groups_label: str = ""


def _theta_lme4(model: _Model, x: np.ndarray) -> np.ndarray | None:
    """The lme4 (column-major, terms in lme4 order) theta of the engine's parameters."""
    re = model.re
    if re is None:
        return None
    if model.engine == "blocked":
        return np.asarray(x, float)
    if model.engine == "fast":
        L = model.prof._lower(x)
        cols, rows = np.triu_indices(L.shape[0])
        return L[rows, cols]
    # statsmodels: x = [row-wise tril of the groups factor, relative SDs of the vc terms]
    sm = model.sm
    k_re = sm.k_re
    L = np.zeros((k_re, k_re))
    L[np.tril_indices(k_re)] = x[: sm.k_re2]
    vc_names = list(sm.exog_vc.names) if sm.k_vc else []
    theta = np.zeros(len(re.theta0))
    for t in re.terms:
        if t.group == model.groups_label:
            cols, rows = np.triu_indices(k_re)
            theta[t.theta_slice] = L[rows, cols]
        else:
            theta[t.theta_slice] = abs(x[sm.k_re2 + vc_names.index(t.group.split(":")[0])])
    return theta


def _build_old_form(
    formula: str, data: pd.DataFrame, groups: str, re_formula: str | None,
    vc_formula: Mapping[str, str] | None, reml: bool, engine: str,
) -> _Model:
    """The ``groups=`` / ``re_formula=`` / ``vc_formula=`` form."""
    mf = parse_mixed_formula(formula)
    X, y, fe_names, info = fixed_design(mf.fixed_formula, data, data.columns)
    expr = "1" if re_formula is None else re_formula.strip().lstrip("~").strip()
    terms = [] if expr in ("0", "-1", "0 + 1") else [RandomTerm(expr or "1", groups)]
    if vc_formula:
        if engine == "fast":
            raise AllianceDataError(
                "engine='fast' covers two-level models (one grouping factor with a random "
                "intercept and/or slopes); nested variance components (vc_formula) need "
                "engine='statsmodels' or 'auto'."
            )
        sm = sm_model(formula, data, groups, re_formula or "1", vc_formula, reml)
        re_struct = None
        cols = [_VC_PATTERN.match(v) for v in vc_formula.values()]
        if all(cols) and list(vc_formula) == [c.group(1) for c in cols]:
            # "0 + C(patient)" within therapist is lme4's (1 | patient:therapist)
            vterms = [RandomTerm("1", f"{c.group(1)}:{groups}") for c in cols]
            re_struct = build_random_effects(MixedFormula(mf.response, mf.fixed,
                                                          (*terms, *vterms)), data)
        return _Model(StatsmodelsProfile(sm), "statsmodels", X, y, fe_names, info, re_struct,
                      sm=sm, groups_label=groups)
    if engine == "statsmodels":
        sm = sm_model(formula, data, groups, re_formula, None, reml)
        re_struct = build_random_effects(MixedFormula(mf.response, mf.fixed, tuple(terms)), data)
        return _Model(StatsmodelsProfile(sm), "statsmodels", X, y, fe_names, info, re_struct,
                      sm=sm, groups_label=groups)
    if not terms:
        raise AllianceDataError(
            f"re_formula {re_formula!r} has no random effects; the fast engine needs at least "
            "a random intercept or slope."
        )
    re_struct = build_random_effects(MixedFormula(mf.response, mf.fixed, tuple(terms)), data)
    return _single_term_model(X, y, fe_names, info, re_struct, reml, groups)


def _single_term_model(X, y, fe_names, info, re_struct, reml, groups) -> _Model:
    t = re_struct.terms[0]
    prof = BatchProfile(X, t.model_matrix, y, t.codes, t.n_levels, reml)
    return _Model(prof, "fast", X, y, fe_names, info, re_struct, groups_label=groups)


def _build_terms(mf: MixedFormula, data: pd.DataFrame, reml: bool, engine: str) -> _Model:
    """lme4 random-effect terms in the formula."""
    if engine == "statsmodels":
        raise AllianceDataError(
            "engine='statsmodels' needs the groups=/re_formula= form; lme4 random-effect terms "
            "use engine='auto' ('fast' or 'blocked')."
        )
    X, y, fe_names, info = fixed_design(mf.fixed_formula, data, data.columns)
    re_struct = build_random_effects(mf, data)
    single = len(re_struct.terms) == 1
    if engine == "fast" and not single:
        raise AllianceDataError(
            "engine='fast' covers one random-effect term; this model has "
            f"{len(re_struct.terms)} terms (use engine='auto' or 'blocked')."
        )
    if single and engine in ("auto", "fast"):
        return _single_term_model(X, y, fe_names, info, re_struct, reml, re_struct.terms[0].group)
    return _Model(BlockedProfile(X, y, re_struct, reml), "blocked", X, y, fe_names, info,
                  re_struct)


def _inference(
    model: _Model, theta_x: np.ndarray, reml: bool, ddf: str, cov_fe: np.ndarray, scale: float,
    formula: str,
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Standard errors and df of the fixed effects under ``ddf``; the method actually used."""
    se = np.sqrt(np.clip(np.diag(cov_fe), 0, None))
    n, p = model.X.shape
    if ddf == "wald":
        return se, None, ddf
    if ddf == "residual":
        return se, np.full(p, float(n - p)), ddf
    theta = _theta_lme4(model, theta_x)
    if theta is None:
        warnings.warn(
            f"ddf={ddf!r} needs the model in lme4 terms; the vc_formula of {formula!r} cannot be "
            "translated, so Wald z tests are reported (anti-conservative with few clusters). "
            "Write the model with lme4 random-effect terms instead.",
            UserWarning,
            stacklevel=4,
        )
        return se, None, "wald"
    bp = model.prof if model.engine == "blocked" else BlockedProfile(model.X, model.y, model.re,
                                                                      reml)
    if ddf == "satterthwaite":
        df = satterthwaite_df(bp.parts, theta, n, reml, np.eye(p))
        return se, df, ddf
    # kenward-roger
    if not reml:
        raise ValueError("ddf='kenward-roger' needs a REML fit (reml=True), as pbkrtest.")
    se_kr, df = kenward_roger(model.X, model.re, theta, scale)
    return se_kr, df, ddf


def _check_args(data: Any, ddf: str, engine: str, optimizers: Sequence[str] | None) -> None:
    if not isinstance(data, pd.DataFrame):
        raise AllianceDataError(f"data must be a pandas DataFrame, got {type(data).__name__}.")
    if ddf not in DDF_METHODS:
        raise ValueError(f"unknown ddf {ddf!r}; choose one of {sorted(DDF_METHODS)}.")
    if engine not in ("auto", "fast", "blocked", "statsmodels"):
        raise AllianceDataError(
            f"unknown engine {engine!r}; choose 'auto', 'fast', 'blocked' or 'statsmodels'."
        )
    if optimizers is not None:
        bad = [m for m in optimizers if m not in _OPTIMIZERS]
        if bad:
            raise AllianceDataError(f"unknown optimizers {bad}; choose from {sorted(_OPTIMIZERS)}.")


def fit_mixed(
    formula: str,
    data: pd.DataFrame | None = None,
    groups: str | None = None,
    re_formula: str | None = None,
    vc_formula: Mapping[str, str] | None = None,
    reml: bool = True,
    *,
    ddf: str = "satterthwaite",
    optimizers: Sequence[str] | None = None,
    start: Sequence[float] | None = None,
    maxiter: int = 1000,
    alpha: float = 0.05,
    engine: str = "auto",
    df: pd.DataFrame | None = None,
) -> MixedResult:
    """Fit a linear mixed model by REML or ML, robustly, matching lme4 and lmerTest.

    Parameters
    ----------
    formula : str
        lme4-style formula, e.g. ``"alliance ~ session * trained + (session | patient)
        + (1 | therapist)"``: random-effect terms ``(1 | g)``, ``(x | g)``
        (correlated intercept and slope), ``(0 + x | g)``, ``(x || g)``
        (uncorrelated), ``(1 | g1/g2)`` (nested: ``g1`` and ``g2:g1``),
        ``(1 | g1:g2)``, several at once, nested or crossed.  A ``|`` outside
        such a term is a ``ValueError``.  Without random terms, a fixed-effects
        formula whose clusters are given by ``groups`` (the old form).
    data : pandas.DataFrame
        One row per observation.  Rows with a missing value in a model
        variable are dropped (as lme4's ``na.omit``) and counted in ``n_dropped``.
    groups : str, optional
        Old form only: the clustering column (default ``"therapist"``).
    re_formula : str, optional
        Old form only: random effects within ``groups``: ``None``/``"1"``
        (intercept), ``"~session"`` (correlated intercept and slope), ``"0 + session"``.
    vc_formula : dict, optional
        Old form only: nested variance components within ``groups``, e.g.
        ``{"patient": "0 + C(patient)"}`` (lme4's ``(1 | therapist) + (1 | patient:therapist)``).
    reml : bool
        Restricted maximum likelihood (default, as lme4) or ML.
    ddf : {"satterthwaite", "kenward-roger", "residual", "wald"}
        Denominator df of the fixed-effect t tests: Satterthwaite (default, as
        lmerTest), Kenward-Roger (REML only, as pbkrtest; also adjusts the
        SEs), ``nobs - p``, or Wald z (lme4's summary; anti-conservative with
        few clusters).
    optimizers : sequence of str, optional
        Force these optimisers (``"lbfgs", "lbfgsb", "bfgs", "powell",
        "nelder-mead", "cg"``), each from every start; by default the adaptive
        strategy of :mod:`alliancetrack.models.lmm.optimizer`.
    start : sequence of float, optional
        An extra starting point for the variance parameters, tried first.
    maxiter : int
        Iteration limit per optimiser run.
    alpha : float
        1 - confidence level of the intervals.
    engine : {"auto", "fast", "blocked", "statsmodels"}
        Likelihood engine; ``"auto"``: ``"fast"`` for one random-effect term,
        ``"blocked"`` for several, ``"statsmodels"`` for ``vc_formula``.
    df : pandas.DataFrame, optional
        Former name of ``data`` (keyword only).

    Returns
    -------
    MixedResult

    Warns
    -----
    SingularFitWarning
        Boundary (singular) fit, as lme4's "boundary (singular) fit".
    ConvergenceWarning
        The best optimum found fails the gradient / Hessian checks.

    Notes
    -----
    An optimum is accepted when the Hessian of the profiled deviance is
    positive definite on the parameters not at the boundary, a Newton step
    could raise the log-likelihood by less than 1e-5 and would move no
    parameter by more than 1e-3, and the projected gradient of parameters at
    the boundary is below 1e-3 * sqrt(nobs).  ``llf`` has lme4's constants;
    fixed-effect SEs are lme4's ``vcov`` (conditional on the variance parameters).

    References
    ----------
    Bates, D., Maechler, M., Bolker, B., & Walker, S. (2015). Fitting linear
    mixed-effects models using lme4. Journal of Statistical Software, 67(1), 1-48.
    Kuznetsova, A., Brockhoff, P. B., & Christensen, R. H. B. (2017). lmerTest
    package. Journal of Statistical Software, 82(13), 1-26.
    Kenward, M. G., & Roger, J. H. (1997). Biometrics, 53(3), 983-997.
    Luke, S. G. (2017). Evaluating significance in linear mixed-effects models
    in R. Behavior Research Methods, 49, 1494-1502.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(1)
    >>> g = np.repeat(np.arange(20), 10)
    >>> x = rng.normal(size=200)
    >>> y = 1 + 0.5 * x + rng.normal(size=20)[g] + rng.normal(size=200)
    >>> d = pd.DataFrame({"y": y, "x": x, "therapist": g})
    >>> fit = fit_mixed("y ~ x + (1 | therapist)", d)
    >>> fit.engine, fit.ddf
    ('fast', 'satterthwaite')
    >>> fit.coefs["term"].tolist()
    ['(Intercept)', 'x']
    >>> fit.converged, fit.singular
    (True, False)
    >>> list(fit.variance["group"])
    ['therapist', 'Residual']
    >>> bool(fit.coefs["df"].iloc[0] < 25)  # intercept: about the number of therapists
    True
    """
    if data is None:
        data = df
    _check_args(data, ddf, engine, optimizers)
    mf = parse_mixed_formula(formula)
    groups, required, extra, groups_label = _grouping(
        formula, mf, data, groups, re_formula, vc_formula
    )
    rows, n_dropped = _clustered_rows(data, formula, extra, required)
    if mf.random:
        model = _build_terms(mf, rows, reml, engine)
    else:
        model = _build_old_form(formula, rows, groups, re_formula, vc_formula, reml, engine)
    settings = dict(ddf=ddf, optimizers=optimizers, start=start, maxiter=maxiter, alpha=alpha,
                    engine=engine)
    return _finish(model, formula, rows, data, n_dropped, reml, groups_label, mf, groups,
                   re_formula, vc_formula, settings)



def _grouping(formula, mf, data, groups, re_formula, vc_formula):
    """Clustering of a model: ``(groups, required columns, extra terms, label)``.

    With random-effect terms in the formula the clusters come from them (and
    the old-form arguments are refused); otherwise from ``groups`` (default
    ``"therapist"``), ``re_formula`` and ``vc_formula``.
    """
    if mf.random:
        if groups is not None or re_formula is not None or vc_formula is not None:
            raise ValueError(
                f"{formula!r} has random-effect terms; do not also pass groups=, re_formula= "
                "or vc_formula=."
            )
        required = [c for t in mf.random for c in t.group_columns]
        extra = [t.expr for t in mf.random]
        groups_label = ", ".join(dict.fromkeys(t.group for t in mf.random))
        return groups, required, extra, groups_label
    groups = "therapist" if groups is None else groups
    if groups not in data.columns:
        raise AllianceDataError(
            f"grouping column {groups!r} is not in the data (columns: {list(data.columns)}); "
            "pass groups=<cluster column>, write (1 | cluster) in the formula, or use an "
            "OLS model when there is no clustering."
        )
    return groups, [groups], [re_formula, *(vc_formula or {}).values()], groups


def _clustered_rows(data, formula, extra, required):
    """Complete rows of the model variables; each grouping column needs 2+ groups."""
    rows, n_dropped = model_rows(data, formula, extra, required)
    for g in dict.fromkeys(required):
        if rows[g].nunique() < 2:
            raise AllianceDataError(
                f"grouping column {g!r} has fewer than 2 groups after dropping missing "
                "values; a mixed model needs clusters (use OLS instead)."
            )
    return rows, n_dropped

def _finish(model: _Model, formula, rows, data, n_dropped, reml, groups_label, mf, groups,
            re_formula, vc_formula, settings) -> MixedResult:
    prof = model.prof
    with _single_threaded_blas():
        winner, attempts, diag = _optimise(prof, settings["optimizers"], settings["start"],
                                           settings["maxiter"])
    if not np.isfinite(winner.llf):
        raise AllianceDataError(
            f"the mixed model {formula!r} could not be evaluated at any starting value; "
            "check for collinear predictors or groups with a single observation."
        )
    converged = _diagnostics_ok(diag)
    x = winner.x
    fitted = None
    smres: Any = None
    if model.engine == "statsmodels":
        smres, cov_fe = build_sm_result(model.sm, x, converged)
        vc_names = list(model.sm.exog_vc.names) if model.sm.k_vc else []
        variance = variance_table(model.sm, smres, groups, vc_names)
        fe = np.asarray(smres.fe_params)
        scale = float(smres.scale)
    else:
        fe, scale, cov_fe = prof.fixed(x)
        covs = [scale * c for c in prof.relative_covariances(x)]
        variance = variance_rows_terms(model.re.terms, covs, scale)
        if model.engine == "fast":
            t = model.re.terms[0]
            blup = prof.random_effects(x, fe)
            fitted = model.X @ fe + np.einsum("nq,nq->n", t.model_matrix, blup[t.codes])
        else:
            b = prof.random_effects(x, fe)
            fitted = model.X @ fe + model.re.Z @ b
        if not mf.random:  # old form: a statsmodels result on request
            x_final, conv = x.copy(), converged
            sm_args = (formula, rows, groups, re_formula, vc_formula, reml)

            def _build() -> Any:
                return build_sm_result(sm_model(*sm_args), x_final, conv)[0]

            smres = LazyResult(_build)
    singular = bool(np.any(x[prof.diag] < _SINGULAR_TOL))
    if (np.abs(variance["corr"].dropna()) > 1 - 1e-6).any():
        singular = True
    with _single_threaded_blas():
        se, dfs, ddf_used = _inference(model, x, reml, settings["ddf"], cov_fe, scale, formula)
    coefs = coef_table(model.fe_names, fe, se, dfs if dfs is not None else
                       np.full(len(fe), np.inf), settings["alpha"])
    if dfs is None:  # Wald: normal reference, df infinite
        coefs = coef_table(model.fe_names, fe, se, None, settings["alpha"])
        coefs["df"] = np.inf
    att = pd.DataFrame([
        {"optimizer": a.optimizer, "start": a.start, "llf": a.llf, "success": a.success,
         "nfev": a.nfev}
        for a in attempts
    ])
    llf = float(prof.llf(x))
    if model.re is not None:
        sizes = {}
        for t in model.re.terms:
            sizes.setdefault(t.group, t.n_levels)
        n_groups = max(sizes.values())
    else:
        sizes = {groups: int(rows[groups].nunique())}
        n_groups = int(model.sm.n_groups)
    if not mf.random:
        n_groups = int(rows[groups].nunique())

    def refit(reml_new: bool) -> MixedResult:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if mf.random:
                return fit_mixed(formula, data, reml=reml_new, **settings)
            return fit_mixed(formula, data, groups, re_formula, vc_formula, reml_new, **settings)

    out = MixedResult(
        formula=formula,
        groups=groups_label,
        reml=bool(reml),
        coefs=coefs,
        variance=variance,
        llf=llf,
        converged=converged,
        singular=singular,
        optimizer=f"{winner.optimizer} (start: {winner.start})",
        attempts=att,
        diagnostics=diag,
        result=smres,
        nobs=int(prof.nobs),
        n_groups=int(n_groups),
        n_dropped=int(n_dropped),
        alpha=settings["alpha"],
        engine=model.engine,
        ddf=ddf_used,
        n_params=int(len(fe) + prof.k + 1),
        group_sizes=sizes,
        _fitted=fitted,
        _design_info=Opaque(model.design_info),
        _refit=refit,
    )
    _warn(out, formula, diag)
    return out


def _warn(out: MixedResult, formula: str, diag: dict) -> None:
    variance = out.variance
    if out.singular:
        zero = variance.loc[(variance["sd"] < 1e-4 * variance["sd"].iloc[-1]), ["group", "term"]]
        what = ", ".join(f"{g}/{t}" for g, t in zero.itertuples(index=False)) or "a correlation"
        warnings.warn(
            f"boundary (singular) fit of {formula!r}: {what} estimated at the boundary "
            "(SD of zero or correlation of +/-1). Consider simplifying the random effects.",
            SingularFitWarning,
            stacklevel=4,
        )
    if not out.converged:
        warnings.warn(
            f"fit_mixed could not verify the optimum of {formula!r} (best log-likelihood "
            f"{out.llf:.4f} from {out.optimizer}; max |gradient| = "
            f"{diag['max_abs_gradient']:.3g}, Hessian positive definite: {diag['hessian_pd']}). "
            "Inspect .attempts and .diagnostics; rescaling predictors often helps.",
            ConvergenceWarning,
            stacklevel=4,
        )
