"""The only module that touches statsmodels' MixedLM internals.

fit_mixed's fallback engine (nested variance components given as
``vc_formula``) optimises statsmodels' MixedLM likelihood with this package's
optimiser, and every fit can hand back a statsmodels ``MixedLMResults`` built at
the fitted parameters.  Both need statsmodels state that is not public API:
``MixedLM._cov_sing``, ``_freepat``, ``cov_pen``, ``fe_pen``, ``k_re``,
``k_re2``, ``k_vc``, ``exog_vc``, ``use_sqrt``, ``get_fe_params``,
``get_scale``, ``hessian``, ``loglike(..., profile_fe=True)``,
``score(..., profile_fe=True)`` and ``MixedLMParams``/``MixedLMResults``'
constructors.  :data:`STATSMODELS_INTERNALS` lists them;
``tests/test_lmm_statsmodels_bridge.py`` fails if any changes, and
pyproject.toml pins the statsmodels versions tested (0.14, 0.15).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from alliancetrack.errors import AllianceDataError
from alliancetrack.models.lmm.optimizer import ProfileBase, canonical_tril
from alliancetrack.models.lmm.results import variance_rows

__all__ = ["STATSMODELS_INTERNALS", "LazyResult", "StatsmodelsProfile", "build_sm_result", "sm_model"]

#: statsmodels MixedLM attributes and methods relied on (checked by a test).
STATSMODELS_INTERNALS = {
    "model_attributes": (
        "_cov_sing", "_freepat", "cov_pen", "fe_pen", "reml", "k_fe", "k_re", "k_re2",
        "k_vc", "exog_vc", "exog_re", "use_sqrt", "n_totobs", "n_groups", "exog_names",
    ),
    "model_methods": ("get_fe_params", "get_scale", "hessian", "loglike", "score"),
    "params_methods": ("from_packed", "get_packed"),
}


def sm_model(
    formula: str,
    data: pd.DataFrame,
    groups: str,
    re_formula: str | None,
    vc_formula: Mapping[str, str] | None,
    reml: bool,
) -> Any:
    """A statsmodels MixedLM set up for this package's optimiser (no penalties)."""
    import statsmodels.formula.api as smf
    from patsy import PatsyError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = smf.mixedlm(
                formula, data, groups=data[groups], re_formula=re_formula, vc_formula=vc_formula
            )
    except PatsyError as exc:
        raise AllianceDataError(
            f"could not build the model from formula {formula!r}: {exc}. Check that every "
            f"variable is a column of the data (columns: {list(data.columns)})."
        ) from exc
    m.reml = bool(reml)
    m.cov_pen = None
    m.fe_pen = None
    m._cov_sing = 0
    m._freepat = None
    return m


class StatsmodelsProfile(ProfileBase):
    """The profiled (restricted) log-likelihood of a statsmodels MixedLM."""

    def __init__(self, model: Any):
        self.model = model
        self.k_re = model.k_re
        self.k_vc = model.k_vc
        rows, cols = np.tril_indices(self.k_re)
        diag = list(np.flatnonzero(rows == cols)) + [len(rows) + j for j in range(self.k_vc)]
        self.diag = np.array(diag, dtype=int)  # parameters bounded below by 0
        self.k_re2 = model.k_re2
        self.k = model.k_re2 + model.k_vc
        self.bounds = [(None, None)] * self.k
        for j in self.diag:
            self.bounds[j] = (0.0, None)
        self.nobs = float(model.n_totobs)
        self.nfev = 0

    def llf(self, x: np.ndarray) -> float:
        self.nfev += 1
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                val = float(self.model.loglike(np.asarray(x, float), profile_fe=True))
        except (np.linalg.LinAlgError, ValueError, FloatingPointError, ZeroDivisionError):
            return -np.inf
        return val if np.isfinite(val) else -np.inf

    def score(self, x: np.ndarray) -> np.ndarray:
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                g = np.asarray(self.model.score(np.asarray(x, float), profile_fe=True), float)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError, ZeroDivisionError):
            return np.full(self.k, np.nan)
        return g

    def canonical(self, x: np.ndarray) -> np.ndarray:
        """Flip signs so that the diagonal is non-negative (same covariance)."""
        return canonical_tril(x, self.k_re, self.k_vc)

    def starts(self) -> dict[str, np.ndarray]:
        k_re = self.k_re
        ident = np.concatenate([np.eye(k_re)[np.tril_indices(k_re)], np.ones(self.k_vc)])
        return {"identity": ident, "small": 0.1 * ident}


