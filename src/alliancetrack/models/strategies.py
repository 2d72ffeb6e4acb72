"""Which resolution strategies go with repair: :func:`strategy_effects` (binomial GLMM).

Repair of each rupture episode (0/1) is modelled on the classes of 3RS
resolution strategies used in it (immediate / expressive, Muran & Eubanks
2020), optionally with moderators (e.g. a personality-disorder indicator) and
their interactions with the classes, and therapist and patient random
intercepts -- :func:`alliancetrack.fit_glmm`, which matches lme4's ``glmer``.

The data are observational: therapists choose strategies *in response to*
the rupture (its severity, the patient, how it unfolds), so the odds ratios
are associations, not effects of assigning a strategy.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from alliancetrack.errors import AllianceDataError
from alliancetrack.models.glmm import GLMMResult, fit_glmm
from alliancetrack.reading.alliance import _listing

__all__ = ["SeparationWarning", "StrategyEffects", "strategy_effects"]

_USES = ("any", "count")


class SeparationWarning(UserWarning):
    """Every episode with (or without) a strategy class has the same outcome: its odds ratio
    is not estimable (it runs off to 0 or infinity)."""


@dataclass(frozen=True, repr=False)
class StrategyEffects:
    """Result of :func:`strategy_effects`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per model term but the intercept: ``term, odds_ratio, ci_low,
        ci_high, p_value, meaning`` (a plain-language sentence).
    fit : GLMMResult
        The binomial GLMM (``fit.coefs`` on the log-odds scale, ``fit.variance``).
    formula : str
        The model formula (lme4 syntax).
    data : pandas.DataFrame
        The episodes analysed (with the model's predictor columns).
    dropped : pandas.DataFrame
        Episodes left out and why (``patient, episode, reason``).
    use : str
        ``"any"`` (any use of the class in the episode) or ``"count"``.
    """

    table: pd.DataFrame
    fit: GLMMResult
    formula: str
    data: pd.DataFrame
    dropped: pd.DataFrame = field(default_factory=pd.DataFrame)
    use: str = "any"

    def summary(self) -> str:
        """The plain-language table, the model and the caveat."""
        lines = [f"Repair on resolution strategies (binomial GLMM, Laplace): {self.formula}",
                 f"{len(self.data)} episodes analysed, {len(self.dropped)} left out.", ""]
        for r in self.table.itertuples(index=False):
            lines.append(f"- {r.meaning}")
        lines += ["", "Observational data: strategies are chosen in response to the rupture, so "
                  "these odds ratios are associations, not effects of a strategy.", "",
                  str(self.fit.summary())]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<StrategyEffects: {len(self.data)} episodes, use={self.use!r}, "
                f"{len(self.table)} terms>")


def _predictors(use: str) -> tuple[str, str]:
    return ("any_immediate", "any_expressive") if use == "any" else ("n_immediate",
                                                                     "n_expressive")


def _check(linked, outcome, moderators, groups, use, patient_effect) -> list[str]:
    if not isinstance(linked, pd.DataFrame):
        raise TypeError("linked must be the output of alliancetrack.link_strategies, got "
                        f"{type(linked).__name__}.")
    if use not in _USES:
        raise ValueError(f"use must be 'any' or 'count', got {use!r}.")
    if isinstance(moderators, str):
        moderators = [moderators]
    moderators = list(moderators or [])
    clash = [m for m in moderators if m in ("patient", "episode", groups, outcome,
                                            *_predictors("any"), *_predictors("count"))]
    if clash:
        raise ValueError(f"Moderator(s) {clash} are already in the model.")
    need = ["patient", "n_immediate", "n_expressive", outcome, *moderators]
    if groups is not None:
        if not isinstance(groups, str):
            raise ValueError(f"groups must be a column name or None, got {groups!r}.")
        need.append(groups)
    missing = [c for c in dict.fromkeys(need) if c not in linked.columns]
    if missing:
        raise AllianceDataError(
            f"Column(s) {missing} not in the linked table (columns: {list(linked.columns)}). "
            "Merge patient-level moderators by patient first; therapist comes from the "
            "episodes or the 3RS codes (read_3rs(..., therapist=...))."
        )
    if groups is None and not patient_effect:
        raise ValueError("Give groups= (e.g. 'therapist') or patient_effect=True: repair of "
                         "episodes of one patient or therapist is not independent.")
    return moderators


def _numeric(col: pd.Series, name: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(col) or str(col.dtype) == "boolean":
        return col.astype("Float64").astype("float64")
    if not pd.api.types.is_numeric_dtype(col):
        vals = _listing(sorted(map(repr, pd.unique(col.dropna())))[:5])
        raise AllianceDataError(
            f"Moderator {name!r} must be numeric or 0/1 (an indicator), found {vals}. Code a "
            f"category as indicators, e.g. df['{name}_x'] = df['{name}'] == 'x'."
        )
    return col.astype("float64")


def _prepare(linked, outcome, moderators, groups, use, drop_censored):
    imm, exp = _predictors(use)
    df = linked.reset_index(drop=True)
    reasons = pd.Series(None, index=df.index, dtype=object)
    y = df[outcome]
    if not (pd.api.types.is_bool_dtype(y) or str(y.dtype) == "boolean"):
        vals = set(pd.to_numeric(y, errors="coerce").dropna().unique().tolist())
        if pd.to_numeric(y, errors="coerce").notna().sum() != y.notna().sum() or \
                not vals <= {0.0, 1.0}:
            raise AllianceDataError(f"The outcome {outcome!r} must be true/false or 0/1.")
    y = pd.to_numeric(y.astype("Float64") if str(y.dtype) == "boolean" else y,
                      errors="coerce").astype("float64")
    reasons[df["n_strategies" if "n_strategies" in df else "n_immediate"].isna()] = \
        "rupture session not coded for strategies"
    reasons[reasons.isna() & y.isna()] = f"{outcome} unknown"
    if drop_censored and "censored" in df:
        cens = df["censored"].astype("boolean").fillna(False).to_numpy(dtype=bool) & (y == 0)
        reasons[reasons.isna() & cens] = "censored before repair could be observed"
    mods = {m: _numeric(df[m], m) for m in moderators}
    for m, v in mods.items():
        reasons[reasons.isna() & v.isna()] = f"{m} missing"
    if groups is not None:
        reasons[reasons.isna() & df[groups].isna()] = f"{groups} missing"
    keep = reasons.isna().to_numpy()
    ni = pd.to_numeric(df["n_immediate"]).astype("float64")
    ne = pd.to_numeric(df["n_expressive"]).astype("float64")
    model = pd.DataFrame({
        "patient": df["patient"].astype(str).to_numpy(),
        outcome: y.to_numpy(),
        imm: (ni > 0).astype(float).to_numpy() if use == "any" else ni.to_numpy(),
        exp: (ne > 0).astype(float).to_numpy() if use == "any" else ne.to_numpy(),
        **{m: v.to_numpy() for m, v in mods.items()},
    })
    if groups is not None:
        model[groups] = df[groups].astype(str).to_numpy()
    cols = [c for c in ("patient", "episode") if c in df]
    dropped = df.loc[~keep, cols].assign(reason=reasons[~keep].to_numpy()).reset_index(drop=True)
    return model.loc[keep].reset_index(drop=True), dropped


def _separation(model: pd.DataFrame, outcome: str, cols) -> None:
    for col in cols:
        tab = pd.crosstab(model[col], model[outcome])
        if tab.shape != (2, 2) or (tab.to_numpy() == 0).any():
            cells = ", ".join(f"{col}={int(a)}: {int(tab.loc[a].get(1.0, 0))} of "
                              f"{int(tab.loc[a].sum())} repaired" for a in tab.index)
            warnings.warn(
                f"Separation: {cells}. The odds ratio of {col} is not estimable (estimates and "
                "intervals run off); use='count', fewer moderators or more episodes.",
                SeparationWarning, stacklevel=3)


def _meaning(term: str, ratio: float, lo: float, hi: float, use: str, moderators) -> str:
    ci = f"OR {ratio:.2f}, 95% CI {lo:.2f}-{hi:.2f}"
    parts = term.split(":")
    cls = {"any_immediate": "immediate", "any_expressive": "expressive",
           "n_immediate": "immediate", "n_expressive": "expressive"}
    if len(parts) == 1 and term in cls:
        if use == "any":
            return (f"Episodes with any {cls[term]} strategy had {ratio:.2f} times the odds of "
                    f"repair of episodes without ({ci})"
                    + (", for moderator values of 0" if moderators else "") + ".")
        return (f"Each further {cls[term]} strategy use multiplied the odds of repair by "
                f"{ratio:.2f} ({ci})" + (", for moderator values of 0" if moderators else "")
                + ".")
    if len(parts) == 2 and parts[0] in cls:
        return (f"Per unit of {parts[1]} (1 vs 0 for an indicator), the odds ratio of "
                f"{cls[parts[0]]} strategies is multiplied by {ratio:.2f} ({ci}).")
    return (f"Per unit of {term}, the odds of repair without strategies of either class are "
            f"multiplied by {ratio:.2f} ({ci}).")


def strategy_effects(linked: pd.DataFrame, outcome: str = "repaired",
                     moderators: Sequence[str] | None = None, groups: str | None = "therapist",
                     *, use: str = "any", patient_effect: bool = True,
                     drop_censored: bool = True, nagq: int = 1) -> StrategyEffects:
    """Binomial GLMM of repair on the resolution-strategy classes used.

    The model (lme4 syntax) is ``outcome ~ (imm + exp) * (m1 + m2 ...) +
    (1 | groups) + (1 | patient)``, where ``imm`` / ``exp`` are
    ``any_immediate`` / ``any_expressive`` (0/1: the class was used in the
    episode's window) with ``use="any"``, or the counts ``n_immediate`` /
    ``n_expressive`` with ``use="count"``.  Each moderator enters with its
    interaction with both classes (e.g. personality disorder x expressive:
    for whom do expressive strategies go with repair).  Fitted by
    :func:`alliancetrack.fit_glmm` (Laplace approximation by default, Wald z
    tests and CIs as ``glmer``'s summary; with few therapists these are
    anti-conservative, so read the intervals as approximate).

    Episodes whose rupture session was not coded, whose outcome is unknown,
    unrepaired episodes censored by the end of treatment (``drop_censored``)
    and rows with missing moderators are left out and listed in ``.dropped``.

    Strategy classes follow Muran & Eubanks (2020); the rationale for asking
    which strategies work for whom is the rupture-repair literature's call for
    personalisation (López-Vásquez et al., scoping review).  **Observational
    data**: strategies are chosen in response to the rupture, so the odds
    ratios are associations, not effects.

    Parameters
    ----------
    linked : pandas.DataFrame
        From :func:`alliancetrack.link_strategies`, with moderator columns
        merged in (numeric or 0/1; one value per episode).
    outcome : str
        The 0/1 or true/false outcome column (default ``"repaired"``).
    moderators : list of str, optional
        Columns interacting with both strategy classes.
    groups : str or None
        Column of the therapist (random intercept); None for none.
    use : {"any", "count"}
        Any use of a class or the number of uses.
    patient_effect : bool
        Add a patient random intercept (episodes of a patient are not
        independent).
    drop_censored : bool
        Leave out unrepaired episodes that treatment ended before repair could
        be observed.
    nagq : int
        Passed to :func:`alliancetrack.fit_glmm` (only with one random effect).

    Returns
    -------
    StrategyEffects
        ``.table`` with odds ratios, CIs, p values and plain-language
        sentences; ``.fit`` the GLMM.

    Raises
    ------
    AllianceDataError
        Missing columns, a non-binary outcome, non-numeric moderators, no
        episodes left or a strategy class never (or always) used.
    ValueError
        Bad ``use``, ``groups`` or neither random effect.

    Examples
    --------
    >>> import numpy as np, pandas as pd, alliancetrack as at
    >>> rng = np.random.default_rng(3)
    >>> n = 400
    >>> linked = pd.DataFrame({"patient": np.arange(n) // 4, "episode": np.arange(n) % 4 + 1,
    ...                        "therapist": np.arange(n) // 20,
    ...                        "n_strategies": 0, "n_immediate": rng.poisson(1, n),
    ...                        "n_expressive": rng.poisson(0.7, n)})
    >>> p = 1 / (1 + np.exp(-(-0.2 + 1.0 * (linked["n_expressive"] > 0))))
    >>> linked["repaired"] = rng.random(n) < p
    >>> eff = at.strategy_effects(linked)
    >>> eff.table["term"].tolist()
    ['any_immediate', 'any_expressive']
    >>> bool(eff.table.loc[1, "ci_low"] > 1)
    True
    """
    moderators = _check(linked, outcome, moderators, groups, use, patient_effect)
    model, dropped = _prepare(linked, outcome, moderators, groups, use, drop_censored)
    imm, exp = _predictors(use)
    if len(model) == 0:
        raise AllianceDataError(
            f"No episode left to analyse: {_listing(dropped['reason'].value_counts().index)}."
        )
    for col in (imm, exp):
        v = model[col]
        if v.nunique() < 2:
            raise AllianceDataError(
                f"{col} is {v.iloc[0]:g} in every analysed episode; its odds ratio cannot be "
                "estimated."
            )
    if model[outcome].nunique() < 2:
        raise AllianceDataError(f"Every analysed episode has {outcome} = "
                                f"{model[outcome].iloc[0]:g}; there is nothing to model.")
    if use == "any":
        _separation(model, outcome, (imm, exp))
    fixed = f"({imm} + {exp}) * ({' + '.join(moderators)})" if moderators else f"{imm} + {exp}"
    random = []
    if groups is not None:
        random.append(f"(1 | {groups})")
    if patient_effect:
        random.append("(1 | patient)")
    formula = f"{outcome} ~ {fixed} + {' + '.join(random)}"
    fit = fit_glmm(formula, model, family="binomial", nagq=nagq)
    co = fit.coefs[~fit.coefs["term"].isin(["Intercept", "(Intercept)"])]
    table = pd.DataFrame({
        "term": co["term"].to_numpy(),
        "odds_ratio": co["ratio"].to_numpy(dtype="float64"),
        "ci_low": co["ratio_low"].to_numpy(dtype="float64"),
        "ci_high": co["ratio_high"].to_numpy(dtype="float64"),
        "p_value": co["p_value"].to_numpy(dtype="float64"),
    })
    table["meaning"] = [_meaning(r.term, r.odds_ratio, r.ci_low, r.ci_high, use, moderators)
                        for r in table.itertuples(index=False)]
    return StrategyEffects(table=table, fit=fit, formula=formula, data=model, dropped=dropped,
                           use=use)

