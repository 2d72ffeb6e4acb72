"""One-call GLMM tables from episode output: rupture counts with exposure, episode-level repair.

* :func:`rupture_counts`: one row per patient from :func:`episode_predictors`
  (``n_ruptures`` and ``n_sessions``, the exposure for ``offset(np.log(n_sessions))``)
  joined to patient/therapist characteristics.
* :func:`repair_table`: one row per rupture episode with ``repaired`` (0/1;
  missing when the episode is censored at the end of the series) joined to the
  same characteristics.
* :func:`overdispersion`: Pearson chi-square / residual df of a Poisson fit.
* :func:`compare_count_models`: Poisson vs negative-binomial GLMM, with the
  likelihood-ratio test of theta = infinity (on the boundary, so the p-value is
  half the chi-square(1) tail; Self & Liang, 1987).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from alliancetrack.errors import AllianceDataError
from alliancetrack.models.glmm.model import GLMMResult, fit_glmm

__all__ = ["compare_count_models", "overdispersion", "repair_table", "rupture_counts"]


def _join(left: pd.DataFrame, patients: pd.DataFrame | None) -> pd.DataFrame:
    if patients is None:
        return left
    if "patient" not in patients.columns:
        raise AllianceDataError(
            f"the patient table needs a 'patient' column (columns: {list(patients.columns)})."
        )
    if patients["patient"].duplicated().any():
        dup = patients.loc[patients["patient"].duplicated(), "patient"].head(5).tolist()
        raise AllianceDataError(f"patients listed more than once in the patient table: {dup}.")
    extra = [c for c in patients.columns if c == "patient" or c not in left.columns]
    return left.merge(patients[extra], on="patient", how="left")


def rupture_counts(predictors: pd.DataFrame, patients: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rupture counts per patient with sessions as exposure, for a Poisson/NB GLMM.

    Parameters
    ----------
    predictors : pandas.DataFrame
        Output of :func:`alliancetrack.episode_predictors` (one row per input
        patient: ``patient, status, n_sessions, n_ruptures, ...``).
    patients : pandas.DataFrame, optional
        One row per patient with ``patient`` and characteristics (therapist,
        diagnosis, training, ...), joined on ``patient``.

    Returns
    -------
    pandas.DataFrame
        Every input patient (``status`` says which are usable: ``"analysed"``
        with at least one session) with ``n_ruptures``, ``n_sessions`` and
        ``rupture_rate`` (ruptures per session).

    Examples
    --------
    >>> import pandas as pd
    >>> from alliancetrack.models.glmm.helpers import rupture_counts
    >>> pred = pd.DataFrame({"patient": [1, 2], "status": ["analysed", "analysed"],
    ...                      "n_sessions": [10, 8], "n_ruptures": [2, 0]})
    >>> rupture_counts(pred, pd.DataFrame({"patient": [1, 2], "therapist": ["A", "B"]}))
       patient    status  n_sessions  n_ruptures  rupture_rate therapist
    0        1  analysed          10           2          0.2         A
    1        2  analysed           8           0          0.0         B
    """
    need = {"patient", "status", "n_sessions", "n_ruptures"}
    if not need <= set(predictors.columns):
        raise AllianceDataError(
            f"predictors need columns {sorted(need)} (from episode_predictors); missing "
            f"{sorted(need - set(predictors.columns))}."
        )
    out = predictors[["patient", "status", "n_sessions", "n_ruptures"]].copy()
    out.loc[(out["status"] == "analysed") & ~(out["n_sessions"] > 0), "status"] = "no sessions"
    with np.errstate(divide="ignore", invalid="ignore"):
        out["rupture_rate"] = out["n_ruptures"] / out["n_sessions"].where(out["n_sessions"] > 0)
    return _join(out, patients)


