"""Bundled example data: a synthetic alliance cohort with known episodes.

See ``README.md`` in this folder for how it was generated.  Regenerate with
``python -m alliancetrack.datasets.generate`` (deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

__all__ = ["Example", "load_example", "example_path", "EXAMPLE_FILES"]

#: The example tables and their file names.
EXAMPLE_FILES = {
    "sessions": "example_sessions.csv",
    "outcomes": "example_outcomes.csv",
    "truth": "example_truth.csv",
    "psq": "example_psq.csv",
    "observer": "example_observer.csv",
    "strategies": "example_strategies.csv",
}


@dataclass(frozen=True)
class Example:
    """The example cohort: ``sessions`` (long alliance ratings, WAI-SR 1-5),
    ``outcomes`` (BDI-II pre/post per patient), ``truth`` (the planted
    episodes), ``psq`` (Post-Session Questionnaire rupture items of patient
    and therapist, patients 1-60) and ``observer`` (3RS codes per 5-minute
    segment for about half the sessions of patients 1-30) and ``strategies``
    (the 3RS resolution strategies used in those coded sessions, one row per
    use; concatenate with ``observer`` and read with ``read_3rs(...,
    strategy="strategy")``)."""

    sessions: pd.DataFrame
    outcomes: pd.DataFrame
    truth: pd.DataFrame
    psq: pd.DataFrame
    observer: pd.DataFrame
    strategies: pd.DataFrame


def example_path(table: str = "sessions") -> Path:
    """Path of a bundled example CSV (``"sessions"``, ``"outcomes"``, ``"truth"``, ``"psq"``,
    ``"observer"``, ``"strategies"``).

    Examples
    --------
    >>> from alliancetrack.datasets import example_path
    >>> example_path("sessions").name
    'example_sessions.csv'
    """
    if table not in EXAMPLE_FILES:
        raise ValueError(f"Unknown example table {table!r}; choose from {list(EXAMPLE_FILES)}.")
    return Path(str(resources.files(__name__).joinpath(EXAMPLE_FILES[table])))


def load_example() -> Example:
    """Load the bundled example cohort.

    150 patients of 15 therapists with 8-20 sessions each, plus 4 early
    drop-outs with two rated sessions (excluded from detection); WAI-SR item
    means (1-5, steps of 1/12) with about 5% missing ratings; BDI-II before
    and after treatment (missing after treatment for two drop-outs); the
    planted rupture-repair episodes.

    Examples
    --------
    >>> import alliancetrack as at
    >>> ex = at.datasets.load_example()
    >>> ex.sessions["patient"].nunique(), ex.outcomes.shape[0]
    (154, 154)
    >>> at.read_alliance(ex.sessions, therapist="therapist", scale="wai-sr")
    <AllianceData: 154 patients (4 excluded), 2048 ratings, 115 missing, wai-sr>
    """
    return Example(**{k: pd.read_csv(example_path(k)) for k in EXAMPLE_FILES})
