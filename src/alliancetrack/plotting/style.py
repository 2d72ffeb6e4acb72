"""The package's plot style: one colour palette (Okabe-Ito) and one plotnine theme.

Colours follow the Okabe-Ito palette (Okabe & Ito, 2008), which stays
distinguishable with the common colour-vision deficiencies.  The theme
(:func:`theme_alliance`) uses 8-pt text so that a figure printed one journal
column wide (about 3.5 in) stays readable.  Every figure module takes its
colours and theme from here.
"""

from __future__ import annotations

from typing import Any

import plotnine as p9

__all__ = ["COLOUR_CYCLE", "GROUP_COLOURS", "OKABE_ITO", "colours", "theme_alliance"]

#: The Okabe-Ito colour-blind-safe palette (Okabe & Ito, 2008).
OKABE_ITO: dict[str, str] = {
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
    "black": "#000000",
    "grey": "#999999",
}

#: Colours of the predictor groups (no rupture / all repaired / any unrepaired).
GROUP_COLOURS: dict[str, str] = {
    "no_rupture": OKABE_ITO["bluish_green"],
    "repaired": OKABE_ITO["blue"],
    "unrepaired": OKABE_ITO["vermillion"],
}
#: Colours for a sequence of methods or series, in order (yellow last: least contrast).
COLOUR_CYCLE: list[str] = [OKABE_ITO[k] for k in ("blue", "orange", "bluish_green", "vermillion",
                                                  "reddish_purple", "sky_blue", "black",
                                                  "yellow", "grey")]


def colours(n: int) -> list[str]:
    """``n`` colours from :data:`COLOUR_CYCLE` (repeating after nine).

    Examples
    --------
    >>> from alliancetrack.plotting.style import colours
    >>> colours(2)
    ['#0072B2', '#E69F00']
    """
    return [COLOUR_CYCLE[i % len(COLOUR_CYCLE)] for i in range(n)]


def theme_alliance(base_size: float = 8, **kwargs: Any) -> p9.theme:
    """The package's plot theme: white, light grid, small readable text.

    Parameters
    ----------
    base_size : float, default 8
        Base font size in points (8 pt reads well at journal column width).
    **kwargs
        Further :class:`plotnine.theme` settings, e.g. ``figure_size=(3.5, 2.5)``.

    Returns
    -------
    plotnine.theme

    Examples
    --------
    >>> import plotnine as p9
    >>> from alliancetrack.plotting.style import theme_alliance
    >>> isinstance(theme_alliance(figure_size=(3.5, 2.5)), p9.theme)
    True
    """
    settings: dict[str, Any] = {
        "panel_grid_minor": p9.element_blank(),
        "panel_grid_major": p9.element_line(colour="#E5E5E5", size=0.4),
        "panel_border": p9.element_rect(colour="#7F7F7F", size=0.5),
        "strip_background": p9.element_rect(fill="#F0F0F0", colour="#7F7F7F", size=0.5),
        "strip_text": p9.element_text(size=base_size * 0.9, margin={"t": 2, "b": 2}),
        "axis_text": p9.element_text(size=base_size * 0.85, colour="#333333"),
        "axis_title": p9.element_text(size=base_size),
        "legend_title": p9.element_text(size=base_size * 0.9),
        "legend_text": p9.element_text(size=base_size * 0.85),
        "legend_key_size": 10,
        "legend_position": "bottom",
        "legend_box_margin": 0,
        "plot_title": p9.element_text(size=base_size * 1.1),
    }
    settings.update(kwargs)
    return p9.theme_bw(base_size=base_size) + p9.theme(**settings)
