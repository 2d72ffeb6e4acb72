"""Simulated alliance cohorts with known rupture-repair episodes.

The generator (used for the bundled example data, tests and validation):

* **Patients in therapists.**  Patient *i* of therapist *j* has a true
  alliance level ``mean_level + u_j + v_i + growth·(session − 1)`` with
  ``u_j ~ N(0, therapist_sd²)``, ``v_i ~ N(0, patient_sd²)``.
* **Episodes.**  From the third session on, outside an episode and at least
  one session after the last one ended, a rupture starts with probability
  ``rupture_rate`` per session.  Its depth is drawn uniformly from ``depth``
  (scale points) and its length — sessions from rupture to repair — uniformly
  from ``duration`` (1 = V-shaped, one low session; more = U-shaped).  With
  probability ``repair_rate`` the episode is repaired: the level returns at
  the repair session.  Otherwise the level stays lowered until the end of
  treatment (an unrepaired rupture).  A repair that would fall after the last
  session makes the episode unrepaired and censored.
* **Rough-data options** (all off by default, so the default cohort is
  unchanged): ``noise_df`` draws the noise from a Student t with that many
  degrees of freedom (heavy tails; scaled so its SD is still ``noise_sd``
  when ``noise_df > 2``); ``repair_fraction`` makes repairs partial (the
  level comes back by that share of the depth only); ``decline_share`` gives
  that share of patients a gradual decline of ``decline_depth`` scale points
  spread evenly over ``decline_sessions`` sessions starting at a random
  session — a slow drift that is *not* a rupture, so a detector that calls it
  one makes a false positive; ``growth_sd`` gives every patient their own
  slope.  A high ``mean_level`` puts many ratings at the scale's ceiling
  (:data:`SCENARIOS` collects ready-made settings).
* **Ratings** are the true level plus noise (``N(0, noise_sd²)`` by default), clipped to
  the scale's range and rounded to its grid (item means of a 12-item
  WAI-SR: steps of 1/12).  A fraction ``missing_rate`` of ratings is set
  missing, never at a true rupture or repair session (so the truth stays
  observable).
* **Outcomes.**  ``bdi_pre ~ N(24, 6²)`` and ``bdi_post = 2 + 0.6·bdi_pre +
  Σ effect·count + w_j + e`` with therapist effect ``w_j ~ N(0, 1.5²)`` and
  ``e ~ N(0, outcome_sd²)``; ``outcome_effects`` gives the effect of each
  per-patient true count (``n_repaired``, ``n_unrepaired``).  ``effect_r``
  adds a standardized effect of the true ``n_repaired`` instead (see
  :func:`simulate_cohort`).

Everything is determined by ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from alliancetrack.detection.episodes import finalize_episodes
from alliancetrack.reading.scales import Scale, get_scale

__all__ = ["SCENARIOS", "SimulatedCohort", "simulate_cohort"]

#: Ready-made :func:`simulate_cohort` settings for validation on data that do not
#: follow any detector's assumptions (WAI-SR, 1-5).  ``"clean"`` is the default
#: cohort; ``"ceiling"`` starts patients near the top of the scale (about a
#: quarter of the ratings at 5); ``"heavy-tails"`` has Student-t noise with 3
#: degrees of freedom; ``"gradual"`` gives 40% of patients a slow decline (not a
#: rupture) and every patient their own slope; ``"partial-repair"`` brings the
#: level back by 40-90% of the dip only; ``"rough"`` combines all of them.
SCENARIOS: dict[str, dict] = {
    "clean": {},
    "ceiling": {"mean_level": 4.75},
    "heavy-tails": {"noise_df": 3.0},
    "gradual": {"decline_share": 0.4, "decline_depth": (0.6, 1.2), "decline_sessions": (4, 8),
                "growth_sd": 0.02},
    "partial-repair": {"repair_fraction": (0.4, 0.9)},
    "rough": {"mean_level": 4.5, "noise_df": 3.0, "decline_share": 0.3,
              "decline_depth": (0.6, 1.2), "decline_sessions": (4, 8), "growth_sd": 0.02,
              "repair_fraction": (0.5, 1.0)},
}


@dataclass(frozen=True)
class SimulatedCohort:
    """Result of :func:`simulate_cohort`.

    Attributes
    ----------
    sessions : DataFrame
        ``patient, therapist, session, alliance`` (long; missing ratings NaN).
    truth : DataFrame
        The planted episodes in the episode-table format (``method="truth"``).
    outcomes : DataFrame
        ``patient, therapist, bdi_pre, bdi_post, n_repaired, n_unrepaired``
        (the true counts).
    scale : Scale
    """

    sessions: pd.DataFrame
    truth: pd.DataFrame
    outcomes: pd.DataFrame
    scale: Scale


def _pair(value, name) -> tuple[float, float]:
    lo, hi = (value, value) if np.isscalar(value) else tuple(value)
    if lo > hi:
        raise ValueError(f"{name}: the lower bound {lo} exceeds the upper bound {hi}.")
    return float(lo), float(hi)


def _cat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype)


def simulate_cohort(
    n_patients: int = 120,
    n_sessions: int | tuple[int, int] = (8, 16),
    *,
    n_therapists: int = 12,
    scale: str | Scale = "wai-sr",
    mean_level: float | None = None,
    rupture_rate: float = 0.06,
    repair_rate: float = 0.7,
    depth: float | tuple[float, float] = (0.8, 1.5),
    duration: int | tuple[int, int] = (1, 3),
    noise_sd: float = 0.15,
    growth: float = 0.015,
    patient_sd: float = 0.35,
    therapist_sd: float = 0.15,
    missing_rate: float = 0.05,
    outcome_effects: dict[str, float] | None = None,
    outcome_sd: float = 6.0,
    effect_r: float | None = None,
    grid: float | None = None,
    noise_df: float | None = None,
    repair_fraction: float | tuple[float, float] = 1.0,
    decline_share: float = 0.0,
    decline_depth: float | tuple[float, float] = (0.6, 1.2),
    decline_sessions: int | tuple[int, int] = (4, 8),
    growth_sd: float = 0.0,
    seed: int = 0,
) -> SimulatedCohort:
    """Simulate an alliance cohort with known rupture-repair episodes.

    Parameters
    ----------
    n_patients : int
    n_sessions : int or (int, int)
        Number of sessions per patient, or the range it is drawn from.
    n_therapists : int
        Patients are assigned to therapists in turn.
    scale : str or Scale
        Scores are clipped to its range.  Default WAI-SR (1-5).
    mean_level : float, optional
        Mean alliance at session 1; default 65% of the way up the scale.
    rupture_rate : float
        Per-session probability that a rupture starts (outside episodes).
    repair_rate : float
        Probability that an episode is repaired.
    depth : float or (float, float)
        Depth of a rupture in scale points (uniform on the range).
    duration : int or (int, int)
        Sessions from rupture to repair (uniform integers on the range).
    noise_sd : float
        Session noise SD (scale points).
    growth : float
        Linear growth per session (scale points).
    patient_sd : float
        SD of the patients' random intercepts (scale points).
    therapist_sd : float
        SD of the therapists' random intercepts (scale points).
    missing_rate : float
        Fraction of ratings missing at random (never at true rupture/repair
        sessions).
    outcome_effects : dict, optional
        Effects of true counts on ``bdi_post``; default
        ``{"n_repaired": -3.5, "n_unrepaired": 4.0}``.
    outcome_sd : float
        Residual SD of ``bdi_post``.
    effect_r : float, optional
        A standardized effect of the true number of repaired ruptures,
        added to ``outcome_effects`` (pass ``outcome_effects={}`` for this
        effect alone): ``bdi_post`` gets ``-b·z`` with ``z`` the true
        ``n_repaired`` standardized within the cohort and ``b = r·σ/√(1−r²)``,
        ``σ² = outcome_sd² + 1.5²`` the residual variance of ``bdi_post``
        given ``bdi_pre``.  The partial correlation (given ``bdi_pre``) of the
        true count with *improvement* (lower ``bdi_post``) is then ``r``;
        r = .29 is the meta-analytic association of rupture repair with
        outcome (Eubanks, Muran & Safran, 2018).  Used by
        :func:`alliancetrack.power_analysis`.
    grid : float, optional
        Rounding step of ratings; default 1/12 for the WAI-SR (12-item mean),
        1 for the SRS, else no rounding.
    noise_df : float, optional
        Degrees of freedom of Student-t noise (heavy tails); None: normal.
        With ``noise_df > 2`` the t draws are rescaled to SD ``noise_sd``;
        otherwise ``noise_sd`` is their scale.
    repair_fraction : float or (float, float), default 1
        Share of the depth the level regains at a repair (uniform on the
        range); below 1 a repair is partial.
    decline_share : float, default 0
        Share of patients with a gradual decline (not a rupture).
    decline_depth : float or (float, float)
        Total drop of a gradual decline (scale points).
    decline_sessions : int or (int, int)
        Sessions over which the decline is spread (one step per session).
    growth_sd : float, default 0
        SD of patient-specific slopes around ``growth``.
    seed : int

    Examples
    --------
    >>> import alliancetrack as at
    >>> sim = at.simulate_cohort(50, 12, seed=1)
    >>> sim.sessions.columns.tolist()
    ['patient', 'therapist', 'session', 'alliance']
    >>> bool(sim.sessions["alliance"].dropna().between(1, 5).all())
    True
    >>> sim.truth["method"].unique().tolist()
    ['truth']
    """
    scale_obj = get_scale(scale)
    (s_lo, s_hi), depth_r, duration_r, fraction_r, (g_lo, g_hi), (k_lo, k_hi) = _checked_ranges(
        n_patients, n_sessions, rupture_rate, repair_rate, missing_rate, depth, duration,
        repair_fraction, decline_depth, decline_sessions, decline_share, growth_sd, noise_df,
        effect_r)
    if grid is None:
        grid = {"wai-sr": 1 / 12, "srs": 1.0}.get(scale_obj.name)
    if mean_level is None:
        mean_level = scale_obj.low + 0.65 * (scale_obj.high - scale_obj.low)
    effects = {"n_repaired": -3.5, "n_unrepaired": 4.0} if outcome_effects is None else \
        dict(outcome_effects)
    rng = np.random.default_rng(seed)
    n = n_patients
    width = int(s_hi)
    length = rng.integers(int(s_lo), int(s_hi) + 1, size=n)
    ther = np.arange(n) % n_therapists
    u = rng.normal(0, therapist_sd, n_therapists)
    v = rng.normal(0, patient_sd, n)
    sess = np.arange(1, width + 1)
    level = mean_level + u[ther][:, None] + v[:, None] + growth * (sess[None, :] - 1)
    if growth_sd > 0:
        level = level + rng.normal(0, growth_sd, n)[:, None] * (sess[None, :] - 1)
    if decline_share > 0:  # a slow drift down, one step per session, that is not a rupture
        level = level - _slow_declines(rng, length, width, decline_share, (k_lo, k_hi),
                                       (g_lo, g_hi))
    lowered, protect, events = _plant_ruptures(rng, length, width, rupture_rate, repair_rate,
                                               depth_r, duration_r, fraction_r)
    scores = _rated_scores(rng, level + lowered, noise_sd, noise_df, grid, scale_obj)
    observed = sess[None, :] <= length[:, None]
    missing = (rng.random((n, width)) < missing_rate) & ~protect
    scores = np.where(missing, np.nan, scores)
    therapist_ids = np.array([f"T{j + 1:02d}" for j in range(n_therapists)], dtype=object)
    sessions = _session_rows(scores, observed, therapist_ids[ther])
    truth = _true_episodes(level, events)
    outcomes = _outcomes(rng, truth, ther, therapist_ids, effects, effect_r, outcome_sd)
    return SimulatedCohort(sessions=sessions, truth=truth, outcomes=outcomes, scale=scale_obj)


def _slow_declines(rng, length, width, share, sessions, size) -> np.ndarray:
    """(patient x session) drift down of a ``share`` of patients, spread over some sessions."""
    n, cols = len(length), np.arange(width)
    (k_lo, k_hi), (g_lo, g_hi) = sessions, size
    who = rng.random(n) < share
    start_at = rng.integers(1, np.maximum(length - 1, 2))
    span_len = rng.integers(int(k_lo), int(k_hi) + 1, n)
    total = rng.uniform(g_lo, g_hi, n)
    steps = np.clip(cols[None, :] - start_at[:, None] + 1, 0, span_len[:, None])
    return who[:, None] * total[:, None] * steps / span_len[:, None]


def _rated_scores(rng, true_level, noise_sd, noise_df, grid, scale_obj) -> np.ndarray:
    """True level plus normal (or t) noise, rounded to the scale's grid and clipped to its range."""
    if noise_df is None:
        noise = rng.normal(0, noise_sd, true_level.shape)
    else:
        t_sd = np.sqrt(noise_df / (noise_df - 2)) if noise_df > 2 else 1.0
        noise = rng.standard_t(noise_df, true_level.shape) * noise_sd / t_sd
    scores = true_level + noise
    if grid:
        scores = np.round(scores / grid) * grid
    return np.clip(scores, scale_obj.low, scale_obj.high)