def build_sm_result(model: Any, x: np.ndarray, converged: bool) -> Any:
    """Build a statsmodels MixedLMResults at the packed variance parameters ``x``.

    This mirrors the end of :meth:`MixedLM.fit` (statsmodels 0.14/0.15) without
    re-running its optimiser.  statsmodels inverts the random-effects
    covariance, so at an exactly singular fit the parameters are nudged off
    zero (by 1e-5, then 1e-3) for this object only.
    """
    from statsmodels.regression.mixed_linear_model import (
        MixedLMParams,
        MixedLMResults,
        MixedLMResultsWrapper,
    )

    x = np.asarray(x, float)
    for nudge in (0.0, 1e-5, 1e-3):
        xs = x.copy()
        small = np.abs(xs) < nudge
        xs[small] = np.where(xs[small] < 0, -nudge, nudge)
        params = MixedLMParams.from_packed(
            xs, model.k_fe, model.k_re, use_sqrt=model.use_sqrt, has_fe=False
        )
        cov_re_unscaled = params.cov_re
        vcomp_unscaled = params.vcomp
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                fe_params, _ = model.get_fe_params(cov_re_unscaled, vcomp_unscaled)
                params.fe_params = fe_params
                scale = model.get_scale(fe_params, cov_re_unscaled, vcomp_unscaled)
                hess, _ = model.hessian(params)
            break
        except np.linalg.LinAlgError:
            continue
    else:
        raise AllianceDataError(
            "statsmodels could not evaluate the fitted model (singular matrices); check for "
            "collinear predictors."
        )
    k_fe = model.k_fe
    # lme4-style fixed-effect covariance: conditional on the variance parameters
    hfe = -hess[:k_fe, :k_fe]
    try:
        cov_fe = np.linalg.inv(hfe)
    except np.linalg.LinAlgError:
        cov_fe = np.linalg.pinv(hfe)
    try:
        pcov = np.linalg.inv(-hess)
    except np.linalg.LinAlgError:
        pcov = np.linalg.pinv(-hess)
    if not np.all(np.isfinite(pcov)):
        pcov = np.full_like(hess, np.nan)
    pcov[:k_fe, :k_fe] = cov_fe
    pcov[:k_fe, k_fe:] = 0.0
    pcov[k_fe:, :k_fe] = 0.0
    params_packed = params.get_packed(use_sqrt=False, has_fe=True)
    res = MixedLMResults(model, params_packed, pcov / scale)
    res.params_object = params
    res.fe_params = fe_params
    res.cov_re = scale * cov_re_unscaled
    res.vcomp = scale * vcomp_unscaled
    res.scale = scale
    res.cov_re_unscaled = cov_re_unscaled
    res.method = "REML" if model.reml else "ML"
    res.converged = converged
    res.hist = None
    res.reml = model.reml
    res.cov_pen = None
    res.k_fe = model.k_fe
    res.k_re = model.k_re
    res.k_re2 = model.k_re2
    res.k_vc = model.k_vc
    res.use_sqrt = model.use_sqrt
    res.freepat = None
    return MixedLMResultsWrapper(res), cov_fe



def variance_table(model: Any, res: Any, groups: str, vc_names: Sequence[str]) -> pd.DataFrame:
    """lme4's VarCorr table from a statsmodels result."""
    k_re = model.k_re
    cov = np.asarray(res.cov_re) if k_re else np.zeros((0, 0))
    names: list[str] = []
    if k_re:
        ex = model.exog_re
        for j, n in enumerate(model.data.exog_re_names):
            col = ex[:, j]
            names.append("(Intercept)" if np.allclose(col, 1.0) else str(n))
    vcomp = [float(v) for v in np.atleast_1d(res.vcomp)[: len(vc_names)]]
    return variance_rows(groups, names, cov, vc_names, vcomp, float(res.scale))

class LazyResult:
    """A statsmodels result built on first attribute access (fast engine)."""

    def __init__(self, build: Any):
        self._build = build
        self._res: Any = None

    def _get(self) -> Any:
        if self._res is None:
            self._res = self._build()
        return self._res

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._get(), name)

    def __repr__(self) -> str:
        return "<statsmodels MixedLMResults, built on first access>"

    def __deepcopy__(self, memo: dict) -> LazyResult:
        return self  # immutable from the outside; pandas deep-copies ``.attrs``

    def __reduce__(self) -> tuple:
        return (_identity, (self._get(),))  # pickle the built result


def _identity(x: Any) -> Any:
    return x
