"""Model-based rupture detection: a cohort hidden Markov model with rupture probabilities.

:class:`HMMDetector` fits a hidden Markov model (stable, ruptured — repaired
or persisting — and partially repaired states, above a stable level that may
bend) to the whole cohort at once (the model: :mod:`alliancetrack.detection.hmm_model`
and :mod:`alliancetrack.detection.hmm_trend`; the fit:
:mod:`alliancetrack.detection.hmm_fit`; the averaging over explanations:
:mod:`alliancetrack.detection.hmm_paths`) and gives

* episodes in the common episode table: the sessions whose posterior
  probability of a rupture is at least 0.5 (the most probable state of each
  session; ``decode="viterbi"``: the most probable state path), the rupture
  session is the entry into a rupture, the repair session the first rated
  session back out of it, and an episode still ruptured at the last rated
  session is unrepaired and censored; ``probability`` is the posterior
  probability that the rupture session lies in a rupture;
* per-session posterior probabilities of a rupture
  (:func:`rupture_probabilities`).

Levels stay in scale units.  For scales where lower is better
(``data.higher_is_better`` False) the ratings are mirrored before fitting, so a
rupture is a *rise*; ``pre_level`` and ``nadir_level`` are reported on the
original scale and ``depth`` is positive.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from alliancetrack.detection.base import (
    Check,
    Detector,
    flag,
    number,
    one_of,
    positive,
    register_detector,
    whole,
)
from alliancetrack.detection.episodes import finalize_episodes
from alliancetrack.detection.hmm_fit import FitResult, fit_hmm
from alliancetrack.detection.hmm_model import (
    Cohort,
    count_distribution,
    forward_backward,
    hmm_log_emissions,
    onset_probabilities,
    viterbi,
)
from alliancetrack.detection.hmm_paths import (
    NO_BENDING,
    TEMPERATURE,
    Bending,
    average_paths,
    fit_bending,
)
from alliancetrack.errors import AllianceDataError
from alliancetrack.reading.alliance import AllianceData, as_alliance_data

__all__ = ["HMMDetector", "HMMFit", "counts_from_fit", "episodes_from_fit", "expected_ruptures",
           "probabilities_from_fit", "rupture_probabilities"]


#: Patients on which :class:`HMMDetector` estimates the bending regime (drawn from ``seed``).
BEND_SAMPLE = 2000


@dataclass(frozen=True)
class HMMFit:
    """A fitted cohort HMM (from :meth:`HMMDetector.fit`).

    Attributes
    ----------
    detector : HMMDetector
    patients : ndarray
        Patient ids, one per row of the arrays.
    frame : DataFrame
        The analysed sessions (``patient, session, alliance``), in row order
        of the arrays (patient blocks, sessions in order).
    best : FitResult
        Parameters, log-likelihood, iterations and convergence of the best start.
    runs : DataFrame
        One row per EM run: ``start, n_patients, loglik, n_iter, converged``
        (with more than ``subsample`` patients, the starts on the subsample
        and then the whole-cohort fit; with ``patient_dips`` there is always
        that final fit, the shared parameters fixed).
    posterior : ndarray (N, T)
        Posterior probability of the ruptured state at every chain step
        (NaN where no rating).
    path : ndarray (N, T), bool
        Decoded path (``decode``): True in a rupture.
    stable_mean : ndarray (N, T)
        Fitted stable-state mean (mirrored scale).
    onset : ndarray (N, T)
        Posterior probability that a rupture starts at each chain step.
    count_probs : ndarray (N, C + 1)
        Posterior distribution of each patient's number of ruptures (the last
        column: that many or more).
    sign : float
        1, or -1 where the scale was mirrored.
    excluded : DataFrame
        Patients not analysed, with the reason.
    bending : Bending
        The estimated bending regime of the averaging (share 0: none).
    """

    detector: HMMDetector
    patients: np.ndarray
    frame: pd.DataFrame
    best: FitResult
    runs: pd.DataFrame
    posterior: np.ndarray
    path: np.ndarray
    stable_mean: np.ndarray
    onset: np.ndarray
    count_probs: np.ndarray
    sign: float
    excluded: pd.DataFrame
    bending: Bending = NO_BENDING

    def summary(self) -> dict:
        """The shared parameters and convergence, as plain numbers."""
        p = self.best.params
        p_rupture = float(p.trans[0, p.ruptured].sum())
        first_step = np.flatnonzero(p.decline_steps > 0)
        p_decline = float(p.trans[0, first_step[0]]) if len(first_step) else np.nan
        return {"p_rupture": p_rupture, "p_repair": float(p.trans[1, 0]),
                "share_unrepaired": float(p.trans[0, 2] / p_rupture) if p_rupture > 0 else np.nan,
                "p_start_ruptured": float(p.start[p.ruptured].sum()), "dip": float(p.dip),
                "partial_share": p.rho, "p_decline": p_decline,
                "decline_depth": float(p.decline_depth * p.dip), "dip_sd": float(p.dip_sd),
                "dip_factor_sd": float(np.sqrt(p.dip_factor_var)) if p.patient_dips else np.nan,
                "dip_unit": p.dip_unit, "df": float(p.df), "prior_df": float(p.prior_df),
                "median_sigma": float(np.median(p.sigma)),
                "trend_sd": float(np.sqrt(p.trend["q2"])),
                "bend_df": float(p.trend["bend_df"] or np.inf),
                "bending_share": float(self.bending.share),
                "bending_sd": float(np.sqrt(self.bending.q2)), "loglik": float(self.best.loglik),
                "n_iter": int(self.best.n_iter), "converged": bool(self.best.converged),
                "n_patients": int(len(self.patients))}


def _pack(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Patient blocks of a sorted long frame as (ids, rows, X, S) arrays (all rows kept)."""
    codes, ids = pd.factorize(frame["patient"], sort=False)
    first = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    lengths = np.diff(np.r_[first, len(codes)])
    pos = np.arange(len(codes)) - np.repeat(first, lengths)
    width = int(lengths.max())
    X = np.full((len(ids), width), np.nan)
    S = np.full((len(ids), width), np.nan)
    X[codes, pos] = frame["alliance"].to_numpy(dtype="float64")
    S[codes, pos] = frame["session"].to_numpy(dtype="float64")
    return np.asarray(ids), np.c_[codes, pos], X, S


