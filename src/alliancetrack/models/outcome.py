"""Relating rupture-repair episodes to treatment outcome.

* :func:`outcome_model`: post-treatment outcome on baseline and episode
  predictors (by default the numbers of repaired and unrepaired ruptures),
  patients nested in therapists (lme4's ``(1 | therapist)``), falling back to
  OLS when there is no clustering variable.  Every patient that cannot be used
  is listed with the reason.
* :func:`group_contrasts`: the group comparisons of the meta-analysis by
  Eubanks, Muran & Safran (2018): repaired vs unrepaired and repaired vs no
  rupture, adjusted for baseline, with r and d comparable to the meta-analytic
  r = .29 (d = .62) between rupture resolution and outcome.
* :func:`fit_gee_logistic` (defined in :mod:`alliancetrack.models.gee`, re-exported
  here): binary outcomes such as dropout, logistic GEE with small-sample
  corrected tests when there are few therapists.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from alliancetrack.errors import AllianceDataError
from alliancetrack.models.clustered import FEW_CLUSTERS, FewClustersWarning, fit_clustered
from alliancetrack.models.gee import GEEResult, fit_gee_logistic
from alliancetrack.models.lmm import MixedResult
from alliancetrack.models.results import ModelResult, effect_size_from_t

__all__ = [
    "DroppedPatientsWarning",
    "EUBANKS_2018",
    "FEW_CLUSTERS",
    "FewClustersWarning",
    "GEEResult",
    "OutcomeResult",
    "fit_gee_logistic",
    "group_contrasts",
    "outcome_model",
]

#: Meta-analytic association between rupture resolution and positive outcome
#: (Eubanks, Muran & Safran, 2018; 11 studies, 1,314 patients).
EUBANKS_2018: dict[str, float] = {"r": 0.29, "d": 0.62}

_COEF_COLUMNS = ["term", "estimate", "se", "statistic", "p_value", "ci_low", "ci_high"]


class DroppedPatientsWarning(UserWarning):
    """Some patients could not be used in an outcome model (see ``.dropped``)."""


def _q(name: str) -> str:
    """Quote a column name for a patsy formula when needed."""
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else f'Q("{name}")'


@dataclass(frozen=True)
class OutcomeResult(ModelResult):
    """Result of :func:`outcome_model`.

    Attributes
    ----------
    formula : str
        The model formula actually fitted.
    model : str
        ``"mixed"`` (random intercept for ``groups``) or ``"ols"``.
    coefs : pandas.DataFrame
        ``term, estimate, se, statistic, p_value, ci_low, ci_high``.  Mixed
        models: Wald z; OLS: t with ``n - p`` df.
    variance : pandas.DataFrame or None
        Variance components (mixed models only), see :class:`MixedResult`.
    data : pandas.DataFrame
        The analysed rows (one per patient).
    dropped : pandas.DataFrame
        ``patient, reason`` for every patient that was not analysed.
    notes : list of str
        Plain-language notes (fallback to OLS, dropped patients).
    fit : MixedResult or statsmodels OLS results
        The underlying fit.
    """

    formula: str
    model: str
    coefs: pd.DataFrame
    variance: pd.DataFrame | None
    data: pd.DataFrame = field(repr=False)
    dropped: pd.DataFrame = field(repr=False)
    notes: list[str] = field(default_factory=list)
    fit: Any = field(default=None, repr=False)

    @property
    def n(self) -> int:
        """Number of analysed patients."""
        return len(self.data)

    @property
    def df_resid(self) -> int:
        """Residual degrees of freedom, ``n - p``."""
        return int(self.n - len(self.coefs))

    _title = "Outcome model"

    def effect_size(self, term: str, df: float | None = None) -> dict[str, float]:
        """r and d for a coefficient from its t statistic (see :func:`effect_size_from_t`).

        ``df`` defaults to the coefficient's df in ``coefs`` (Satterthwaite for
        mixed models, ``n - p`` for OLS): a therapist-level predictor with few
        therapists has few df, and its r is not inflated by the number of patients.
        """
        return ModelResult.effect_size(self, term, df)

    def _summary_text(self) -> str:
        head = f"Outcome model ({self.model}): {self.formula}\nPatients analysed: {self.n}"
        if len(self.dropped):
            counts = self.dropped["reason"].value_counts()
            head += f"; not analysed: {len(self.dropped)}\n" + "\n".join(
                f"  {n:>4}  {r}" for r, n in counts.items()
            )
        body = (
            self.fit.summary().text
            if isinstance(self.fit, MixedResult)
            else self.coefs.to_string(index=False, float_format=lambda z: f"{z:.5g}")
        )
        notes = "\n".join(f"Note: {n}" for n in self.notes)
        return "\n".join(p for p in (head, body, notes) if p)


def _check_unique(df: pd.DataFrame, patient: str, what: str) -> None:
    dup = df.loc[df[patient].duplicated(), patient].unique()
    if len(dup):
        raise AllianceDataError(
            f"{what} has more than one row for patient(s) {list(dup[:10])}; "
            "outcome models need one row per patient."
        )


def _check_numeric(df: pd.DataFrame, column: str, patient: str) -> None:
    """A model column must hold numbers: name the patients whose cells hold text."""
    col = df[column]
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        return
    num = pd.to_numeric(col, errors="coerce")
    bad = col.notna() & num.isna()
    shown = ", ".join(f"patient {p!r}: {v!r}" for p, v in
                      zip(df.loc[bad, patient].head(5), col[bad].head(5), strict=True))
    raise AllianceDataError(
        f"column {column!r} must hold numbers for the model, but it holds text"
        + (f" ({shown})" if shown else " (numbers stored as text)")
        + "; recode it as numbers (e.g. pd.to_numeric) or leave the cell empty."
    )


def _prepare(
    table: pd.DataFrame,
    outcomes: pd.DataFrame,
    needed: Sequence[str],
    groups: str | None,
    patient: str,
    categorical: Sequence[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame, str | None, list[str]]:
    """Merge predictors and outcomes; return (data, dropped, groups, notes)."""
    for name, df in (("predictors", table), ("outcomes", outcomes)):
        if not isinstance(df, pd.DataFrame):
            raise AllianceDataError(f"{name} must be a pandas DataFrame, got {type(df).__name__}.")
        if patient not in df.columns:
            raise AllianceDataError(
                f"the {name} table has no {patient!r} column (columns: {list(df.columns)}); "
                "pass patient=<id column>."
            )
    _check_unique(table, patient, "the predictors table")
    _check_unique(outcomes, patient, "the outcomes table")
    notes: list[str] = []
    if groups is not None and groups not in table.columns and groups not in outcomes.columns:
        notes.append(
            f"grouping column {groups!r} not found in predictors or outcomes; fitted OLS "
            "without clustering."
        )
        warnings.warn(notes[-1], UserWarning, stacklevel=3)
        groups = None
    cols = list(dict.fromkeys([*needed, *([groups] if groups else [])]))
    absent = [c for c in cols if c not in table.columns and c not in outcomes.columns]
    if absent:
        raise AllianceDataError(
            f"column(s) {absent} are in neither the predictors table "
            f"({list(table.columns)}) nor the outcomes table ({list(outcomes.columns)})."
        )
    from_pred = [c for c in cols if c in table.columns and c != patient]
    from_out = [c for c in cols if c not in from_pred and c != patient]
    for c in [c for c in needed if c not in categorical]:
        _check_numeric(table if c in from_pred else outcomes, c, patient)
    left = table[[patient, *from_pred, *(["status"] if "status" in table.columns else [])]]
    left = left.loc[:, ~left.columns.duplicated()]
    right = outcomes[[patient, *from_out]]
    if len(left) and len(right) and not set(left[patient]) & set(right[patient]):
        raise AllianceDataError(
            f"no patient id is in both tables (predictors: {left[patient].dtype}, outcomes: "
            f"{right[patient].dtype}, e.g. {left[patient].iloc[0]!r} vs {right[patient].iloc[0]!r}); "
            "convert the ids to the same type."
        )
    m = left.merge(right, on=patient, how="outer", indicator=True)
    reasons = pd.Series("", index=m.index, dtype=object)
    if "status" in m.columns:
        st = m["status"]
        bad = st.notna() & (st.astype(str) != "analysed") & (m["_merge"] != "right_only")
        reasons[bad] = "excluded from episode detection: " + st[bad].astype(str)
    reasons[(reasons == "") & (m["_merge"] == "right_only")] = "not in the predictors table"
    reasons[(reasons == "") & (m["_merge"] == "left_only")] = "no outcome row"
    miss = m[cols].isna()
    for i in np.flatnonzero((reasons == "").to_numpy() & miss.any(axis=1).to_numpy()):
        reasons.iloc[i] = "missing " + ", ".join(c for c in cols if miss.iloc[i][c])
    keep = (reasons == "").to_numpy()
    dropped = pd.DataFrame({"patient": m.loc[~keep, patient].to_numpy(), "reason": reasons[~keep]})
    dropped = dropped.reset_index(drop=True)
    data = m.loc[keep, [patient, *cols]].reset_index(drop=True)
    for c in cols:
        if (
            c != groups
            and pd.api.types.is_numeric_dtype(data[c])
            and not pd.api.types.is_bool_dtype(data[c])
        ):
            data[c] = data[c].astype(float)
    if len(dropped):
        counts = dropped["reason"].value_counts()
        msg = f"{len(dropped)} patient(s) not analysed: " + "; ".join(
            f"{n} {r}" for r, n in counts.items()
        )
        notes.append(msg + " (see .dropped).")
        warnings.warn(
            msg + ". See the result's .dropped table.", DroppedPatientsWarning, stacklevel=3
        )
    return data, dropped, groups, notes


def outcome_model(
    table: pd.DataFrame,
    /,
    outcomes: pd.DataFrame,
    outcome: str = "bdi_post",
    baseline: str | None = "bdi_pre",
    predictors: Sequence[str] = ("n_repaired", "n_unrepaired"),
    groups: str | None = "therapist",
    patient: str = "patient",
    *,
    covariates: Sequence[str] = (),
    reml: bool = True,
    alpha: float = 0.05,
    ddf: str = "satterthwaite",
) -> OutcomeResult:
    """Regress post-treatment outcome on baseline and episode predictors.

    Fits ``outcome ~ baseline + predictors + covariates + (1 | groups)``
    (patients nested in therapists, REML, lme4-compatible via
    :func:`fit_mixed`), or OLS when there is no clustering variable.

    The call shape is ``outcome_model(pred, outcomes, predictors=[...])``: the
    first argument (positional-only) is the predictors *table*, the keyword
    ``predictors=`` the list of predictor *columns*.

    Parameters
    ----------
    table : pandas.DataFrame
        Positional-only: the per-patient table of
        :func:`alliancetrack.episode_predictors` (``patient, status,
        n_repaired, n_unrepaired, group, ...``).  Patients whose ``status`` is
        not ``"analysed"`` are reported as dropped.
    outcomes : pandas.DataFrame
        One row per patient with the outcome, the baseline score and (usually)
        the therapist.
    outcome : str
        Outcome and baseline columns (``baseline=None`` for none).
    baseline : str
        Outcome and baseline columns (``baseline=None`` for none).
    predictors : sequence of str
        The predictor columns, default ``["n_repaired", "n_unrepaired"]``.
    groups : str or None
        Clustering column (therapist).  ``None``, a missing column or a single
        cluster gives OLS, with a note.
    patient : str
        Patient id column in both tables.
    covariates : sequence of str
        Further adjustment columns.
    reml : bool
        REML (default) or ML for the mixed model.
    alpha : float
        1 - confidence level.
    ddf : str
        Denominator df of the mixed model's t tests (see :func:`fit_mixed`):
        ``"satterthwaite"`` (default), ``"kenward-roger"``, ``"residual"`` or
        ``"wald"``.

    Returns
    -------
    OutcomeResult
        ``.coefs``, ``.variance``, ``.dropped`` (``patient, reason``),
        ``.notes``, ``.summary()``, ``.effect_size(term)``.

    Warns
    -----
    DroppedPatientsWarning
        When any patient is not analysed (reasons: excluded from episode
        detection, not in the predictors table, no outcome row, missing values).
    FewClustersWarning
        With fewer than 20 therapists: tests of therapist-level predictors
        (e.g. training) rest on that many clusters, not on the patients; their
        p-values and intervals use Satterthwaite t tests (with 8 therapists a
        therapist-level predictor has about 6 df), and the z test lme4 prints
        would be anti-conservative (Luke, 2017).

    Examples
    --------
    >>> import numpy as np, pandas as pd, alliancetrack as at
    >>> rng = np.random.default_rng(5)
    >>> n = 60
    >>> pred = pd.DataFrame({"patient": range(n), "status": "analysed",
    ...                      "n_repaired": rng.integers(0, 3, n),
    ...                      "n_unrepaired": rng.integers(0, 2, n)})
    >>> out = pd.DataFrame({"patient": range(n), "therapist": np.arange(n) % 6,
    ...                     "bdi_pre": rng.normal(25, 6, n)})
    >>> out["bdi_post"] = (0.8 * out["bdi_pre"] - 2 * pred["n_repaired"]
    ...                    + 3 * pred["n_unrepaired"] + rng.normal(0, 4, n))
    >>> out.loc[0, "bdi_post"] = np.nan
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     res = at.outcome_model(pred, out)
    >>> res.model, res.n
    ('mixed', 59)
    >>> res.dropped
       patient            reason
    0        0  missing bdi_post
    >>> res.coefs["term"].tolist()
    ['(Intercept)', 'bdi_pre', 'n_repaired', 'n_unrepaired']
    """
    terms = [predictors] if isinstance(predictors, str) else list(predictors)
    rhs = [*([baseline] if baseline else []), *terms, *covariates]
    needed = [outcome, *rhs]
    data, dropped, groups, notes = _prepare(table, outcomes, needed, groups, patient,
                                            categorical=covariates)
    if len(data) <= len(rhs) + 1:
        raise AllianceDataError(
            f"only {len(data)} patient(s) can be analysed for {len(rhs) + 1} coefficients; "
            "see the reasons in the warning (missing outcome, excluded patients)."
        )
    formula = f"{_q(outcome)} ~ " + (" + ".join(_q(c) for c in rhs) if rhs else "1")
    model, fit, coefs, variance = fit_clustered(formula, data, groups, reml, alpha, notes, ddf)
    return OutcomeResult(formula, model, coefs, variance, data, dropped, notes, fit)


def group_contrasts(
    predictors: pd.DataFrame,
    outcomes: pd.DataFrame,
    outcome: str = "bdi_post",
    baseline: str | None = "bdi_pre",
    *,
    group: str = "group",
    groups: str | None = "therapist",
    patient: str = "patient",
    covariates: Sequence[str] = (),
    better: str = "lower",
    reml: bool = True,
    alpha: float = 0.05,
    ddf: str = "satterthwaite",
) -> pd.DataFrame:
    """Repaired vs unrepaired and repaired vs no rupture, adjusted for baseline.

    Fits ``outcome ~ baseline + C(group) + covariates + (1 | groups)`` with
    ``"repaired"`` as the reference group (OLS without clustering), and
    reports each contrast as in Eubanks, Muran & Safran (2018).

    Formulas: ``estimate`` is the baseline-adjusted mean difference
    *repaired minus comparison* in outcome units, ``statistic`` its t with
    ``df`` (Satterthwaite by default, as lmerTest; ``n - p`` for OLS).

    ``d`` is the model-adjusted difference divided by the total outcome SD
    ``sqrt(tau^2 + sigma^2)`` (therapist plus residual variance; the residual
    SD for OLS), a standardised mean difference that does not assume equal
    groups; ``d_ci_low, d_ci_high`` are the difference's confidence limits
    divided by the same SD (the SD treated as known).  ``r = t / sqrt(t^2 + df)``
    (Rosenthal, 1994) with the contrast's df.  Both are signed so that
    **positive values favour the repaired group** (with ``better="lower"``,
    as for the BDI, a negative ``estimate`` gives positive r and d).  They can
    be set next to the meta-analytic r = .29, d = .62 (:data:`EUBANKS_2018`),
    which pools studies' standardised differences; the conversion
    ``d = 2t / sqrt(df)`` assumes two equal groups and understates d with
    unequal ones.

    Parameters
    ----------
    predictors : pandas.DataFrame
        From :func:`alliancetrack.episode_predictors`, with a ``group`` column
        (``"no_rupture" | "repaired" | "unrepaired"``).
    outcomes : pandas.DataFrame
        One row per patient: outcome, baseline, therapist.
    outcome : str
        Column names (``baseline=None`` for an unadjusted comparison).
    baseline : str
        Column names (``baseline=None`` for an unadjusted comparison).
    group : str
        Group column of ``predictors``.
    groups : str or None
        Clustering column (therapist) or ``None`` for OLS.
    patient : str
        Patient id column.
    covariates : sequence of str
        Further adjustment columns.
    better : {"lower", "higher"}
        Which direction of the outcome is the better result.
    reml : bool
        REML or ML for the mixed model.
    alpha : float
        1 - confidence level.

    Returns
    -------
    pandas.DataFrame
        One row per contrast: ``contrast, comparison, n_repaired, n_comparison,
        estimate, se, statistic, p_value, ci_low, ci_high, df, r, d, d_ci_low,
        d_ci_high, sd_total, model``.
        The full fit is in ``.attrs["model"]`` (an :class:`OutcomeResult`).

    Examples
    --------
    >>> import numpy as np, pandas as pd, alliancetrack as at
    >>> rng = np.random.default_rng(2)
    >>> n = 90
    >>> g = np.array(["repaired", "unrepaired", "no_rupture"])[np.arange(n) % 3]
    >>> pred = pd.DataFrame({"patient": range(n), "status": "analysed", "group": g})
    >>> out = pd.DataFrame({"patient": range(n), "bdi_pre": rng.normal(25, 5, n)})
    >>> out["bdi_post"] = out["bdi_pre"] - 6 * (g == "repaired") + rng.normal(0, 5, n)
    >>> tab = at.group_contrasts(pred, out, groups=None)
    >>> tab["contrast"].tolist()
    ['repaired vs unrepaired', 'repaired vs no_rupture']
    >>> bool((tab["estimate"] < 0).all() and (tab["r"] > 0).all())
    True
    """
    if better not in ("lower", "higher"):
        raise AllianceDataError(f'better must be "lower" or "higher", got {better!r}.')
    if group not in predictors.columns:
        raise AllianceDataError(
            f"the predictors table has no {group!r} column; pass the output of "
            "alliancetrack.episode_predictors or group=<column>."
        )
    rhs = [*([baseline] if baseline else []), group, *covariates]
    data, dropped, groups_used, notes = _prepare(
        predictors, outcomes, [outcome, *rhs], groups, patient,
        categorical=[group, *covariates]
    )
    comparisons = _contrast_groups(data, group, notes)
    dummies = []
    for c in comparisons:
        data[f"_is_{c}"] = (data[group] == c).astype(float)
        dummies.append(f"_is_{c}")
    terms = [*([baseline] if baseline else []), *dummies, *covariates]
    formula = f"{_q(outcome)} ~ " + " + ".join(_q(c) for c in terms)
    model, fit, coefs, variance = fit_clustered(formula, data, groups_used, reml, alpha, notes, ddf)
    res = OutcomeResult(formula, model, coefs, variance, data, dropped, notes, fit)
    if variance is not None:  # tau^2 (every random-effect variance) + sigma^2
        sd_total = math.sqrt(float(variance.loc[variance["term2"].isna(), "variance"].sum()))
    else:
        sd_total = math.sqrt(float(fit.scale))
    notes.append(
        f"d = adjusted difference / total SD ({sd_total:.4g} = sqrt(tau^2 + sigma^2)); "
        "r from t with the contrast's df."
    )
    rows = [_contrast_row(c, comparisons, data, group, coefs, res, better, sd_total)
            for c in ("unrepaired", "no_rupture")]
    cols = [
        "contrast", "comparison", "n_repaired", "n_comparison", "estimate", "se", "statistic",
        "p_value", "ci_low", "ci_high", "df", "r", "d", "d_ci_low", "d_ci_high", "sd_total",
    ]  # fmt: skip
    out = pd.DataFrame(rows).reindex(columns=cols)
    out["model"] = model
    out.attrs["model"] = res
    return out


def _contrast_groups(data: pd.DataFrame, group: str, notes: list[str]) -> list[str]:
    """Check the group labels (made strings); the comparison groups present.

    Notes each comparison group that is missing.
    """
    data[group] = data[group].astype(str)
    levels = set(data[group])
    unknown = levels - {"repaired", "unrepaired", "no_rupture"}
    if unknown:
        raise AllianceDataError(
            f"unexpected values {sorted(unknown)} in column {group!r}; expected "
            '"no_rupture", "repaired" or "unrepaired".'
        )
    if "repaired" not in levels:
        raise AllianceDataError("no analysed patient is in the 'repaired' group; no contrast.")
    comparisons = [c for c in ("unrepaired", "no_rupture") if c in levels]
    for c in ("unrepaired", "no_rupture"):
        if c not in levels:
            notes.append(f"no analysed patient in group {c!r}: that contrast is missing.")
    return comparisons


def _contrast_row(c: str, comparisons: list[str], data: pd.DataFrame, group: str,
                  coefs: pd.DataFrame, res: OutcomeResult, better: str,
                  sd_total: float) -> dict[str, Any]:
    """One row of :func:`group_contrasts`: repaired vs ``c`` (only counts if ``c`` is absent)."""
    sign_fav = -1.0 if better == "lower" else 1.0
    c_idx = coefs.set_index("term")
    n_rep = int((data[group] == "repaired").sum())
    row: dict[str, Any] = {
        "contrast": f"repaired vs {c}",
        "comparison": c,
        "n_repaired": n_rep,
        "n_comparison": int((data[group] == c).sum()),
    }
    if c in comparisons:
        b = c_idx.loc[f"_is_{c}"]
        est = -float(b["estimate"])
        stat = -float(b["statistic"])
        df = res.term_df(f"_is_{c}")
        es = effect_size_from_t(sign_fav * stat, df)
        lo, hi = sorted((sign_fav * -float(b["ci_high"]), sign_fav * -float(b["ci_low"])))
        row.update(
            estimate=est,
            se=float(b["se"]),
            statistic=stat,
            p_value=float(b["p_value"]),
            ci_low=-float(b["ci_high"]),
            ci_high=-float(b["ci_low"]),
            df=df,
            r=es["r"],
            d=sign_fav * est / sd_total,
            d_ci_low=lo / sd_total,
            d_ci_high=hi / sd_total,
            sd_total=sd_total,
        )
    return row