def repair_table(episodes: pd.DataFrame, patients: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per rupture episode with ``repaired`` (0/1) for a binomial GLMM.

    ``repaired`` is missing (NaN) for censored episodes (the series ended
    before a repair could be seen); :func:`fit_glmm` drops those rows and counts
    them in ``n_dropped``.

    Examples
    --------
    >>> import pandas as pd
    >>> from alliancetrack.models.glmm.helpers import repair_table
    >>> ep = pd.DataFrame({"patient": [1, 1, 2], "episode": [1, 2, 1], "depth": [1.0, 0.5, 2.0],
    ...                    "repaired": [True, False, False], "censored": [False, False, True]})
    >>> repair_table(ep)["repaired"].tolist()
    [1.0, 0.0, nan]
    """
    need = {"patient", "episode", "repaired"}
    if not need <= set(episodes.columns):
        raise AllianceDataError(
            f"episodes need columns {sorted(need)}; missing {sorted(need - set(episodes.columns))}."
        )
    keep = [c for c in ("patient", "episode", "depth", "rupture_session", "sessions_to_repair",
                        "censored") if c in episodes.columns]
    out = episodes[keep].copy()
    rep = episodes["repaired"].astype("boolean").astype(float)
    if "censored" in episodes.columns:
        rep = rep.where(~episodes["censored"].astype("boolean").fillna(False).to_numpy())
    out["repaired"] = rep.to_numpy()
    return _join(out.reset_index(drop=True), patients)


def overdispersion(fit: GLMMResult) -> dict[str, float]:
    """Pearson chi-square over residual df of a Poisson (or NB) GLMM.

    ``sum((y - mu)^2 / V(mu))`` with ``mu`` the conditional means, over
    ``n - p - n_theta`` (Bolker et al., 2009).  A ratio well above 1 (and a
    small ``p_value`` of the chi-square test) signals overdispersion: use
    ``family="negbin"``.

    Examples
    --------
    >>> import numpy as np, pandas as pd, alliancetrack as at
    >>> rng = np.random.default_rng(2)
    >>> d = pd.DataFrame({"therapist": np.repeat(np.arange(15), 12)})
    >>> mu = np.exp(1.0 + rng.normal(0, 0.3, 15)[d["therapist"]])
    >>> d["y"] = rng.negative_binomial(1.0, 1.0 / (1.0 + mu))  # theta = 1: overdispersed
    >>> fit = at.fit_glmm("y ~ 1 + (1 | therapist)", d, family="poisson")
    >>> round(at.overdispersion(fit)["ratio"], 1) > 1.5
    True
    """
    y, mu = fit.response, fit.fitted
    if fit.family == "poisson":
        var = mu
    elif fit.family == "negbin":
        var = mu + mu**2 / fit.theta
    else:
        raise ValueError("overdispersion() is for count models (poisson or negbin).")
    chi2 = float(np.sum((y - mu) ** 2 / var))
    df = fit.nobs - len(fit.coefs) - len(fit.theta_re) - (fit.family == "negbin")
    return {"pearson_chi2": chi2, "df": float(df), "ratio": chi2 / df,
            "p_value": float(stats.chi2.sf(chi2, df))}


def compare_count_models(formula: str, data: pd.DataFrame) -> pd.DataFrame:
    """Fit a count GLMM as Poisson and as negative binomial and compare them.

    Returns one row per model: ``family, llf, aic, theta, dispersion`` (Pearson
    ratio), and on the negbin row ``lr_stat`` and ``p_value`` of the
    likelihood-ratio test of the Poisson (theta = infinity, a boundary value: p is
    half the chi-square(1) tail, Self & Liang, 1987) and ``preferred`` naming
    the better model.  The fits are in ``.attrs["fits"]``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from alliancetrack.models.glmm.helpers import compare_count_models
    >>> rng = np.random.default_rng(3)
    >>> d = pd.DataFrame({"therapist": np.repeat(np.arange(15), 12), "x": rng.normal(size=180)})
    >>> mu = np.exp(0.5 + 0.3 * d["x"] + rng.normal(0, 0.3, 15)[d["therapist"]])
    >>> d["y"] = rng.negative_binomial(1.5, 1.5 / (1.5 + mu))
    >>> tab = compare_count_models("y ~ x + (1 | therapist)", d)
    >>> tab["preferred"].iloc[0]
    'negbin'
    """
    pois = fit_glmm(formula, data, family="poisson")
    nb = fit_glmm(formula, data, family="negbin")
    lr = max(0.0, 2 * (nb.llf - pois.llf))
    p = 0.5 * float(stats.chi2.sf(lr, 1)) if lr > 0 else 1.0
    pref = "negbin" if p < 0.05 else "poisson"
    rows = []
    for f in (pois, nb):
        rows.append({"family": f.family, "llf": f.llf, "aic": f.aic, "theta": f.theta,
                     "dispersion": overdispersion(f)["ratio"],
                     "lr_stat": lr if f is nb else np.nan,
                     "p_value": p if f is nb else np.nan, "preferred": pref})
    out = pd.DataFrame(rows)
    out.attrs["fits"] = {"poisson": pois, "negbin": nb}
    return out
