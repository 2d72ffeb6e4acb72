"""Dip-and-recovery rules: parameter objects and literature presets.

A rule says when a drop in the alliance counts as a rupture and when the
alliance counts as repaired.  The rules here are parameter objects (the
:class:`~alliancetrack.detection.base.Detector` of ``method="rules"``); the
vectorised detection itself is in :mod:`alliancetrack.detection.rule_engine`.

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

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import pandas as pd

from alliancetrack.detection.base import (
    Check,
    Detector,
    flag,
    one_of,
    positive,
    register_detector,
    single_rater,
    whole,
)
from alliancetrack.detection.episodes import finalize_episodes
from alliancetrack.detection.rule_engine import detect_rule_episodes
from alliancetrack.reading.alliance import as_alliance_data

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


@register_detector
@dataclass(frozen=True)
class DipRecoveryRule(Detector):
    """A dip-and-recovery rule for rupture-repair episodes (``method="rules"``).

    Parameters
    ----------
    name : str
        Name of the rule; a preset name (:data:`PRESETS`) or your own.  The
        episode table's ``method`` column holds the rule's :attr:`label`:
        ``"rules:<name>"`` for an unchanged preset, the changed fields in
        brackets otherwise (``"rules:strauss-1sd[repair_window=1]"``), and
        every field for a rule that is not a preset.
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
    >>> at.PRESETS["stiles-2sd"].replace(threshold=1.5).label
    'rules:stiles-2sd[threshold=1.5]'
    """

    method: ClassVar[str] = "rules"
    name_field: ClassVar[str | None] = "name"
    option_word: ClassVar[str] = "rule field"
    checks: ClassVar[dict[str, Check]] = {
        "reference": one_of(*_REFERENCES),
        "unit": one_of(*_UNITS),
        "reference_sessions": whole(1),
        "decline_sessions": whole(1),
        "min_timepoints": Check(
            lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 3,
            "be a whole number >= 3: a rupture-repair sequence needs a pre-rupture, a rupture "
            "and a repair session"),
        "threshold": positive(),
        "recovery_fraction": positive(upper=2),
        "repair_window": whole(1, optional=True),
        "higher_is_better": flag(optional=True),
    }

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

    def replace(self, **changes) -> DipRecoveryRule:
        """A copy with some fields changed; unknown field names are an error."""
        return super().replace(**changes)  # type: ignore[return-value]

    # -- the label is relative to the preset of the same name; other rules name every field
    def label_reference(self) -> DipRecoveryRule | None:  # type: ignore[override]
        """The preset this rule is a variant of (None: not a preset)."""
        return PRESETS.get(self.name)

    @classmethod
    def default(cls) -> DipRecoveryRule:
        """The rule ``detect_episodes`` uses without ``rule=``: ``stiles-2sd``."""
        return PRESETS["stiles-2sd"]

    @classmethod
    def from_name(cls, name: str) -> DipRecoveryRule:
        """A preset by name (see :func:`get_rule`)."""
        return get_rule(name)

    @classmethod
    def from_label_parts(cls, name, params) -> DipRecoveryRule:
        """The rule of a label: a preset with changes, or a rule named by all its fields."""
        if name in PRESETS:
            return PRESETS[name].replace(**params)
        return cls(name="custom" if name is None else name, **params)

    # -- detection
    def exclusions(self, data) -> pd.DataFrame:
        """Patients analysed by ``data`` with fewer rated sessions than the rule needs."""
        if self.min_timepoints <= data.min_timepoints:
            return super().exclusions(data)
        rated = data.analysed_frame.groupby("patient", sort=False)["alliance"].count()
        few = rated[rated < self.min_timepoints]
        return pd.DataFrame({
            "patient": pd.Series(few.index.to_numpy(), dtype=data.patients.dtype),
            "reason": pd.Series([f"fewer than {self.min_timepoints} rated sessions ({n} rated; "
                                 f"rule {self.name!r})" for n in few.to_numpy()], dtype=object),
        })

    def detect(self, data, *, sample_sd: float | None = None) -> pd.DataFrame:
        """Episodes of ``data`` (see the module notes for the semantics).

        ``sample_sd``: the cohort's sample SD, when ``data`` is one part of
        it (the Dask engine); by default computed from ``data``.

        Examples
        --------
        >>> import pandas as pd, alliancetrack as at
        >>> df = pd.DataFrame({"patient": 1, "session": range(1, 7),
        ...                    "alliance": [4.0, 4.0, 2.0, 3.0, 4.0, 4.0]})
        >>> at.PRESETS["strauss-1sd"].detect(df)[["method", "rupture_session", "repaired"]]
                        method  rupture_session  repaired
        0  rules:strauss-1sd              3.0      True
        """
        data = as_alliance_data(data)
        single_rater(data)
        hib = data.higher_is_better if self.higher_is_better is None else self.higher_is_better
        extra = self.exclusions(data)
        frame = data.analysed_frame
        if len(extra):
            frame = frame.loc[~frame["patient"].isin(extra["patient"])]
        raw = detect_rule_episodes(frame, self, data.scale, higher_is_better=hib,
                                   sample_sd=sample_sd)
        return finalize_episodes(raw, patient_dtype=data.patients.dtype)

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
