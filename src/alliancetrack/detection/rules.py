"""Dip-and-recovery rules: parameter objects and literature presets.

A rule says when a drop in the alliance counts as a rupture and when the
alliance counts as repaired.  The rules here are parameter objects only; the
detection itself is in :mod:`alliancetrack.detection.rule_engine`.

Semantics shared by every rule (what :func:`alliancetrack.detect_episodes`
computes with ``method="rules"``):

* Only rated sessions are used.  A missing rating is skipped: the session
  before and the session after a gap are treated as neighbours, so a gap
  neither creates nor breaks an episode.
* At each rated session *t* (not the first) that is not inside an open
  episode, the **reference level** is computed from the rated sessions before
  *t* (``reference``): the previous rated session, the mean of the
  ``reference_sessions`` previous rated sessions, or the patient's mean over
  all rated sessions.  With ``decline_sessions = D > 1`` the reference is the
  highest such level among the *D* sessions before *t*, so a gradual decline
  over up to *D* sessions counts (Gumz et al. 2012).  Sessions before the end
  of the patient's previous episode are never used as reference.
* Session *t* opens a **rupture** when ``reference − score ≥ threshold`` and
  the drop is positive, where the threshold is ``threshold × unit``.
* The episode's **nadir** is its lowest score so far.  The first later session
  with ``score ≥ nadir + recovery_fraction × (pre_level − nadir)`` is the
  **repair** (``recovery_fraction = 1`` means back to the pre-rupture level).
  With a ``repair_window`` of *W* sessions the repair must come at most *W*
  sessions (by session number) after the rupture; otherwise the episode is
  unrepaired and closes when the window closes.
* An episode still open at the last rated session is unrepaired and
  ``censored`` when the window had not closed (always, when there is no
  window).  A new episode can start only after the previous one ended, so
  episodes never overlap.
* For scales where lower is better, the rules are applied to the mirrored
  scores (a rupture is a rise); levels are reported on the original scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Literal

__all__ = ["DipRecoveryRule", "PRESETS", "get_rule"]

Reference = Literal["previous", "mean_previous", "patient_mean"]
Unit = Literal["points", "within_sd", "sample_sd", "max_sd", "rci", "percent"]

_UNITS = ("points", "within_sd", "sample_sd", "max_sd", "rci", "percent")
_REFERENCES = ("previous", "mean_previous", "patient_mean")

_UNIT_TEXT = {
    "points": "scale points",
    "within_sd": "× the patient's own SD (SD of the patient's rated sessions)",
    "sample_sd": "× the sample SD (SD of all ratings of all analysed patients)",
    "max_sd": "× the larger of the patient's own SD and the sample SD",
    "rci": "× the reliable-change threshold 1.96·SD·√(2(1−r)) (SD: the scale's normative SD "
    "if given, else the sample SD; r: the scale's reliability)",
    "percent": "% of the reference level",
}


@dataclass(frozen=True)
class DipRecoveryRule:
    """A dip-and-recovery rule for rupture-repair episodes.

    Parameters
    ----------
    name : str
        Label used in the ``method`` column (``"rules:<name>"``).
    reference : {"previous", "mean_previous", "patient_mean"}
        Level the dip is measured from: the previous rated session, the mean
        of the ``reference_sessions`` previous rated sessions, or the
        patient's mean over all rated sessions.
    reference_sessions : int
        Number of previous sessions averaged when ``reference="mean_previous"``.
    threshold : float
        Size of the dip, in ``unit``.
    unit : {"points", "within_sd", "sample_sd", "max_sd", "rci", "percent"}
        Unit of ``threshold``: scale points; the patient's own SD; the sample
        SD; the larger of the two (Gumz et al. 2012); the reliable-change
        threshold 1.96·SD·√(2(1−r)) (Jacobson & Truax 1991); or a percentage
        of the reference level.
    decline_sessions : int
        Number of sessions the decline may take (1 = V-shaped: a drop from one
        session to the next).
    recovery_fraction : float
        Fraction of the depth that must be regained for a repair (1.0 = back
        to the pre-rupture level).
    repair_window : int or None
        Maximum number of sessions from rupture to repair; None = until the
        end of treatment.
    min_timepoints : int
        Patients with fewer rated sessions are not analysed (reported as
        excluded).
    higher_is_better : bool or None
        Direction; None takes it from the data (the scale).
    citation : str
        Where the rule comes from (not part of equality).

    Examples
    --------
    >>> import alliancetrack as at
    >>> rule = at.DipRecoveryRule("my-rule", threshold=1.5, repair_window=3)
    >>> rule.threshold, rule.unit, rule.repair_window
    (1.5, 'within_sd', 3)
    >>> at.PRESETS["stiles-2sd"].replace(threshold=1.5).threshold
    1.5
    """

    name: str = "custom"
    reference: Reference = "previous"
    reference_sessions: int = 1
    threshold: float = 2.0
    unit: Unit = "within_sd"
    decline_sessions: int = 1
    recovery_fraction: float = 1.0
    repair_window: int | None = None
    min_timepoints: int = 3
    higher_is_better: bool | None = None
    citation: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.reference not in _REFERENCES:
            raise ValueError(
                f"reference must be one of {_REFERENCES}, got {self.reference!r}."
            )
        if self.unit not in _UNITS:
            raise ValueError(f"unit must be one of {_UNITS}, got {self.unit!r}.")
        for name in ("reference_sessions", "decline_sessions", "min_timepoints"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}.")
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold)
                and self.threshold > 0):
            raise ValueError(f"threshold must be a positive number, got {self.threshold!r}.")
        if not (0 < self.recovery_fraction <= 2):
            raise ValueError(
                "recovery_fraction must be in (0, 2] (1.0 = back to the pre-rupture level), "
                f"got {self.recovery_fraction!r}."
            )
        if self.repair_window is not None and (
            not isinstance(self.repair_window, int) or self.repair_window < 1
        ):
            raise ValueError(
                f"repair_window must be None or a whole number >= 1, got {self.repair_window!r}."
            )
        if self.min_timepoints < 3:
            raise ValueError(
                "min_timepoints must be at least 3: a rupture-repair sequence needs a "
                f"pre-rupture, a rupture and a repair session (got {self.min_timepoints})."
            )

    def replace(self, **changes) -> DipRecoveryRule:
        """A copy with some fields changed; unknown field names are an error."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(
                f"Unknown rule field(s) {unknown}. DipRecoveryRule fields: {sorted(known)}."
            )
        return replace(self, **changes)

    def describe(self) -> str:
        """One paragraph saying exactly what this rule computes."""
        if self.reference == "previous":
            ref = "the previous rated session"
        elif self.reference == "mean_previous":
            ref = f"the mean of the {self.reference_sessions} previous rated sessions"
        else:
            ref = "the patient's mean over all rated sessions"
        if self.decline_sessions > 1 and self.reference != "patient_mean":
            ref += f" (the highest such level within the {self.decline_sessions} sessions before)"
        unit = _UNIT_TEXT[self.unit]
        thr = f"{self.threshold:g}{'' if self.unit == 'percent' else ' '}{unit}"
        rec = ("back to the pre-rupture level" if self.recovery_fraction == 1 else
               f"regaining {self.recovery_fraction:.0%} of the depth")
        win = ("any later session" if self.repair_window is None else
               f"within {self.repair_window} sessions")
        return (
            f"Rupture: a drop of at least {thr} below {ref}. Repair: {rec}, {win}. "
            f"Patients need at least {self.min_timepoints} rated sessions."
        )