def _session_rows(scores, observed, therapist_of) -> pd.DataFrame:
    """The long session table (patients numbered from 1) of the observed cells."""
    n, width = scores.shape
    keep = observed.ravel()
    return pd.DataFrame({
        "patient": np.repeat(np.arange(1, n + 1), width)[keep],
        "therapist": np.repeat(therapist_of, width)[keep],
        "session": np.tile(np.arange(1, width + 1), n)[keep],
        "alliance": scores.ravel()[keep],
    })


def _true_episodes(level, events) -> pd.DataFrame:
    """The planted episodes as an episode table (method "truth")."""
    ev_i, ev_t, ev_r, ev_d, ev_rep = events
    pre = level[ev_i, ev_t - 1]
    episodes = pd.DataFrame({
        "patient": ev_i + 1, "method": "truth", "rupture_session": ev_t + 1,
        "nadir_session": ev_t + 1, "nadir_level": pre - ev_d, "pre_level": pre, "depth": ev_d,
        "repair_session": np.where(ev_rep, ev_r + 1, np.nan), "repaired": ev_rep,
        "censored": ~ev_rep,
    })
    return finalize_episodes(episodes, patient_dtype="int64")


def _checked_ranges(n_patients, n_sessions, rupture_rate, repair_rate, missing_rate, depth,
                    duration, repair_fraction, decline_depth, decline_sessions, decline_share,
                    growth_sd, noise_df, effect_r) -> tuple[tuple[float, float], ...]:
    """Check :func:`simulate_cohort`'s parameters; the (low, high) of each range parameter.

    In order: n_sessions, depth, duration, repair_fraction, decline_depth,
    decline_sessions.
    """
    if n_patients < 1:
        raise ValueError("n_patients must be at least 1.")
    if not (0 <= rupture_rate <= 1 and 0 <= repair_rate <= 1 and 0 <= missing_rate < 1):
        raise ValueError("rupture_rate and repair_rate must lie in [0, 1], missing_rate in [0, 1).")
    s_lo, s_hi = _pair(n_sessions, "n_sessions")
    d_lo, d_hi = _pair(depth, "depth")
    u_lo, u_hi = _pair(duration, "duration")
    if s_lo < 3:
        raise ValueError("n_sessions must be at least 3.")
    if u_lo < 1:
        raise ValueError("duration must be at least 1 session.")
    f_lo, f_hi = _pair(repair_fraction, "repair_fraction")
    g_lo, g_hi = _pair(decline_depth, "decline_depth")
    k_lo, k_hi = _pair(decline_sessions, "decline_sessions")
    if not (0 <= f_lo and f_hi <= 1 and 0 <= decline_share <= 1):
        raise ValueError("repair_fraction and decline_share must lie in [0, 1].")
    if k_lo < 1 or growth_sd < 0 or (noise_df is not None and noise_df <= 0):
        raise ValueError("decline_sessions must be at least 1, growth_sd non-negative and "
                         "noise_df positive.")
    if effect_r is not None and not -1 < effect_r < 1:
        raise ValueError(f"effect_r must lie in (-1, 1), got {effect_r!r}.")
    return (s_lo, s_hi), (d_lo, d_hi), (u_lo, u_hi), (f_lo, f_hi), (g_lo, g_hi), (k_lo, k_hi)


