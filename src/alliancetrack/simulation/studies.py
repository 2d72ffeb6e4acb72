"""Validation with known truth: how accurately each detector finds planted episodes.

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

Power under detection error and specification curves over rupture
definitions are in :mod:`alliancetrack.simulation.outcome_studies`, which
shares this module's seeding and parallel map.

Simulations run in parallel over processes with ``n_jobs``.  Each simulated
cohort gets its own seed from ``numpy.random.SeedSequence(seed).spawn``, so
results depend on ``seed`` only, never on ``n_jobs``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from alliancetrack.agreement.compare import compare_episodes
from alliancetrack.detection.detect import detect_episodes
from alliancetrack.detection.rules import PRESETS, DipRecoveryRule
from alliancetrack.reading.alliance import AllianceData, read_alliance
from alliancetrack.simulation.cohort import SCENARIOS, simulate_cohort

__all__ = [
    "EVALUATION_COLUMNS",
    "ValidationResult",
    "evaluate_detection",
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
