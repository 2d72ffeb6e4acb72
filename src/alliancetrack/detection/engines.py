"""Registry of out-of-core engines for inputs other than in-memory data.

:func:`alliancetrack.detect_episodes` and :func:`alliancetrack.episode_predictors`
accept inputs that an engine registered here knows (a Dask DataFrame:
:mod:`alliancetrack.scaling.dask_engine` registers itself when imported, which
``import alliancetrack`` does).  The detection layer only consults the registry,
so it never imports the engines and the imports flow one way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Engine", "engine_for", "register_engine"]


@dataclass(frozen=True)
class Engine:
    """An engine: which inputs it ``accepts`` and its two entry points.

    Examples
    --------
    >>> from alliancetrack.detection.engines import engine_for
    >>> import pandas as pd
    >>> engine_for(pd.DataFrame()) is None  # pandas is processed in memory
    True
    """

    name: str
    accepts: Callable[[Any], bool]
    detect_episodes: Callable[..., Any]
    episode_predictors: Callable[..., Any]


_ENGINES: dict[str, Engine] = {}


def register_engine(engine: Engine) -> Engine:
    """Make ``engine`` handle the inputs it accepts (replaces one of the same name)."""
    _ENGINES[engine.name] = engine
    return engine


def engine_for(data: Any) -> Engine | None:
    """The registered engine that accepts ``data``, or None (in memory)."""
    for engine in _ENGINES.values():
        if engine.accepts(data):
            return engine
    return None