@register_detector
@dataclass(frozen=True)
class HMMDetector(Detector):
    """Cohort hidden Markov model of ruptures (stable, ruptured, partially repaired).

    Parameters
    ----------
    df : float, optional
        Degrees of freedom of the Student-t emissions (smaller: more robust
        to outlying sessions; large values approach a normal model).  None
        (the default): estimated from the cohort (ECM, Liu & Rubin 1995),
        between 2 and 200.
    dip_unit : {"scale", "noise"}, default "scale"
        The shared dip is in scale points, or in units of each patient's
        noise scale.
    n_starts : int, default 3
        EM starts (the first from fixed robust values, the others drawn from
        ``seed``); the start with the highest log-likelihood is kept.
    max_iter : int, default 200
    tol : float, default 0.01
        Convergence: fewer than 0.1% of the rated sessions changed their
        posterior rupture probability by more than ``tol`` in the last EM
        iteration (checked after the level searches of the first 30
        iterations).
    prior_df : float, optional
        Weight (in pseudo-sessions) of the cohort prior on each patient's
        noise variance.  None (the default): estimated with the prior's
        centre from the patients' residual sums of squares (empirical
        Bayes, Smyth 2004), so patients are shrunk toward the cohort as
        strongly as their noise levels agree.
    partial : bool, default True
        Add a partially repaired state (a shared fraction of the dip below
        the stable level, not counted as a rupture).
    dip_spread : bool, default False
        Let dips vary between episodes: rupture-state emissions get the
        extra variance ``dip_sd²`` (estimated).  It makes the intermediate
        probabilities better calibrated (ruptures shallower than the shared
        dip otherwise get too low a probability) at the same mean F1, but
        with ``subsample`` smaller than the cohort a warm start can land in a
        poor optimum, so it is off by default (docs/hmm.md, calibration).
    drift : bool, default True
        The stable level follows a local linear trend that may bend (its
        bending variance is estimated from the cohort), so slow declines
        and growth that levels off are followed by the level, not read as
        ruptures; False: one straight line per patient (level and slope
        shrunk toward the cohort).
    decline : bool, default True
        Add the states of a gradual decline, which is not a rupture: the
        level steps down over a few sessions (through a quarter, half and
        three quarters of a shared decline depth, at a shared pace) and stays
        down (:data:`alliancetrack.detection.hmm_model.DECLINE_STEPS`).  A
        rupture drops at once, so a drop that builds up over three or more
        sessions is read as a decline.  Without these states a slow decline
        that lasts to the end of treatment can only be read as an unrepaired
        rupture or a bend of the stable level, and where slow declines are
        common the middle of the probability scale was over-confident
        (docs/hmm.md, Calibration).  False: the plain chain (about twice as
        fast).  ``summary()`` reports ``p_decline`` (the per-session
        probability that a decline starts) and ``decline_depth``.
    patient_dips : bool, default True
        Let each patient's ruptures (and declines) have their own depth: the
        patient's dip is the cohort's times a factor drawn from
        ``N(1, s²)``, estimated with shrinkage toward 1 (a random effect;
        ``s`` from the cohort by EM), and a final fit with the shared
        parameters fixed that starts with a search over a grid of factors,
        so that a drop is not kept in the reading EM started from
        (:mod:`alliancetrack.detection.hmm_depth`).  Without it a rupture
        shallower than the cohort's dip that lasts to the end of treatment
        competes with a stable level that steps down (or, with ``decline``,
        with a decline of the shared decline depth): such sessions got
        probabilities of 0.6-0.7 where nearly all of them are ruptures, and
        in long series some of these ruptures were missed.  False: one dip
        for the cohort.  ``summary()`` reports ``dip_factor_sd`` (``s``).
    average_paths : bool, default True
        Average the rupture probabilities over alternative explanations of
        each patient (the fitted one, one whose stable level follows the
        ratings, one that is flat high in them), weighted by their penalised
        likelihood, so that a patient whom "a slow decline" and "a rupture"
        explain about equally well gets an intermediate probability
        (:func:`alliancetrack.detection.hmm_paths.average_paths`).
    temperature : float, default 2.5
        With ``average_paths``: each explanation's weight is raised to the
        power ``1 / temperature`` before the averaging
        (:func:`alliancetrack.detection.hmm_paths.temper`), which flattens
        the weights where explanations compete and leaves clear cases alone.
        The penalised likelihood at each explanation's optimum is too
        decisive on its own (1 gives the untempered weights: the middle of
        the probability scale over-confident where slow declines are
        common).  2.5 had the lowest Brier score on tuning cohorts simulated
        apart from those of the validation (docs/hmm.md, Calibration): it is
        a calibration to the simulator's scenarios, not a property of the
        model (with ``decline=False, patient_dips=False`` it was 3).
    bending : bool, default False
        With ``average_paths`` and ``drift``: let a share of patients follow
        a regime in which the stable level bends more (a slow decline), the
        share and its bending variance estimated by EM over the explanations
        (on at most 2,000 patients drawn from ``seed``), the explanations
        weighted by marginal (Laplace) likelihood
        (:func:`alliancetrack.detection.hmm_paths.fit_bending`); where the
        share falls below 0.005 the averaging is the plain one
        (``HMMFit.bending``).  It helps where slow declines are common
        (fewer declines read as ruptures; lower Brier score) but can find a
        small spurious share in long series without declines, and it about
        doubles the time of the averaging, so it is off by default
        (docs/hmm.md, calibration).
    decode : {"posterior", "viterbi"}, default "posterior"
        Episodes from the sessions whose rupture probability is at least 0.5,
        or from the most probable state path (Viterbi) of the most weighted
        explanation.  The Viterbi path splits a rupture's probability between
        the two rupture states and can miss a rupture that is more probable
        than not.
    subsample : int, default 5000
        In larger cohorts the ``n_starts`` starts are run on this many
        randomly drawn patients, which estimate the shared parameters, and
        the whole cohort is then fitted once with the best start's shared
        parameters held fixed, only the patients' own parameters moving
        (for speed; see ``HMMFit.runs``).
    seed : int, default 0
    min_patients : int, default 10
        Fewer analysed patients is an error (use the rules or change points).
    n_jobs : int, default 1
        Threads for the starts and for the averaging over explanations
        (-1: all cores).  The results do not depend on it.

    Notes
    -----
    Hidden Markov models: Rabiner (1989); t emissions by EM: Liu & Rubin
    (1995); the stable level as a local linear trend (a cubic smoothing
    spline in state-space form): Wecker & Ansley (1983), fitted by EM as in
    Shumway & Stoffer (1982); the noise prior: Smyth (2004).  Ruptures as a
    drop and recovery of the alliance: Safran & Muran (2000); Eubanks, Muran
    & Safran (2018).

    Examples
    --------
    >>> import alliancetrack as at
    >>> from alliancetrack.detection.hmm import HMMDetector
    >>> sim = at.simulate_cohort(80, 12, seed=3)
    >>> det = HMMDetector(n_starts=2)
    >>> det.label
    'hmm[n_starts=2]'
    >>> ep = det.detect(sim.sessions)
    >>> bool(ep["probability"].between(0, 1).all()), ep["method"].iloc[0]
    (True, 'hmm[n_starts=2]')
    """

    method: ClassVar[str] = "hmm"
    checks: ClassVar[dict[str, Check]] = {
        "df": positive(optional=True), "dip_unit": one_of("scale", "noise"),
        "n_starts": whole(1), "max_iter": whole(1), "tol": positive(),
        "prior_df": number(optional=True), "partial": flag(), "dip_spread": flag(),
        "drift": flag(), "decline": flag(), "patient_dips": flag(), "average_paths": flag(),
        "bending": flag(),
        "temperature": positive(), "decode": one_of("posterior", "viterbi"),
        "subsample": whole(2), "seed": whole(0), "min_patients": whole(2),
        "n_jobs": number(),
    }
    df: float | None = None
    dip_unit: str = "scale"
    n_starts: int = 3
    max_iter: int = 200
    tol: float = 0.01
    prior_df: float | None = None
    partial: bool = True
    dip_spread: bool = False
    drift: bool = True
    decline: bool = True
    patient_dips: bool = True
    average_paths: bool = True
    temperature: float = 2.5  # hmm_paths.TEMPERATURE (a test keeps the two equal)
    bending: bool = False
    decode: str = "posterior"
    subsample: int = 5000
    seed: int = 0
    min_patients: int = 10
    n_jobs: int = field(default=1, compare=False)

    def _check_combination(self) -> None:
        if self.prior_df is not None and self.prior_df < 0:
            raise ValueError(f"prior_df must be non-negative, got {self.prior_df!r}.")
        if self.subsample < self.min_patients:
            raise ValueError("subsample must be at least min_patients.")
        if not self.average_paths and self.temperature != TEMPERATURE:
            raise ValueError("temperature tempers the averaging over explanations; with "
                             "average_paths=False there is none (leave temperature at its "
                             "default or set average_paths=True).")

    # ------------------------------------------------------------------ fitting
    def fit(self, data) -> HMMFit:
        """Fit the model to a cohort (AllianceData or long DataFrame)."""
        data = as_alliance_data(data)
        if len(data.raters) > 1:
            raise AllianceDataError(
                f"The data hold ratings from several raters {data.raters}; fit one "
                "perspective at a time (data.select_rater('patient')).")
        frame = data.analysed_frame[["patient", "session", "alliance"]]
        n_pat = frame.loc[frame["alliance"].notna(), "patient"].nunique()
        if n_pat < self.min_patients:
            raise AllianceDataError(
                f"The hidden Markov model is fitted to the whole cohort and needs at least "
                f"{self.min_patients} analysed patients; these data have {n_pat}. For a "
                "single patient or a small sample use method='changepoint' or "
                "method='rules'.")
        if n_pat < 30:
            warnings.warn(
                f"Only {n_pat} patients: the shared rupture and repair probabilities and the "
                "dip are poorly determined; compare with method='changepoint'.",
                UserWarning, stacklevel=3)
        ids, rows, X, S = _pack(frame)
        sign = 1.0 if data.higher_is_better else -1.0
        scale = data.scale
        bounds = None
        if scale is not None:
            bounds = (scale.low, scale.high) if sign > 0 else (-scale.high, -scale.low)
        Xm = sign * X
        best, runs = fit_hmm(Xm, S, bounds, df=self.df, dip_unit=self.dip_unit,
                             n_starts=int(self.n_starts), max_iter=int(self.max_iter),
                             tol=self.tol, prior_df=self.prior_df, partial=self.partial,
                             dip_spread=self.dip_spread,
                             drift=self.drift, decline=self.decline,
                             patient_dips=self.patient_dips,
                             subsample=int(self.subsample), seed=self.seed,
                             n_jobs=self.n_jobs)
        if not best.converged:
            warnings.warn(
                f"The HMM did not converge in {self.max_iter} iterations (best of "
                f"{self.n_starts} starts); raise max_iter.", RuntimeWarning, stacklevel=3)
        p = best.params
        bend = NO_BENDING
        if self.average_paths:
            cohort = Cohort.of(Xm, S, bounds)
            if self.bending:
                rows = np.random.default_rng(self.seed).permutation(len(Xm))[:BEND_SAMPLE]
                rows = np.sort(rows)
                bend = fit_bending(cohort.rows(rows), p.rows(rows), n_jobs=self.n_jobs)
                if not bend.converged:
                    warnings.warn(
                        f"The share of the bending regime ({bend.share:.3f}) was still moving "
                        f"after {bend.rounds} EM rounds; it is used as it is (HMMFit.bending).",
                        RuntimeWarning, stacklevel=3)
            avg = average_paths(cohort, p, n_jobs=self.n_jobs, bending=bend,
                                temperature=self.temperature)
            p_rupt, onset, stable, log_e = avg.p_rupture, avg.onset, avg.base, avg.log_e
            counts = avg.counts
        else:
            log_e = hmm_log_emissions(Xm, p, bounds)
            post = forward_backward(log_e, p.start, p.trans)[0]
            p_rupt, stable = post[:, :, p.ruptured].sum(axis=2), p.base
            onset = onset_probabilities(log_e, p.start, p.trans, p.ruptured)
            counts = count_distribution(log_e, p.start, p.trans, p.ruptured,
                                        steps=np.isfinite(S))
        if self.decode == "viterbi":
            path = p.ruptured[viterbi(log_e, p.start, p.trans)]
        else:
            path = p_rupt >= 0.5
        rated = np.isfinite(X)
        runs_df = pd.DataFrame([{"start": r.start, "n_patients": r.n_patients,
                                 "loglik": r.loglik, "n_iter": r.n_iter,
                                 "converged": r.converged} for r in runs])
        return HMMFit(detector=self, patients=ids, frame=frame.reset_index(drop=True),
                      best=best, runs=runs_df, posterior=np.where(rated, p_rupt, np.nan),
                      path=path, stable_mean=stable, onset=onset, count_probs=counts,
                      sign=sign, excluded=data.excluded, bending=bend)

    # ------------------------------------------------------------------ outputs
    def detect(self, data) -> pd.DataFrame:
        """Episodes in the common episode table (with ``probability``); see the module doc."""
        data = as_alliance_data(data)
        fit = self.fit(data)
        episodes = episodes_from_fit(fit, patient_dtype=data.patients.dtype)
        episodes.attrs["hmm"] = fit.summary()
        return episodes

    def probabilities(self, data) -> pd.DataFrame:
        """Per-session posterior rupture probabilities; see :func:`rupture_probabilities`."""
        data = as_alliance_data(data)
        fit = self.fit(data)
        return probabilities_from_fit(fit, data)

    def rupture_counts(self, data) -> pd.DataFrame:
        """Per-patient posterior of the number of ruptures; see :func:`expected_ruptures`."""
        data = as_alliance_data(data)
        fit = self.fit(data)
        return counts_from_fit(fit, data)


