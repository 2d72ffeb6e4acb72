"""Registry of alliance instruments (range and published reliability).

The reliabilities are internal-consistency coefficients (Cronbach's alpha) of
the total score as reported in the instruments' validation papers; they are
used for reliable-change thresholds (Jacobson & Truax 1991).  They vary across
samples and rater perspectives: when your own sample's reliability is known,
pass a custom :class:`Scale`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Scale", "SCALES", "get_scale"]


@dataclass(frozen=True)
class Scale:
    """An alliance instrument: score range and psychometrics.

    Parameters
    ----------
    name : str
        Instrument name, e.g. ``"wai-sr"``.
    low, high : float
        Lowest and highest possible score (inclusive).  Scores outside the
        range are rejected by :func:`alliancetrack.read_alliance`.
    reliability : float, optional
        Internal consistency (alpha) of the score, in (0, 1).  Needed for
        reliable-change thresholds.
    sd : float, optional
        A normative (reference-sample) standard deviation of the score.  When
        missing, reliable-change thresholds use the SD of the data at hand.
    higher_is_better : bool, default True
        Direction of the scale.  For every instrument in :data:`SCALES` a
        higher score means a better alliance.
    citation : str, optional
        Where range and reliability come from.

    Examples
    --------
    >>> from alliancetrack import Scale
    >>> Scale("my-wai", 1, 7, reliability=0.9)
    Scale(name='my-wai', low=1, high=7, reliability=0.9, sd=None, higher_is_better=True, citation='')
    """

    name: str
    low: float
    high: float
    reliability: float | None = None
    sd: float | None = None
    higher_is_better: bool = True
    citation: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise ValueError(
                f"Scale {self.name!r}: low ({self.low}) must be a finite number below high "
                f"({self.high})."
            )
        if self.reliability is not None and not (0 < self.reliability < 1):
            raise ValueError(
                f"Scale {self.name!r}: reliability must lie strictly between 0 and 1, "
                f"got {self.reliability}."
            )
        if self.sd is not None and not (self.sd > 0):
            raise ValueError(f"Scale {self.name!r}: sd must be positive, got {self.sd}.")


SCALES: dict[str, Scale] = {
    s.name: s
    for s in [
        Scale(
            "wai-sr", 1, 5, reliability=0.91,
            citation="Hatcher & Gillaspy (2006), Psychotherapy Research 16(1), 12-25; "
            "item-mean scoring of the 12-item WAI-SR.",
        ),
        Scale(
            "wai-s", 1, 7, reliability=0.95,
            citation="Tracey & Kokotovic (1989), Psychological Assessment 1(3), 207-210; "
            "item-mean scoring of the 12-item WAI-S.",
        ),
        Scale(
            "srs", 0, 40, reliability=0.88,
            citation="Duncan et al. (2003), Journal of Brief Therapy 3(1), 3-12; "
            "four 10-cm visual analogue items summed.",
        ),
        Scale(
            "arm-12", 1, 7, reliability=0.90,
            citation="Cahill et al. (2012), Psychotherapy Research 22(5), 524-535 "
            "(Agnew Relationship Measure, 12 items, item mean).",
        ),
        Scale(
            "calpas", 1, 7, reliability=0.83,
            citation="Gaston (1991), Psychological Assessment 3(1), 68-74; "
            "Gaston & Marmar (1994) (CALPAS, item mean).",
        ),
        Scale(
            "haq-ii", 1, 6, reliability=0.90,
            citation="Luborsky et al. (1996), Journal of Psychotherapy Practice and "
            "Research 5(3), 260-271 (HAq-II, item mean).",
        ),
    ]
}
SCALES["arm"] = SCALES["arm-12"]


def get_scale(scale: str | Scale | None) -> Scale | None:
    """Return a :class:`Scale` for a registry name, a ``Scale`` or ``None``.

    Examples
    --------
    >>> from alliancetrack.reading.scales import get_scale
    >>> get_scale("SRS").high
    40
    """
    if scale is None or isinstance(scale, Scale):
        return scale
    if isinstance(scale, str):
        key = scale.strip().lower()
        if key in SCALES:
            return SCALES[key]
        raise ValueError(
            f"Unknown scale {scale!r}. Known scales: {', '.join(sorted(SCALES))}; "
            "or pass alliancetrack.Scale(name, low, high, reliability=...)."
        )
    raise TypeError(f"scale must be a name, a Scale or None, not {type(scale).__name__}.")