def _plant_ruptures(rng, length, width, rupture_rate, repair_rate, depth, duration,
                    repair_fraction):
    """Draw non-overlapping rupture episodes and the score drops they cause.

    Returns the (patient x session) drop, the cells that must stay observed
    (rupture and repair sessions) and the episodes as arrays of patient index,
    rupture position, repair position (-1 if unrepaired), depth and repaired.
    """
    (d_lo, d_hi), (u_lo, u_hi), (f_lo, f_hi) = depth, duration, repair_fraction
    n = len(length)
    cols = np.arange(width)
    lowered = np.zeros((n, width))
    protect = np.zeros((n, width), dtype=bool)
    free_from = np.full(n, 2)  # 0-based position from which a rupture may start
    ev_i, ev_t, ev_r, ev_d, ev_rep = [], [], [], [], []
    for t in range(2, width):
        start = (t >= free_from) & (t < length) & (rng.random(n) < rupture_rate)
        idx = np.flatnonzero(start)
        if idx.size == 0:
            continue
        d = rng.uniform(d_lo, d_hi, idx.size)
        dur = rng.integers(int(u_lo), int(u_hi) + 1, idx.size)
        rep = rng.random(idx.size) < repair_rate
        # planted in one step for all patients rupturing at t (episodes never overlap)
        end = np.where(rep, t + dur, width)
        span = (cols[None, :] >= t) & (cols[None, :] < end[:, None])
        lowered[idx] -= span * d[:, None]
        if f_lo < 1:  # partial repair: part of the dip stays after the repair session
            frac = rng.uniform(f_lo, f_hi, idx.size)
            after = rep[:, None] & (cols[None, :] >= end[:, None])
            lowered[idx] -= after * (d * (1 - frac))[:, None]
        repaired = rep & (t + dur < length[idx])
        protect[idx, t] = True
        protect[idx[repaired], (t + dur)[repaired]] = True
        ev_i.append(idx)
        ev_t.append(np.full(idx.size, t))
        ev_r.append(np.where(repaired, t + dur, -1))
        ev_d.append(d)
        ev_rep.append(repaired)
        free_from[idx] = np.where(repaired, t + dur + 1, width + 1)

    return lowered, protect, (_cat(ev_i, int), _cat(ev_t, int), _cat(ev_r, int),
                              _cat(ev_d, float), _cat(ev_rep, bool))