def episodes_from_fit(fit: HMMFit, patient_dtype=None) -> pd.DataFrame:
    """Episodes from the decoded rupture path over the rated sessions (no per-patient loop)."""
    X = fit.sign * _pack(fit.frame)[2]
    rated = np.isfinite(X)
    r, c = np.nonzero(rated)  # row-major: patient blocks, sessions in order
    S = _pack(fit.frame)[3]
    state = fit.path[r, c].astype(bool)
    same_prev = np.r_[False, r[1:] == r[:-1]]
    prev_state = np.r_[False, state[:-1]] & same_prev
    entry = state & ~prev_state
    if not entry.any():
        raw = pd.DataFrame({k: [] for k in ("patient", "method", "rupture_session",
                                            "nadir_session", "nadir_level", "pre_level", "depth",
                                            "repair_session", "repaired", "censored",
                                            "probability")})
        return finalize_episodes(raw, patient_dtype=patient_dtype)
    run = np.cumsum(entry) - 1
    cells = pd.DataFrame({"run": run[state], "x": X[r, c][state], "s": S[r, c][state]})
    nadir_idx = cells.groupby("run", sort=True)["x"].idxmin().to_numpy()
    ent = np.flatnonzero(entry)
    # the repair: the first rated cell after the run (same patient) that is stable
    last_of_run = np.r_[np.flatnonzero(np.diff(run[state]) != 0), state.sum() - 1]
    last_cell = np.flatnonzero(state)[last_of_run]
    nxt = last_cell + 1
    has_next = nxt < len(r)
    nxt_c = np.minimum(nxt, len(r) - 1)
    repaired = has_next & (r[nxt_c] == r[last_cell])
    pre = fit.stable_mean[r[ent], c[ent]]
    nadir = cells["x"].to_numpy()[nadir_idx]
    raw = pd.DataFrame({
        "patient": fit.patients[r[ent]], "method": fit.detector.label,
        "rupture_session": S[r[ent], c[ent]],
        "nadir_session": cells["s"].to_numpy()[nadir_idx],
        "nadir_level": fit.sign * nadir, "pre_level": fit.sign * pre,
        "depth": pre - nadir,
        "repair_session": np.where(repaired, S[r[nxt_c], c[nxt_c]], np.nan),
        "repaired": repaired, "censored": ~repaired,
        "probability": fit.posterior[r[ent], c[ent]],
    })
    return finalize_episodes(raw, patient_dtype=patient_dtype)


