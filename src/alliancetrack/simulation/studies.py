"""Validation with known truth: detector accuracy, power, robustness to the rupture definition.

No one knows where the true ruptures are in real data, so detectors are
validated on cohorts from :func:`alliancetrack.simulate_cohort`, whose
planted episodes are known.

* :func:`evaluate_detection` scores a detected episode table against the
  truth: precision, recall and F1 of rupture onsets (one-to-one matching within
  ``tolerance`` sessions, by :func:`alliancetrack.compare_episodes`), timing
  error, depth bias and how well repaired and unrepaired episodes are told
  apart.
* :func:`validation_study` runs every rule preset and the change-point method
  over a grid of noise SD and dip depth (signal-to-noise = depth / noise SD).
* :func:`power_analysis` estimates, by simulation, the power to detect an
  association between the number of repaired ruptures and outcome when the
  ruptures are *detected* (with error) rather than known, next to the power
  with the true counts: the gap is the attenuation caused by detection error.
* :func:`sensitivity_analysis` fits the same outcome model under many rupture
  definitions and tabulates the estimate of interest (a specification curve).

Simulations run in parallel over processes with ``n_jobs``.  Each simulated
cohort gets its own seed from ``numpy.random.SeedSequence(seed).spawn``, so
results depend on ``seed`` only, never on ``n_jobs``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from alliancetrack.agreement.compare import compare_episodes
from alliancetrack.detection.detect import detect_episodes
from alliancetrack.detection.rules import PRESETS, DipRecoveryRule
from alliancetrack.errors import AllianceDataError
from alliancetrack.predictors import episode_predictors
from alliancetrack.reading.alliance import AllianceData, as_alliance_data, read_alliance
from alliancetrack.simulation.cohort import SCENARIOS, simulate_cohort

__all__ = [
    "EVALUATION_COLUMNS",
    "PowerResult",
    "SensitivityResult",
    "ValidationResult",
    "evaluate_detection",
    "power_analysis",
    "rupture_definitions",
    "sensitivity_analysis",
    "validation_study",
]

#: Columns of :func:`evaluate_detection`.
EVALUATION_COLUMNS: list[str] = [
    "n_detected", "n_true", "n_matched", "precision", "recall", "f1",
    "timing_error", "timing_abs_error", "depth_bias", "depth_abs_error",
    "repaired_accuracy", "repaired_kappa", "patient_kappa", "tolerance",
]


# ----------------------------------------------------------------------------- evaluation
def evaluate_detection(detected: pd.DataFrame, truth: pd.DataFrame, tolerance: float = 1,
                       patients=None) -> pd.DataFrame:
    """Score detected episodes against the true episodes.

    Rupture sessions are matched one-to-one within ``tolerance`` sessions by
    :func:`alliancetrack.compare_episodes` (``truth`` is the reference).

    * ``precision`` = matched / detected, ``recall`` = matched / true,
      ``f1`` = 2·matched / (detected + true).
    * ``timing_error``: mean of detected − true rupture session over matched
      pairs (negative: detected too early); ``timing_abs_error``: mean
      absolute difference.
    * ``depth_bias``: mean of detected − true depth over matched pairs with a
      depth in both tables (``depth_abs_error``: mean absolute difference).
      A simulated episode's depth is measured from the noiseless level; a
      detector measures it from noisy scores, so noise alone makes detected
      dips look deeper (the deepest-looking dips are the ones found).
    * ``repaired_accuracy``: share of matched pairs with the same repair
      status; ``repaired_kappa``: Cohen's kappa on it.
    * ``patient_kappa``: kappa on "the patient has a rupture" (over
      ``patients``; see :func:`alliancetrack.compare_episodes`).

    Parameters
    ----------
    detected : pandas.DataFrame
        Episode tables (at least ``patient, rupture_session``; ``repaired`` or
        ``repair_session`` and ``depth`` for the repair and depth metrics).
    truth : pandas.DataFrame
        Episode tables (at least ``patient, rupture_session``; ``repaired`` or
        ``repair_session`` and ``depth`` for the repair and depth metrics).
    tolerance : float, default 1
        Largest difference in rupture session for a match.
    patients : AllianceData or sequence, optional
        Patients to evaluate over (default: those in either table).

    Returns
    -------
    pandas.DataFrame
        One row, columns :data:`EVALUATION_COLUMNS`.  Metrics without pairs
        to average over are NaN.

    Examples
    --------
    >>> import pandas as pd
    >>> truth = pd.DataFrame({"patient": [1, 1, 2], "rupture_session": [4, 9, 5],
    ...                       "repaired": [True, False, True], "depth": [1.0, 1.2, 0.8]})
    >>> found = pd.DataFrame({"patient": [1, 2, 3], "rupture_session": [5, 5, 6],
    ...                       "repaired": [True, False, True], "depth": [1.3, 0.9, 1.0]})
    >>> ev = evaluate_detection(found, truth)
    >>> ev[["n_matched", "precision", "recall", "f1", "timing_error", "depth_bias",
    ...     "repaired_accuracy"]].round(3)
       n_matched  precision  recall     f1  timing_error  depth_bias  repaired_accuracy
    0          2      0.667   0.667  0.667           0.5         0.2                0.5
    """
    cmp = compare_episodes(detected, truth, tolerance=tolerance, patients=patients)
    o = cmp.overall.iloc[0]
    m = cmp.matches
    timing = (m["rupture_session_a"] - m["rupture_session_b"]).astype(float)
    depth = (m["depth_a"] - m["depth_b"]).astype(float).dropna()
    both = m.dropna(subset=["repaired_a", "repaired_b"])
    agree = both["repaired_a"].astype(bool).to_numpy() == both["repaired_b"].astype(bool).to_numpy()

    def mean(x) -> float:
        return float(np.mean(x)) if len(x) else np.nan

    return pd.DataFrame([{
        "n_detected": int(o["n_episodes_a"]), "n_true": int(o["n_episodes_b"]),
        "n_matched": int(o["n_matched"]), "precision": o["precision"], "recall": o["recall"],
        "f1": o["f1"], "timing_error": mean(timing), "timing_abs_error": mean(timing.abs()),
        "depth_bias": mean(depth), "depth_abs_error": mean(depth.abs()),
        "repaired_accuracy": mean(agree), "repaired_kappa": o["repaired_kappa"],
        "patient_kappa": o["kappa"], "tolerance": tolerance,
    }], columns=EVALUATION_COLUMNS)


# ----------------------------------------------------------------------------- detectors
def _detector(spec) -> tuple[str, dict]:
    """``(label, detect_episodes keyword arguments)`` for a detector specification.

    A preset name, ``"changepoint"``, a :class:`DipRecoveryRule`, or a dict of
    :func:`detect_episodes` arguments with an optional ``"label"``.
    """
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key in ("changepoint", "hmm"):
            return key, {"method": key}
        if key not in PRESETS:
            raise ValueError(f"Unknown detector {spec!r}; use a preset ({', '.join(PRESETS)}), "
                             "'changepoint', 'hmm', a DipRecoveryRule or a dict of detect_episodes "
                             "arguments.")
        return key, {"method": "rules", "rule": key}
    if isinstance(spec, DipRecoveryRule):
        return spec.name, {"method": "rules", "rule": spec}
    if isinstance(spec, dict):
        kw = dict(spec)
        label = kw.pop("label", None)
        kw.setdefault("method", "rules")
        if label is None:
            base = kw.get("rule", "stiles-2sd") if kw["method"] == "rules" else kw["method"]
            base = base.name if isinstance(base, DipRecoveryRule) else str(base)
            extra = ", ".join(f"{k}={v}" for k, v in kw.items() if k not in ("method", "rule"))
            label = f"{base} ({extra})" if extra else base
        return str(label), kw
    raise TypeError(f"A detector is a preset name, 'changepoint', a DipRecoveryRule or a dict, "
                    f"not {type(spec).__name__}.")


def _detectors(specs) -> list[tuple[str, dict]]:
    out = [_detector(s) for s in ([specs] if isinstance(specs, (str, dict, DipRecoveryRule))
                                  else specs)]
    labels = [lab for lab, _ in out]
    dup = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dup:
        raise ValueError(f"Detector labels must be unique; repeated: {dup} (give a 'label').")
    return out


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


# ----------------------------------------------------------------------------- parallel map
def _seeds(seed: int | None, k: int) -> list[int]:
    """``k`` independent integer seeds from ``SeedSequence(seed).spawn(k)``."""
    return [int(s.generate_state(1, dtype=np.uint64)[0])
            for s in np.random.SeedSequence(seed).spawn(k)]


def _pmap(func: Callable, tasks: list, n_jobs: int | None) -> list:
    """``[func(t) for t in tasks]``, over ``n_jobs`` processes (-1: all cores), in order."""
    workers = 1 if n_jobs is None else (os.cpu_count() or 1) if n_jobs == -1 else int(n_jobs)
    if workers < 1:
        raise ValueError(f"n_jobs must be a positive number or -1, got {n_jobs!r}.")
    workers = min(workers, len(tasks))
    if workers <= 1:
        return [func(t) for t in tasks]
    with ProcessPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(func, tasks, chunksize=max(1, len(tasks) // (4 * workers))))


def _sim_data(sim) -> AllianceData:
    return read_alliance(sim.sessions, therapist="therapist", scale=sim.scale)


# ----------------------------------------------------------------------------- validation study
@dataclass(frozen=True)
class ValidationResult:
    """Result of :func:`validation_study`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per noise SD × depth × method: ``noise_sd, depth, snr,
        method`` and the mean over replications of the
        :data:`EVALUATION_COLUMNS` metrics.
    replicates : pandas.DataFrame
        One row per replication (column ``rep``).
    settings : dict
        The arguments of the study.
    """

    table: pd.DataFrame
    replicates: pd.DataFrame = field(repr=False)
    settings: dict = field(default_factory=dict, repr=False)

    def plot(self, metric: str = "f1"):
        """``metric`` against signal-to-noise by method (see :func:`plot_validation`)."""
        from alliancetrack.plotting.validation import plot_validation  # noqa: PLC0415

        return plot_validation(self.table, metric=metric)


def _validation_task(task) -> list[dict]:
    scen, noise, depth, rep, seed, detectors, n_patients, n_sessions, tolerance, simulation = task
    settings = {**SCENARIOS[scen], **simulation} if scen is not None else simulation
    sim = simulate_cohort(n_patients, n_sessions, noise_sd=noise, depth=depth, seed=seed,
                          **settings)
    data = _sim_data(sim)
    rows = []
    for label, kw in detectors:
        ev = evaluate_detection(detect_episodes(data, **kw), sim.truth, tolerance=tolerance,
                                patients=data).iloc[0].to_dict()
        scen_col = {} if scen is None else {"scenario": scen}
        rows.append({**scen_col, "noise_sd": noise, "depth": depth, "snr": depth / noise,
                     "method": label, "rep": rep, **ev})
    return rows


def validation_study(
    noise_sd: Sequence[float] = (0.1, 0.2, 0.3, 0.45),
    depth: Sequence[float] = (0.5, 1.0, 1.5),
    methods: Iterable | None = None,
    *,
    n_patients: int = 200,
    n_sessions: int | tuple[int, int] = (8, 16),
    n_reps: int = 1,
    tolerance: float = 1,
    seed: int = 0,
    n_jobs: int | None = 1,
    scenarios: Sequence[str] | None = None,
    **simulation: Any,
) -> ValidationResult:
    """Detection accuracy of every method over a grid of noise SD and dip depth.

    For every ``noise_sd`` × ``depth`` (dips of exactly that depth, in scale
    points) and replication a cohort is simulated with
    :func:`alliancetrack.simulate_cohort` (other settings at its defaults
    unless given in ``simulation``) and every method's episodes are scored
    with :func:`evaluate_detection`.  ``snr = depth / noise_sd``.

    Parameters
    ----------
    noise_sd : sequence of float
        The grid (scale points).
    depth : sequence of float
        The grid (scale points).
    methods : iterable, optional
        Detectors: preset names, ``"changepoint"``, :class:`DipRecoveryRule`
        objects or dicts of :func:`detect_episodes` arguments (with an
        optional ``"label"``).  Default: every preset and ``"changepoint"``.
    n_patients : int, default 200
        Patients per simulated cohort.
    n_sessions : int or (int, int)
    n_reps : int, default 1
        Cohorts per grid cell.
    tolerance : float, default 1
        Matching tolerance (sessions).
    seed : int
        Seeds of the cohorts are spawned from it; results do not depend on
        ``n_jobs``.
    n_jobs : int, default 1
        Processes (-1: all cores).
    scenarios : sequence of str, optional
        Names from :data:`alliancetrack.SCENARIOS` (``"clean"``,
        ``"ceiling"``, ``"heavy-tails"``, ``"gradual"``,
        ``"partial-repair"``, ``"rough"``): the grid is run under each, and
        the tables get a first column ``scenario``.  Settings in
        ``simulation`` override the scenario's.
    **simulation
        Further arguments of :func:`simulate_cohort` (``rupture_rate``,
        ``duration``, ``missing_rate``, ...).

    Returns
    -------
    ValidationResult
        ``.table`` (mean over replications), ``.replicates``, ``.plot()``.

    Examples
    --------
    >>> import alliancetrack as at
    >>> res = at.validation_study(noise_sd=[0.1, 0.4], depth=[1.0], n_patients=40,
    ...                           methods=["strauss-1sd", "changepoint"], seed=1)
    >>> res.table[["noise_sd", "snr", "method"]]
       noise_sd   snr       method
    0       0.1  10.0  strauss-1sd
    1       0.1  10.0  changepoint
    2       0.4   2.5  strauss-1sd
    3       0.4   2.5  changepoint
    >>> bool(res.table["f1"].between(0, 1).all())
    True
    """
    detectors = _detectors([*PRESETS, "changepoint"] if methods is None else methods)
    for bad in ("noise_sd", "depth", "seed", "n_patients", "n_sessions"):
        if bad in simulation:
            raise TypeError(f"{bad} is an argument of validation_study itself.")
    if min(noise_sd) <= 0:
        raise ValueError("noise_sd values must be positive (signal-to-noise = depth / noise_sd).")
    if isinstance(scenarios, str):
        scenarios = [scenarios]
    unknown = [s for s in scenarios or () if s not in SCENARIOS]
    if unknown:
        raise ValueError(f"Unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}.")
    scen_list = [None] if scenarios is None else list(scenarios)
    cells = [(c, float(s), float(d), r) for c in scen_list for s in noise_sd for d in depth
             for r in range(n_reps)]
    seeds = _seeds(seed, len(cells))
    tasks = [(c, s, d, r, sd, detectors, n_patients, n_sessions, tolerance, simulation)
             for (c, s, d, r), sd in zip(cells, seeds, strict=True)]
    reps = pd.DataFrame([row for rows in _pmap(_validation_task, tasks, n_jobs) for row in rows])
    order = {lab: i for i, (lab, _) in enumerate(detectors)}
    scen_order = {c: i for i, c in enumerate(scen_list)}
    metrics = [c for c in EVALUATION_COLUMNS if c != "tolerance"]
    keys = ([] if scenarios is None else ["scenario"]) + ["noise_sd", "depth", "snr", "method"]
    table = reps.groupby(keys, sort=False)[metrics].mean().reset_index()
    table["tolerance"] = tolerance
    table = table.sort_values([k for k in keys if k != "snr"],
                              key=lambda c: c.map(order) if c.name == "method" else
                              c.map(scen_order) if c.name == "scenario" else c,
                              kind="stable").reset_index(drop=True)
    settings = {"noise_sd": list(noise_sd), "depth": list(depth),
                "methods": [lab for lab, _ in detectors], "n_patients": n_patients,
                "n_sessions": n_sessions, "n_reps": n_reps, "tolerance": tolerance,
                "seed": seed, "scenarios": scenarios, **simulation}
    return ValidationResult(table=table, replicates=reps, settings=settings)


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
