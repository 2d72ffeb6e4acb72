"""Public GLMM interface: :func:`fit_glmm` and :class:`GLMMResult`.

Frequentist generalised linear mixed models (binomial, Poisson, negative
binomial) with lme4 random-effect syntax, fitted as ``glmer`` /
``glmer.nb`` (lme4 1.1-31): Laplace approximation (``nagq=1``) or adaptive
Gauss-Hermite quadrature for a single scalar random effect (``nagq > 1``).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from alliancetrack.errors import AllianceDataError
from alliancetrack.models.formula import parse_mixed_formula
from alliancetrack.models.gee import FEW_CLUSTERS_WARN, FewClustersWarning
from alliancetrack.models.glmm.engine import GLMMObjective, fit_engine, glm_irls
from alliancetrack.models.glmm.family import make_family
from alliancetrack.models.glmm.pirls import make_system
from alliancetrack.models.lmm import ConvergenceWarning, SingularFitWarning
from alliancetrack.models.random_effects import build_random_effects
from alliancetrack.models.results import ModelResult
from alliancetrack.models.results import rename_term as _rename

__all__ = ["GLMMResult", "fit_glmm"]

_NB_THETA_MIN, _NB_THETA_MAX = 1e-4, 1e5  # bounds of the negative-binomial dispersion

_FAMILY_TEXT = {
    "binomial": ("binomial", "logit", "odds ratio"),
    "poisson": ("Poisson", "log", "rate ratio"),
    "negbin": ("negative binomial", "log", "rate ratio"),
}


@dataclass(frozen=True)
class GLMMResult(ModelResult):
    """Result of :func:`fit_glmm`.

    Attributes
    ----------
    coefs : pandas.DataFrame
        ``term, estimate, se, statistic`` (Wald z, as glmer), ``p_value,
        ci_low, ci_high`` and ``ratio, ratio_low, ratio_high`` (exponentiated:
        odds ratios for binomial, rate ratios for Poisson/negbin).
    variance : pandas.DataFrame
        ``group, term, term2, variance, sd, corr`` of the random effects (lme4's
        ``VarCorr``; no residual row in a GLMM).
    llf : float
        Log-likelihood.  For ``nagq=1`` glmer's ``logLik``; for ``nagq > 1``
        the full quadrature log-likelihood, with constants that glmer omits.
    theta : float
        Negative-binomial dispersion (``glmer.nb``'s theta; ``nan`` otherwise).
    converged, singular : bool
        Optimum verified; random-effect variance at zero (lme4's ``isSingular``).
    attempts : pandas.DataFrame
        Every optimisation attempt: ``optimizer, start, llf, deviance, nfev``
        (restarts off the boundary appear here when a variance ended at zero).
    note : str
        Caveat printed by the summary (few levels of a grouping factor).
    fitted, response : ndarray
        Conditional means (given the predicted random effects) and the response
        (proportions for binomial) of the model rows.
    """

    formula: str
    family: str
    nagq: int
    coefs: pd.DataFrame
    variance: pd.DataFrame
    llf: float
    theta: float
    converged: bool
    singular: bool
    nobs: int
    n_groups: dict
    n_dropped: int
    vcov: np.ndarray = field(repr=False)
    theta_re: np.ndarray = field(repr=False)
    ranef: np.ndarray = field(repr=False)
    fitted: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    response: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    message: str = ""
    attempts: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    note: str = ""

    @property
    def aic(self) -> float:
        """Akaike information criterion (fixed effects + covariance parameters + theta)."""
        k = len(self.coefs) + len(self.theta_re) + (self.family == "negbin")
        return -2 * self.llf + 2 * k

    _title = "Generalised linear mixed model"

    @property
    def df_resid(self) -> float:
        """Observations minus fixed effects and covariance parameters (for effect sizes)."""
        return float(self.nobs - len(self.coefs) - len(self.theta_re))

    def _summary_text(self) -> str:
        """Readable text summary."""
        fam, link, ratio = _FAMILY_TEXT[self.family]
        method = "Laplace approximation" if self.nagq == 1 else (
            f"adaptive Gauss-Hermite quadrature ({self.nagq} points)")
        groups = ", ".join(f"{g}: {n}" for g, n in self.n_groups.items())
        lines = [
            f"Generalised linear mixed model ({fam}, {link} link), {method}: {self.formula}",
            f"Observations: {self.nobs}  groups: {groups}  rows dropped for missing values: "
            f"{self.n_dropped}",
            f"Log-likelihood: {self.llf:.4f}  AIC: {self.aic:.2f}"
            + (f"  theta (NB dispersion): {self.theta:.4f}" if self.family == "negbin" else ""),
            f"Converged: {self.converged} ({self.message})  singular: {self.singular}",
            "Random effects:",
            self.variance.to_string(index=False, float_format=lambda z: f"{z:.5g}"),
            f"Fixed effects (Wald z tests, ratio = {ratio}):",
            self.coefs.to_string(index=False, float_format=lambda z: f"{z:.5g}"),
        ]
        if self.note:
            lines.append(f"Note: {self.note}.")
        return "\n".join(lines)

    def methods_text(self) -> str:
        """A methods paragraph describing the model, for a paper."""
        fam, link, ratio = _FAMILY_TEXT[self.family]
        method = ("the Laplace approximation" if self.nagq == 1 else
                  f"adaptive Gauss-Hermite quadrature with {self.nagq} points")
        re_text = " and ".join(f"random intercepts{'' if set(g) == {'(Intercept)'} else ' and slopes'}"
                               f" for {name}" for name, g in self._re_terms())
        nb = (" The negative-binomial dispersion parameter was estimated by maximum likelihood "
              "(as glmer.nb)." if self.family == "negbin" else "")
        off = " The log of the exposure entered as an offset." if "offset(" in self.formula else ""
        return (
            f"We fitted a {fam} generalised linear mixed model with a {link} link and {re_text} "
            f"({self.formula}) by maximum likelihood using {method} (Bates, Maechler, Bolker & "
            f"Walker, 2015), as implemented in alliancetrack, which reproduces lme4's glmer.{nb}"
            f"{off} Fixed effects were tested with Wald z tests and are reported as {ratio}s "
            f"with 95% confidence intervals. The model used {self.nobs} observations."
        )

    def _re_terms(self) -> list[tuple[str, list[str]]]:
        v = self.variance[self.variance["term2"].isna()]
        return [(g, d["term"].tolist()) for g, d in v.groupby("group", sort=False)]


def _split_offsets(fixed: str) -> tuple[str, list[str]]:
    """Remove ``offset(expr)`` terms from a fixed-effects right-hand side."""
    offsets = []
    out, i = [], 0
    for m in re.finditer(r"\boffset\s*\(", fixed):
        if m.start() < i:
            continue
        depth, j = 1, m.end()
        while j < len(fixed) and depth:
            depth += {"(": 1, ")": -1}.get(fixed[j], 0)
            j += 1
        if depth:
            raise ValueError(f"unbalanced parentheses in offset term of {fixed!r}.")
        offsets.append(fixed[m.end(): j - 1])
        out.append(fixed[i: m.start()])
        i = j
    out.append(fixed[i:])
    rest = re.sub(r"\+\s*\+", "+", "".join(out)).strip().strip("+").strip()
    return rest or "1", offsets


def _columns_used(formula: str, data: pd.DataFrame, extra: list[str]) -> list[str]:
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", formula))
    return [c for c in data.columns if c in names or c in extra]


def _prepare(formula, data, family, weights):
    """Model rows, response, trials, design matrices and random effects."""
    import patsy

    if not isinstance(data, pd.DataFrame):
        raise AllianceDataError(f"data must be a pandas DataFrame, got {type(data).__name__}.")
    mf = parse_mixed_formula(formula)
    if not mf.random:
        raise ValueError(
            f"formula {formula!r} has no random-effect term such as (1 | therapist); "
            "use a GLM for models without random effects."
        )
    if mf.response not in data.columns:
        raise AllianceDataError(
            f"response column {mf.response!r} is not in the data (columns: {list(data.columns)})."
        )
    wcol = [weights] if isinstance(weights, str) else []
    if weights is not None and family.name != "binomial":
        raise ValueError("weights= (numbers of trials) is only for family='binomial'.")
    if isinstance(weights, str) and weights not in data.columns:
        raise AllianceDataError(f"weights column {weights!r} is not in the data.")
    d = data.copy()
    if weights is not None and not isinstance(weights, str):
        w = np.asarray(weights, dtype=float)
        if w.shape != (len(data),):
            raise ValueError(f"weights must have one value per row ({len(data)}), got {w.shape}.")
        d["__trials__"] = w
        wcol = ["__trials__"]
    cols = _columns_used(formula, d, wcol)
    missing = [g for t in mf.random for g in t.group_columns if g not in d.columns]
    if missing:
        raise AllianceDataError(
            f"grouping column(s) {missing} are not in the data (columns: {list(data.columns)})."
        )
    d = d[cols].dropna().reset_index(drop=True)
    n_dropped = len(data) - len(d)
    fixed, offsets = _split_offsets(mf.fixed)
    try:
        X = patsy.dmatrix(fixed, d, return_type="dataframe", NA_action="raise")
        off = np.zeros(len(d))
        for expr in offsets:
            off += np.asarray(patsy.dmatrix(f"0 + I({expr})", d, NA_action="raise"))[:, 0]
    except patsy.PatsyError as exc:
        raise AllianceDataError(
            f"could not build the fixed effects of {formula!r}: {exc}. "
            f"Columns available: {list(data.columns)}."
        ) from exc
    if not np.all(np.isfinite(off)):
        bad = np.flatnonzero(~np.isfinite(off))[:5].tolist()
        raise AllianceDataError(f"the offset is not finite in model rows {bad} (e.g. log(0)).")
    y = d[mf.response].astype(float).to_numpy()
    wt = d[wcol[0]].astype(float).to_numpy() if wcol else np.ones(len(d))
    _check_response(mf.response, y, wt, family.name, wcol)
    if family.name == "binomial":
        y = np.divide(y, wt, out=np.zeros_like(y), where=wt > 0)
    rand = build_random_effects(mf, d)
    return mf, d, X, y, off, wt, rand, n_dropped


def _check_response(name, y, wt, fam, wcol) -> None:
    if fam == "binomial":
        if wcol:
            if np.any(wt < 0) or np.any(y < 0) or np.any(y > wt) or np.any(y != np.round(y)):
                raise AllianceDataError(
                    f"with weights= (trials), {name!r} must hold whole numbers of successes "
                    "between 0 and the number of trials."
                )
        elif not set(np.unique(y)) <= {0.0, 1.0}:
            raise AllianceDataError(
                f"outcome column {name!r} must be 0/1 for family='binomial' "
                f"(or successes with weights= trials); found {np.unique(y)[:10].tolist()}."
            )
    elif np.any(y < 0) or np.any(y != np.round(y)):
        raise AllianceDataError(f"{name!r} must hold non-negative whole counts for family={fam!r}.")


def _variance_table(rand, theta) -> pd.DataFrame:
    rows = []
    for term, cov in zip(rand.terms, rand.covariances(theta), strict=True):
        sd = np.sqrt(np.diag(cov))
        for i, a in enumerate(term.coef_names):
            rows.append({"group": term.name, "term": a, "term2": None, "variance": cov[i, i],
                         "sd": sd[i], "corr": np.nan})
        for j, b in enumerate(term.coef_names):
            for i in range(j + 1, len(term.coef_names)):
                den = sd[i] * sd[j]
                rows.append({"group": term.name, "term": term.coef_names[i], "term2": b,
                             "variance": cov[i, j], "sd": np.nan,
                             "corr": cov[i, j] / den if den > 0 else np.nan})
    return pd.DataFrame(rows, columns=["group", "term", "term2", "variance", "sd", "corr"])


def _coef_table(names, est, V, alpha) -> pd.DataFrame:
    se = np.sqrt(np.diag(V))
    z = est / se
    q = stats.norm.ppf(1 - alpha / 2)
    out = pd.DataFrame({
        "term": [_rename(n) for n in names], "estimate": est, "se": se, "statistic": z,
        "p_value": 2 * stats.norm.sf(np.abs(z)), "ci_low": est - q * se, "ci_high": est + q * se,
    })
    out["ratio"] = np.exp(out["estimate"])
    out["ratio_low"] = np.exp(out["ci_low"])
    out["ratio_high"] = np.exp(out["ci_high"])
    return out


def fit_glmm(
    formula: str,
    data: pd.DataFrame,
    family: str = "binomial",
    nagq: int = 1,
    weights: str | np.ndarray | None = None,
    *,
    alpha: float = 0.05,
) -> GLMMResult:
    """Fit a generalised linear mixed model as lme4's ``glmer`` / ``glmer.nb``.

    Parameters
    ----------
    formula : str
        lme4 syntax, e.g. ``"n_ruptures ~ pd + trained + offset(np.log(n_sessions))
        + (1 | therapist)"``; random-effect terms as in :func:`fit_mixed`
        (several grouping factors, nested ``(1 | therapist/patient)`` or crossed).
        ``offset(expr)`` adds ``expr`` (evaluated by patsy) with coefficient 1.
    data : pandas.DataFrame
        One row per observation; rows with missing model variables are dropped
        and counted (``n_dropped``).
    family : {"binomial", "poisson", "negbin"}
        Binomial with logit link (0/1 outcome, or numbers of successes with
        ``weights=`` trials), Poisson with log link, or negative binomial (NB2,
        log link) with its dispersion theta estimated (as ``glmer.nb``) between
        1e-4 and 1e5; at the upper bound (no overdispersion) a warning says the
        Poisson model is adequate.
    nagq : int
        1: Laplace approximation (glmer's default).  >1: adaptive
        Gauss-Hermite quadrature with that many points (at most 25); only for a
        single scalar random effect, as glmer.
    weights : str or array, optional
        Binomial only: numbers of trials (a column name or one value per row).
    alpha : float
        1 - confidence level of the intervals.

    Returns
    -------
    GLMMResult

    Warns
    -----
    SingularFitWarning
        A random-effect variance is estimated as zero.
    ConvergenceWarning
        The optimum could not be verified.
    FewClustersWarning
        A grouping factor has fewer than 20 levels: Wald z tests of predictors
        at that level are anti-conservative (as glmer's, which are the same).

    References
    ----------
    Bates, D., Maechler, M., Bolker, B., & Walker, S. (2015). Fitting linear
    mixed-effects models using lme4. Journal of Statistical Software, 67(1), 1-48.
    Pinheiro, J. C., & Bates, D. M. (1995). Approximations to the log-likelihood
    function in the nonlinear mixed-effects model. Journal of Computational and
    Graphical Statistics, 4(1), 12-35.

    Examples
    --------
    >>> import numpy as np, pandas as pd, alliancetrack as at
    >>> rng = np.random.default_rng(1)
    >>> d = pd.DataFrame({"therapist": np.repeat(np.arange(20), 10),
    ...                   "n_sessions": rng.integers(8, 20, 200), "pd": rng.integers(0, 2, 200)})
    >>> u = rng.normal(0, 0.3, 20)[d["therapist"]]
    >>> d["n_ruptures"] = rng.poisson(d["n_sessions"] * np.exp(-2 + 0.5 * d["pd"] + u))
    >>> fit = at.fit_glmm("n_ruptures ~ pd + offset(np.log(n_sessions)) + (1 | therapist)",
    ...                   d, family="poisson")
    >>> fit.coefs["term"].tolist()
    ['(Intercept)', 'pd']
    >>> bool(fit.converged), bool(1 < fit.coefs.loc[1, "ratio"] < 3)
    (True, True)
    """
    fam = make_family(family)
    if not isinstance(nagq, int | np.integer) or not 1 <= nagq <= 25:
        raise ValueError(f"nagq must be an integer from 1 to 25, got {nagq!r}.")
    mf, d, X, y, off, wt, rand, n_dropped = _prepare(formula, data, fam, weights)
    if nagq > 1 and not (len(rand.terms) == 1 and rand.terms[0].n_coef == 1):
        raise ValueError(
            "nagq > 1 (adaptive Gauss-Hermite) needs a single scalar random effect such as "
            "(1 | therapist), as in glmer; use nagq=1 (Laplace) for this model."
        )
    Xa = X.to_numpy(dtype=float)
    if np.linalg.matrix_rank(Xa) < Xa.shape[1]:
        raise AllianceDataError(
            f"the fixed-effects design of {formula!r} is rank deficient (columns "
            f"{list(X.columns)}): drop a redundant predictor."
        )
    beta0 = glm_irls(make_family("poisson") if fam.name == "negbin" else fam, y, Xa, off, wt)
    x0 = np.concatenate([rand.theta0, beta0])
    lower = np.concatenate([rand.lower, np.full(len(beta0), -np.inf)])
    upper = np.full(len(x0), np.inf)
    if fam.name == "negbin":
        mu = np.exp(Xa @ beta0 + off)
        excess = float(np.sum((y - mu) ** 2 - y) / np.sum(mu**2))
        x0 = np.append(x0, np.log(1.0 / min(max(excess, 0.01), 100.0)))
        lower = np.append(lower, np.log(_NB_THETA_MIN))
        upper = np.append(upper, np.log(_NB_THETA_MAX))
    obj = GLMMObjective(make_system(rand), fam, y, Xa, off, wt, nagq, len(rand.theta0))
    ef = fit_engine(obj, x0, lower, upper)
    nt = len(rand.theta0)
    theta_re, beta = ef.x[:nt], ef.x[nt: nt + Xa.shape[1]]
    nb_theta = float(np.exp(ef.x[-1])) if fam.name == "negbin" else float("nan")
    note = _warn_about_fit(formula, fam.name, nb_theta, ef, rand)
    return GLMMResult(
        formula=formula, family=fam.name, nagq=int(nagq),
        coefs=_coef_table(list(X.columns), beta, ef.vcov, alpha),
        variance=_variance_table(rand, theta_re), llf=-0.5 * ef.deviance, theta=nb_theta,
        converged=ef.converged, singular=ef.singular, nobs=len(d),
        n_groups={t.name: t.n_levels for t in rand.terms}, n_dropped=n_dropped,
        vcov=ef.vcov, theta_re=theta_re, ranef=rand.lambda_matrix(theta_re) @ ef.u,
        fitted=ef.mu, response=y, message=ef.message, attempts=pd.DataFrame(ef.attempts), note=note,
    )


def _warn_about_fit(formula, family, nb_theta, ef, rand) -> str:
    """Warn of a bounded theta, a singular or unverified fit and few clusters.

    Returns the few-clusters note stored on the result ("" when none).
    """
    if family == "negbin" and nb_theta >= 0.999 * _NB_THETA_MAX:
        warnings.warn(
            f"the negative-binomial theta reached its upper bound ({_NB_THETA_MAX:g}): there is "
            "no overdispersion and the Poisson model is adequate.", UserWarning, stacklevel=3)
    if ef.singular:
        warnings.warn(
            f"singular fit of {formula!r}: a random-effect variance is estimated as zero "
            "(or a correlation as +/-1).", SingularFitWarning, stacklevel=3)
    if not ef.converged:
        warnings.warn(f"the GLMM optimiser did not reach a verified optimum ({ef.message}).",
                      ConvergenceWarning, stacklevel=3)
    few = {t.name: t.n_levels for t in rand.terms if t.n_levels < FEW_CLUSTERS_WARN}
    note = ""
    if few:
        names = ", ".join(f"{g} ({n})" for g, n in few.items())
        note = (f"few levels of {names}: Wald z tests of predictors that vary only at that level "
                "are anti-conservative (glmer offers no df correction); treat them as tentative")
        warnings.warn(f"{note}.", FewClustersWarning, stacklevel=3)
    return note