def probabilities_from_fit(fit: HMMFit, data: AllianceData) -> pd.DataFrame:
    """``patient, session, p_rupture, p_onset`` for every row of ``data.frame``."""
    _, rows, _, _ = _pack(fit.frame)
    analysed = fit.frame.assign(p_rupture=fit.posterior[rows[:, 0], rows[:, 1]],
                                p_onset=fit.onset[rows[:, 0], rows[:, 1]])
    out = data.frame[["patient", "session"]].merge(
        analysed[["patient", "session", "p_rupture", "p_onset"]], on=["patient", "session"],
        how="left", sort=False)
    out.attrs["hmm"] = fit.summary()
    return out


def counts_from_fit(fit: HMMFit, data: AllianceData) -> pd.DataFrame:
    """One row per input patient: the posterior of their number of ruptures.

    The table of :func:`expected_ruptures`, from an existing fit (so that
    episodes, probabilities and counts come from one fit).

    Examples
    --------
    >>> import alliancetrack as at
    >>> from alliancetrack.detection.hmm import HMMDetector, counts_from_fit
    >>> data = at.as_alliance_data(at.simulate_cohort(60, 10, seed=2).sessions)
    >>> fit = HMMDetector(n_starts=1).fit(data)
    >>> counts = counts_from_fit(fit, data)
    >>> len(counts) == len(data.patients), bool((counts["sd_ruptures"] >= 0).all())
    (True, True)
    """
    p = fit.count_probs
    c = np.arange(p.shape[1])
    mean = p @ c
    sd = np.sqrt(np.maximum(p @ c**2 - mean**2, 0.0))
    sessions = np.nansum(fit.posterior, axis=1)  # NaN: no rating
    analysed = pd.DataFrame({"patient": fit.patients, "expected_ruptures": mean,
                             "sd_ruptures": sd, "p_any_rupture": 1.0 - p[:, 0],
                             "expected_rupture_sessions": sessions})
    out = pd.DataFrame({"patient": data.patients}).merge(analysed, on="patient", how="left",
                                                        sort=False)
    reason = out["patient"].map(
        data.excluded.drop_duplicates("patient").set_index("patient")["reason"])
    status = np.where(out["expected_ruptures"].notna(), "analysed",
                      reason.fillna("not analysed").to_numpy(dtype=object))
    out.insert(1, "status", status)
    out.attrs["hmm"] = fit.summary()
    return out