PRESETS: dict[str, DipRecoveryRule] = {
    r.name: r
    for r in [
        DipRecoveryRule(
            "stiles-2sd", reference="previous", threshold=2.0, unit="within_sd",
            citation=(
                "After Stiles, W. B., Glick, M. J., Osatuke, K., et al. (2004). Patterns of "
                "alliance development and the rupture-repair hypothesis: Are productive "
                "relationships U-shaped or V-shaped? Journal of Counseling Psychology, 51(1), "
                "81-92."
            ),
        ),
        DipRecoveryRule(
            "strauss-1sd", reference="previous", threshold=1.0, unit="within_sd",
            citation=(
                "After Strauss, J. L., Hayes, A. M., Johnson, S. L., et al. (2006). Early "
                "alliance, alliance ruptures, and symptom change in a nonrandomized trial of "
                "cognitive therapy for avoidant and obsessive-compulsive personality disorders. "
                "Journal of Consulting and Clinical Psychology, 74(2), 337-345; and McLaughlin, "
                "A. A., Keller, S. M., Feeny, N. C., Youngstrom, E. A., & Zoellner, L. A. (2014). "
                "Patterns of therapeutic alliance: Rupture-repair episodes in prolonged exposure "
                "for PTSD. Journal of Consulting and Clinical Psychology, 82(1), 112-121."
            ),
        ),
        DipRecoveryRule(
            "gumz-2012", reference="previous", threshold=1.0, unit="max_sd", decline_sessions=6,
            citation=(
                "After Gumz, A., Braehler, E., Geyer, M., & Erices, R. (2012). Crisis-repair "
                "sequences - considerations on the classification and assessment of breaches in "
                "the therapeutic relationship. BMC Medical Research Methodology, 12, 10."
            ),
        ),
        DipRecoveryRule(
            "rci", reference="previous", threshold=1.0, unit="rci",
            citation=(
                "Reliable-change dip after Jacobson, N. S., & Truax, P. (1991). Clinical "
                "significance: A statistical approach to defining meaningful change in "
                "psychotherapy research. Journal of Consulting and Clinical Psychology, 59(1), "
                "12-19."
            ),
        ),
    ]
}

