"""The report's "Repair strategies" section (when 3RS strategy codes are given)."""

from __future__ import annotations

import html
import warnings
from collections.abc import Callable

import pandas as pd

from alliancetrack.detection.detect import detect_episodes
from alliancetrack.detection.strategies import link_strategies, repair_rates
from alliancetrack.errors import AllianceDataError
from alliancetrack.models.strategies import strategy_effects
from alliancetrack.plotting.strategies import plot_strategy_repair
from alliancetrack.reading.alliance import AllianceData, therapist_of
from alliancetrack.reading.reported import ObserverData

__all__ = ["strategy_section"]

_CAVEAT = ("Observational data: therapists choose strategies in response to the rupture, so "
           "these are associations, not effects of a strategy (see docs/strategies.md).")


def strategy_section(codes: ObserverData, data: AllianceData, window: int,
                     save: Callable[[str, pd.DataFrame], None],
                     table: Callable[[pd.DataFrame, str], str],
                     figure: Callable[[str, object, str], None]) -> str:
    """HTML of the section; ``save``, ``table`` and ``figure`` are the report's writers.

    Links the strategies to the observer episodes of ``codes`` (therapists from
    ``data``), tabulates repair by strategy class and fits
    :func:`alliancetrack.strategy_effects` (counts of uses) when there are
    enough episodes; a model that cannot be fitted is reported, not hidden.
    """
    if not isinstance(codes, ObserverData) or codes.strategies is None:
        raise AllianceDataError("strategy_codes must be 3RS codes read with "
                                "read_3rs(..., strategy='<column>').")
    episodes = detect_episodes(codes, method="observer")
    linked = link_strategies(episodes, codes, window=window)
    th = therapist_of(data.frame)
    if "therapist" not in linked and th is not None:
        linked["therapist"] = linked["patient"].map(th)
    save("strategies_linked", linked)
    rates = repair_rates(linked)
    save("strategy_repair_rates", rates)
    parts = [f"<p>{len(codes.strategies)} strategy uses in {len(codes.sessions)} coded "
             f"sessions; {len(linked)} observer episodes, strategies counted in the rupture "
             f"session{f' and up to {window} later' if window else ''} (never after the "
             "repair). All in <code>strategies_linked.csv</code>.</p>",
             table(rates.round(3), "strategy_repair_rates")]
    if len(rates):
        figure("strategy_repair", plot_strategy_repair(linked),
               "Share of observer episodes repaired by the strategy classes used, with 95% "
               "Wilson intervals (raw rates, clustering ignored).")
    groups = "therapist" if linked.get("therapist") is not None and \
        linked["therapist"].notna().any() else None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            eff = strategy_effects(linked, use="count", groups=groups)
        save("strategy_effects", eff.table)
        notes = "".join(f"<li>{html.escape(str(w.message))}</li>" for w in caught)
        parts += [f"<p>Binomial GLMM: <code>{html.escape(eff.formula)}</code>, "
                  f"{len(eff.data)} episodes.</p>", table(eff.table.round(3), "strategy_effects")]
        if notes:
            parts.append(f"<ul class='note'>{notes}</ul>")
    except (AllianceDataError, ValueError, RuntimeError) as exc:
        parts.append(f"<p class='note'>No model of repair on strategies: "
                     f"{html.escape(str(exc))}</p>")
    parts.append(f"<p class='note'>{html.escape(_CAVEAT)}</p>")
    return "".join(parts)