def expected_ruptures(data, method: str = "hmm", **params) -> pd.DataFrame:
    """Each patient's expected number of ruptures under the cohort HMM, with its uncertainty.

    A hard episode count treats every detected rupture as certain.  The HMM's
    posterior gives, for each patient, a probability for every number of
    ruptures (computed exactly by a forward recursion over states and counts,
    averaged over the explanations of :class:`HMMDetector`), so the count
    can enter a sensitivity analysis as a predictor that carries its
    uncertainty: its mean, its SD, and the probability of any rupture.

    Parameters
    ----------
    data : AllianceData or DataFrame
        Long ratings (``patient, session, alliance``).
    method : {"hmm"}
    **params
        Parameters of :class:`HMMDetector`.

    Returns
    -------
    pandas.DataFrame
        One row per input patient (``data.patients``): ``patient, status``
        (``"analysed"`` or the reason the patient was excluded),
        ``expected_ruptures`` and ``sd_ruptures`` (mean and SD of the
        posterior number of ruptures; a rupture is an entry into a rupture
        state, so one still going on at the end counts), ``p_any_rupture``,
        and ``expected_rupture_sessions`` (the summed per-session
        probabilities).  NaN for patients not analysed.  ``attrs["hmm"]``:
        the fitted shared parameters.  To get episodes, probabilities and
        counts from one fit, use ``fit = HMMDetector().fit(data)`` with
        :func:`episodes_from_fit`, :func:`probabilities_from_fit` and
        :func:`counts_from_fit`.

    Examples
    --------
    >>> import alliancetrack as at
    >>> sim = at.simulate_cohort(60, 10, seed=2)
    >>> er = at.expected_ruptures(sim.sessions, n_starts=1)
    >>> er.columns.tolist()[:4], len(er) == sim.sessions["patient"].nunique()
    (['patient', 'status', 'expected_ruptures', 'sd_ruptures'], True)
    """
    if method != "hmm":
        raise ValueError(f"expected_ruptures supports method='hmm' only, got {method!r}.")
    return HMMDetector(**params).rupture_counts(data)