_PRESET_NOTES = {
    "stiles-2sd": "a drop of at least 2 of the patient's own SDs from one rated session to the "
    "next; repaired when the score is back at the pre-rupture level.",
    "strauss-1sd": "as stiles-2sd with 1 SD.",
    "gumz-2012": "threshold = the larger of the patient's own SD and the sample SD; the "
    "decline may take up to 6 sessions; repaired when back at the pre-rupture level.",
    "rci": "a drop of at least the reliable-change threshold 1.96·SD·√(2(1−r)) from one rated "
    "session to the next (needs the scale's reliability); repaired when back at the "
    "pre-rupture level.",
}


def get_rule(rule: str | DipRecoveryRule, **overrides) -> DipRecoveryRule:
    """Resolve a preset name or rule object and apply field overrides.

    Examples
    --------
    >>> from alliancetrack.detection.rules import get_rule
    >>> get_rule("strauss-1sd", repair_window=4)
    DipRecoveryRule(name='strauss-1sd', reference='previous', reference_sessions=1, \
threshold=1.0, unit='within_sd', decline_sessions=1, recovery_fraction=1.0, repair_window=4, \
min_timepoints=3, higher_is_better=None)
    """
    if isinstance(rule, str):
        key = rule.strip().lower()
        if key not in PRESETS:
            raise ValueError(
                f"Unknown rule preset {rule!r}. Presets: {', '.join(PRESETS)}; or pass "
                "alliancetrack.DipRecoveryRule(...)."
            )
        rule = PRESETS[key]
    if not isinstance(rule, DipRecoveryRule):
        raise TypeError(
            f"rule must be a preset name or a DipRecoveryRule, not {type(rule).__name__}."
        )
    return rule.replace(**overrides) if overrides else rule


def _preset_doc() -> str:
    lines = ["", "Presets", "-------"]
    for name, rule in PRESETS.items():
        lines.append(f"``{name}``: {_PRESET_NOTES[name]}")
        lines.append(f"    {rule.citation}")
    lines.append(
        "    Papers differ in details (reference level, repair window, how SDs are computed) "
        "that we could not verify from every original; each preset is our reading of the "
        "paper. Override any field, e.g. ``detect_episodes(data, rule='stiles-2sd', "
        "repair_window=3)`` or ``PRESETS['stiles-2sd'].replace(reference='mean_previous', "
        "reference_sessions=3)``."
    )
    return "\n".join(lines)


__doc__ = (__doc__ or "") + _preset_doc()
