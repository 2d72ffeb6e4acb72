"""Outcome studies on simulated and real cohorts: power under detection error, specification curves.

How much does detection error cost a study of ruptures and outcome, and how
much does the answer depend on the rupture definition?

* :func:`power_analysis` estimates, by simulation, the power to detect an
  association between the number of repaired ruptures and outcome when the
  ruptures are *detected* (with error) rather than known, next to the power
  with the true counts: the gap is the attenuation caused by detection error.
* :func:`sensitivity_analysis` fits the same outcome model under many rupture
  definitions (:func:`rupture_definitions`) and tabulates the estimate of
  interest (a specification curve).

Detector accuracy against simulated truth (:func:`evaluate_detection`,
:func:`validation_study`) is in :mod:`alliancetrack.simulation.studies`,
whose seeding and parallel map these studies share: results depend on
``seed`` only, never on ``n_jobs``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from alliancetrack.detection.detect import detect_episodes
from alliancetrack.detection.rules import PRESETS
from alliancetrack.errors import AllianceDataError
from alliancetrack.predictors import episode_predictors
from alliancetrack.reading.alliance import AllianceData, as_alliance_data, read_alliance
from alliancetrack.simulation.cohort import simulate_cohort
from alliancetrack.simulation.studies import _detector, _detectors, _pmap, _seeds, _sim_data

__all__ = [
    "PowerResult",
    "SensitivityResult",
    "power_analysis",
    "rupture_definitions",
    "sensitivity_analysis",
]


# ----------------------------------------------------------------------------- definitions
def rupture_definitions() -> list[dict]:
    """The rupture definitions :func:`sensitivity_analysis` uses by default.

    Every preset as published, every preset with a 3-session repair window,
    the 1- and 2-SD rules measured from the mean of the 3 previous sessions
    (so slower, U-shaped declines count), and change-point detection.

    Examples
    --------
    >>> [d["label"] for d in rupture_definitions()][:3]
    ['stiles-2sd', 'stiles-2sd, repair within 3', 'strauss-1sd']
    """
    specs: list[dict] = []
    for name in PRESETS:
        specs.append({"label": name, "method": "rules", "rule": name})
        specs.append({"label": f"{name}, repair within 3", "method": "rules", "rule": name,
                      "repair_window": 3})
    for name in ("stiles-2sd", "strauss-1sd"):
        specs.append({"label": f"{name}, mean of 3 previous", "method": "rules", "rule": name,
                      "reference": "mean_previous", "reference_sessions": 3})
    specs.append({"label": "changepoint", "method": "changepoint"})
    return specs


# ----------------------------------------------------------------------------- power
def _ols_test(y: np.ndarray, X: np.ndarray, col: int) -> tuple[float, float, float, int]:
    """OLS estimate, SE, two-sided t-test p-value and df of column ``col``."""
    n, p = X.shape
    df = n - p
    if df < 1 or np.ptp(X[:, col]) == 0 or np.linalg.matrix_rank(X) < p:
        return np.nan, np.nan, np.nan, df
    xtx_inv = np.linalg.inv(X.T @ X)
    beta = xtx_inv @ (X.T @ y)
    resid = y - X @ beta
    se = float(np.sqrt(resid @ resid / df * xtx_inv[col, col]))
    t = beta[col] / se
    return float(beta[col]), se, float(2 * stats.t.sf(abs(t), df)), df


def _mixed_test(table: pd.DataFrame, outcomes: pd.DataFrame, term: str, alpha: float):
    from alliancetrack.models.outcome import outcome_model  # noqa: PLC0415

    if table[term].nunique() < 2:
        return np.nan, np.nan, np.nan, len(table) - 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = outcome_model(table, outcomes, predictors=[term], groups="therapist", alpha=alpha)
    row = res.coefs.set_index("term").loc[term]
    return float(row["estimate"]), float(row["se"]), float(row["p_value"]), res.df_resid


def _power_task(task) -> list[dict]:
    n, k, seed, label, kw, effect_r, term, test, alpha, n_sessions, simulation = task
    sim = simulate_cohort(n, n_sessions, effect_r=effect_r, outcome_effects={}, seed=seed,
                          **simulation)
    data = _sim_data(sim)
    pred = episode_predictors(data, detect_episodes(data, **kw))
    pred = pred.loc[pred["status"] == "analysed"]
    out = sim.outcomes.set_index("patient").loc[pred["patient"].to_numpy()]
    true_tab = pd.DataFrame({"patient": pred["patient"].to_numpy(), "status": "analysed",
                             term: out[term].to_numpy()})
    det = pred[term].to_numpy(dtype=float)
    tru = true_tab[term].to_numpy(dtype=float)
    corr = float(np.corrcoef(det, tru)[0, 1]) if np.ptp(det) > 0 and np.ptp(tru) > 0 else np.nan
    rows = []
    for counts, tab, x in (("detected", pred, det), ("true", true_tab, tru)):
        if test == "ols":
            X = np.column_stack([np.ones(len(x)), out["bdi_pre"].to_numpy(), x])
            est, se, p, df = _ols_test(out["bdi_post"].to_numpy(dtype=float), X, 2)
        else:
            est, se, p, df = _mixed_test(tab[["patient", "status", term]],
                                         sim.outcomes, term, alpha)
        t = est / se if se and np.isfinite(se) else np.nan
        rows.append({"n_patients": n, "sim": k, "counts": counts, "estimate": est, "se": se,
                     "p_value": p, "reject": bool(p < alpha) if np.isfinite(p) else False,
                     # partial r of the count with improvement (lower outcome)
                     "r": float(-t / np.sqrt(t * t + df)) if np.isfinite(t) else np.nan,
                     "mean_count": float(np.mean(x)), "count_corr": corr,
                     "n_analysed": len(x)})
    return rows


@dataclass(frozen=True)
class PowerResult:
    """Result of :func:`power_analysis`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per ``n_patients`` × ``counts`` (``"detected"``: counts from
        the detector; ``"true"``: the planted counts): ``power`` (share of
        simulations with p < alpha), ``mc_se`` (its Monte Carlo SE
        √(power(1−power)/n_sims)), ``mean_estimate``, ``mean_r`` (mean
        partial r of the count with improvement), ``mean_count_corr``
        (correlation of detected with true counts), ``n_failed`` (fits without
        a test, e.g. no repaired rupture detected; counted as non-rejections),
        ``n_sims``.
    simulations : pandas.DataFrame
        One row per simulation × counts.
    settings : dict
    """

    table: pd.DataFrame
    simulations: pd.DataFrame = field(repr=False)
    settings: dict = field(default_factory=dict, repr=False)

    def plot(self):
        """Power against N, detected vs true counts (see :func:`plot_power`)."""
        from alliancetrack.plotting.validation import plot_power  # noqa: PLC0415

        return plot_power(self.table, alpha=self.settings.get("alpha", 0.05))


def power_analysis(
    n_patients: Sequence[int] = (50, 100, 200, 400),
    effect_r: float = 0.29,
    detector="stiles-2sd",
    n_sims: int = 200,
    *,
    alpha: float = 0.05,
    term: str = "n_repaired",
    test: str = "ols",
    n_sessions: int | tuple[int, int] = (8, 16),
    seed: int = 0,
    n_jobs: int | None = 1,
    **simulation: Any,
) -> PowerResult:
    """Simulation-based power to detect an episode–outcome association.

    Each simulation draws a cohort from :func:`alliancetrack.simulate_cohort`
    in which the only effect on ``bdi_post`` is ``effect_r``: the partial
    correlation (given ``bdi_pre``) between the *true* number of repaired
    ruptures and improvement (lower ``bdi_post``), see ``effect_r`` there.
    Episodes are detected with ``detector`` and the outcome is regressed on
    baseline and the count (``term``) twice: with the detected counts and
    with the true counts of the same patients.  Power is the share of
    simulations with a two-sided p < ``alpha``; the gap between the two is
    the attenuation caused by detection error (missed, spurious and
    misclassified ruptures make the detected count a noisy proxy of the true
    one, ``mean_count_corr``).

    The test.  ``test="ols"`` (default) regresses ``bdi_post`` on
    ``bdi_pre`` and the count by OLS with a t-test (n − 3 df).  The
    simulated outcome has a therapist random intercept (SD 1.5 against a
    residual SD of 6: ICC ≈ .06) that is unrelated to the counts; ignoring it
    leaves the estimate unbiased and its SE essentially right (design effect
    1 + (m−1)·ICC_y·ICC_x ≈ 1 as the count hardly varies between
    therapists), so this has the power of :func:`alliancetrack.outcome_model`'s
    mixed model, and exact size, at 0.1 ms per fit instead of about 16 ms
    (``benchmarks/bench_validation.py``).  ``test="mixed"`` calls
    :func:`alliancetrack.outcome_model` itself (random intercept for
    therapist, REML, Wald z as reported there; the Wald z can be slightly
    liberal with few patients).

    Parameters
    ----------
    n_patients : sequence of int
        Cohort sizes.
    effect_r : float, default 0.29
        Standardized effect (partial r) of the true repaired count on
        improvement; 0 gives the null (power = type I error rate).  0.29 is
        Eubanks, Muran & Safran's (2018) meta-analytic r for rupture repair
        and outcome.
    detector : str, DipRecoveryRule or dict
        A preset name, ``"changepoint"``, a rule, or a dict of
        :func:`detect_episodes` arguments.
    n_sims : int, default 200
        Simulations per cohort size (Monte Carlo SE of a power of .8: .028).
    alpha : float, default 0.05
    term : {"n_repaired", "n_unrepaired"}
        The count tested.
    test : {"ols", "mixed"}
    n_sessions : int or (int, int)
    seed : int
        Per-simulation seeds are spawned from it (``SeedSequence.spawn``);
        results do not depend on ``n_jobs``.
    n_jobs : int, default 1
        Processes (-1: all cores).
    **simulation
        Further arguments of :func:`simulate_cohort` (``rupture_rate``,
        ``noise_sd``, ``depth``, ``n_therapists``, ...).

    Returns
    -------
    PowerResult
        ``.table``, ``.simulations``, ``.plot()``.

    Examples
    --------
    >>> import alliancetrack as at
    >>> res = at.power_analysis([60], effect_r=0.5, n_sims=4, seed=1)
    >>> res.table[["n_patients", "counts", "n_sims"]]
       n_patients    counts  n_sims
    0          60  detected       4
    1          60      true       4
    >>> bool(res.table["power"].between(0, 1).all())
    True
    """
    if test not in ("ols", "mixed"):
        raise ValueError(f"test must be 'ols' or 'mixed', got {test!r}.")
    if term not in ("n_repaired", "n_unrepaired"):
        raise ValueError(f"term must be 'n_repaired' or 'n_unrepaired', got {term!r}.")
    if not -1 < effect_r < 1:
        raise ValueError(f"effect_r must lie in (-1, 1), got {effect_r!r}.")
    if n_sims < 1:
        raise ValueError("n_sims must be at least 1.")
    for bad in ("effect_r", "outcome_effects", "seed", "n_patients", "n_sessions"):
        if bad in simulation:
            raise TypeError(f"{bad} is set by power_analysis itself.")
    label, kw = _detector(detector)
    sizes = [int(n) for n in n_patients]
    keys = [(n, k) for n in sizes for k in range(n_sims)]
    tasks = [(n, k, s, label, kw, effect_r, term, test, alpha, n_sessions, simulation)
             for (n, k), s in zip(keys, _seeds(seed, len(keys)), strict=True)]
    sims = pd.DataFrame([row for rows in _pmap(_power_task, tasks, n_jobs) for row in rows])
    g = sims.groupby(["n_patients", "counts"], sort=False)
    table = pd.DataFrame({
        "power": g["reject"].mean(),
        "mean_estimate": g["estimate"].mean(),
        "mean_r": g["r"].mean(),
        "mean_count_corr": g["count_corr"].mean(),
        "n_failed": g["p_value"].apply(lambda p: int(p.isna().sum())),
        "n_sims": g.size(),
    }).reset_index()
    table.insert(3, "mc_se", np.sqrt(table["power"] * (1 - table["power"]) / table["n_sims"]))
    table.insert(0, "detector", label)
    settings = {"n_patients": sizes, "effect_r": effect_r, "detector": label, "n_sims": n_sims,
                "alpha": alpha, "term": term, "test": test, "n_sessions": n_sessions,
                "seed": seed, **simulation}
    return PowerResult(table=table, simulations=sims, settings=settings)


# ----------------------------------------------------------------------------- sensitivity
@dataclass(frozen=True)
class SensitivityResult:
    """Result of :func:`sensitivity_analysis`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per rupture definition: ``specification, method,
        n_analysed, n_episodes, n_repaired, n_unrepaired, term, estimate,
        se, statistic, p_value, ci_low, ci_high, r, significant, note``,
        ordered by estimate.  A definition that cannot be applied (e.g.
        ``rci`` without a scale reliability) or fitted has NaN estimates
        and the reason in ``note``.
    term : str
        The coefficient of interest.
    alpha : float
    """

    table: pd.DataFrame
    term: str
    alpha: float = 0.05

    @property
    def summary(self) -> pd.DataFrame:
        """One row: number of definitions, how many significant, sign agreement, range."""
        t = self.table.dropna(subset=["estimate"])
        sign = np.sign(t["estimate"])
        return pd.DataFrame([{
            "n_specifications": len(self.table), "n_estimated": len(t),
            "n_significant": int(t["significant"].sum()),
            "share_same_sign": float(max((sign > 0).mean(), (sign < 0).mean())) if len(t)
            else np.nan,
            "median_estimate": float(t["estimate"].median()) if len(t) else np.nan,
            "min_estimate": float(t["estimate"].min()) if len(t) else np.nan,
            "max_estimate": float(t["estimate"].max()) if len(t) else np.nan,
        }])

    def plot(self):
        """The specification curve (see :func:`plot_specification_curve`)."""
        from alliancetrack.plotting.validation import plot_specification_curve  # noqa: PLC0415

        return plot_specification_curve(self.table, term=self.term)


def sensitivity_analysis(data, outcomes: pd.DataFrame, model_spec: dict | None = None,
                         rules: Iterable | None = None) -> SensitivityResult:
    """Fit the same outcome model under every rupture definition.

    For each definition the episodes are detected, turned into per-patient
    predictors (:func:`alliancetrack.episode_predictors`) and the outcome
    model (:func:`alliancetrack.outcome_model`) is fitted; the table lists the
    estimate of ``model_spec["term"]`` under each, so a paper can report how
    much the finding depends on the definition (a specification curve,
    Simonsohn, Simmons & Nelson, 2020).

    Parameters
    ----------
    data : AllianceData or pandas.DataFrame
        The alliance ratings.
    outcomes : pandas.DataFrame
        One row per patient (outcome, baseline, therapist ...).
    model_spec : dict, optional
        Arguments of :func:`outcome_model` (``outcome``, ``baseline``,
        ``predictors``, ``groups``, ``patient``, ``covariates``, ``reml``,
        ``alpha``) plus ``term``, the coefficient of interest (default the
        first predictor).  Default: ``bdi_post ~ bdi_pre + n_repaired +
        n_unrepaired + (1 | therapist)``, term ``n_repaired``.
    rules : iterable, optional
        Rupture definitions: preset names, ``"changepoint"``,
        :class:`DipRecoveryRule` objects or dicts of :func:`detect_episodes`
        arguments with an optional ``"label"``.  Default
        :func:`rupture_definitions` (11 definitions).

    Returns
    -------
    SensitivityResult
        ``.table``, ``.summary``, ``.plot()``.

    Examples
    --------
    >>> import alliancetrack as at
    >>> sim = at.simulate_cohort(80, 12, seed=2)
    >>> data = at.read_alliance(sim.sessions, therapist="therapist", scale="wai-sr")
    >>> res = at.sensitivity_analysis(data, sim.outcomes,
    ...                               {"predictors": ["n_repaired"], "groups": None},
    ...                               rules=["stiles-2sd", "strauss-1sd", "changepoint"])
    >>> sorted(res.table["specification"])
    ['changepoint', 'stiles-2sd', 'strauss-1sd']
    >>> int(res.summary["n_specifications"].iloc[0])
    3
    """
    from alliancetrack.models.outcome import outcome_model  # noqa: PLC0415

    spec = {"outcome": "bdi_post", "baseline": "bdi_pre",
            "predictors": ["n_repaired", "n_unrepaired"], "groups": "therapist"}
    spec.update(model_spec or {})
    if isinstance(spec["predictors"], str):
        spec["predictors"] = [spec["predictors"]]
    term = spec.pop("term", None) or list(spec["predictors"])[0]
    if term not in list(spec["predictors"]) + list(spec.get("covariates", ())):
        raise AllianceDataError(f"term {term!r} is not among the predictors {spec['predictors']}.")
    alpha = spec.get("alpha", 0.05)
    if not isinstance(data, AllianceData):
        therapist = spec.get("groups") if isinstance(data, pd.DataFrame) and \
            spec.get("groups") in data else None
        data = as_alliance_data(data) if therapist is None else \
            read_alliance(data, therapist=therapist)
    detectors = _detectors(rupture_definitions() if rules is None else rules)
    nan_coef = pd.Series(np.nan, index=["estimate", "se", "statistic", "p_value", "ci_low",
                                        "ci_high"])
    rows = []
    for label, kw in detectors:
        coef, r, n_an, note = nan_coef, np.nan, np.nan, ""
        try:
            ep = detect_episodes(data, **kw)
        except (AllianceDataError, ValueError) as err:
            ep, note = None, f"not detected: {err}"
        if ep is not None:
            pred = episode_predictors(data, ep)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    res = outcome_model(pred, outcomes, **spec)
                    coef = res.coefs.set_index("term").loc[term]
                    r, n_an = res.effect_size(term)["r"], res.n
                    note = "; ".join(res.notes)
                except (AllianceDataError, np.linalg.LinAlgError, ValueError) as err:
                    note = f"not fitted: {err}"
        rows.append({
            "specification": label, "method": kw.get("method", "rules"), "n_analysed": n_an,
            "n_episodes": np.nan if ep is None else len(ep),
            "n_repaired": np.nan if ep is None else int(ep["repaired"].sum()),
            "n_unrepaired": np.nan if ep is None else int(ep["repaired"].eq(False).sum()),
            "term": term,
            **{c: float(coef[c]) for c in nan_coef.index},
            "r": r, "significant": bool(coef["p_value"] < alpha)
            if np.isfinite(coef["p_value"]) else False,
            "note": note,
        })
    table = pd.DataFrame(rows).sort_values("estimate", kind="stable", na_position="last")
    return SensitivityResult(table=table.reset_index(drop=True), term=term, alpha=alpha)