def _outcomes(rng, truth, ther, therapist_ids, effects, effect_r, outcome_sd) -> pd.DataFrame:
    """Post-treatment BDI per patient from the true repaired / unrepaired counts."""
    n = len(ther)
    n_therapists = len(therapist_ids)
    counts = truth.groupby("patient")["repaired"].agg(["sum", "size"])
    n_rep = counts["sum"].reindex(range(1, n + 1), fill_value=0).to_numpy()
    n_unrep = (counts["size"] - counts["sum"]).reindex(range(1, n + 1), fill_value=0).to_numpy()
    pre_bdi = rng.normal(24, 6, n)
    w = rng.normal(0, 1.5, n_therapists)
    known = {"n_repaired": n_rep, "n_unrepaired": n_unrep}
    unknown = sorted(set(effects) - set(known))
    if unknown:
        raise ValueError(f"outcome_effects: unknown term(s) {unknown}; use {sorted(known)}.")
    post = 2 + 0.6 * pre_bdi + sum(effects[k] * known[k] for k in effects) + w[ther] + \
        rng.normal(0, outcome_sd, n)
    if effect_r:
        sd = n_rep.std()
        z = (n_rep - n_rep.mean()) / sd if sd > 0 else np.zeros(n)
        sigma = np.sqrt(outcome_sd**2 + 1.5**2)
        post = post - effect_r * sigma / np.sqrt(1 - effect_r**2) * z
    outcomes = pd.DataFrame({
        "patient": np.arange(1, n + 1), "therapist": therapist_ids[ther],
        "bdi_pre": np.round(pre_bdi, 1), "bdi_post": np.round(post, 1),
        "n_repaired": n_rep, "n_unrepaired": n_unrep,
    })
    return outcomes