def rupture_probabilities(data, method: str = "hmm", **params) -> pd.DataFrame:
    """Posterior probability that each rated session lies in a rupture.

    Parameters
    ----------
    data : AllianceData or DataFrame
        Long ratings (``patient, session, alliance``).
    method : {"hmm"}
        The model (only the cohort hidden Markov model gives probabilities).
    **params
        Parameters of :class:`HMMDetector` (``n_starts``, ``df``, ``seed``, ...).

    Returns
    -------
    pandas.DataFrame
        ``patient, session, p_rupture, p_onset``: one row per row of the
        data.  ``p_rupture`` is NaN for missing ratings; both are NaN for
        patients not analysed (``data.excluded``).
        ``p_onset`` is the probability that a rupture *starts* at the session
        (the chain passes through missing sessions, so it is defined there
        too): summed over a patient's sessions it is the expected number of
        ruptures, a per-patient predictor that carries its uncertainty;
        summed ``p_rupture`` is the expected number of sessions in a rupture.
        ``attrs["hmm"]`` holds the fitted shared parameters and the
        convergence report.

    Examples
    --------
    >>> import alliancetrack as at
    >>> sim = at.simulate_cohort(60, 10, seed=2)
    >>> p = at.rupture_probabilities(sim.sessions, n_starts=1)
    >>> p.columns.tolist(), bool(p["p_rupture"].dropna().between(0, 1).all())
    (['patient', 'session', 'p_rupture', 'p_onset'], True)
    """
    if method != "hmm":
        raise ValueError(f"rupture_probabilities supports method='hmm' only, got {method!r}.")
    return HMMDetector(**params).probabilities(data)
