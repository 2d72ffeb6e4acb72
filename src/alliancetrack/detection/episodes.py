"""The episode table: one row per rupture(-repair) episode, shared by every detector."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["EPISODE_COLUMNS", "empty_episodes", "finalize_episodes"]

#: Columns every episode table has, in this order (see DESIGN.md).
EPISODE_COLUMNS: tuple[str, ...] = (
    "patient",
    "episode",
    "method",
    "source",
    "type",
    "intensity",
    "rupture_session",
    "nadir_session",
    "nadir_level",
    "pre_level",
    "depth",
    "repair_session",
    "repaired",
    "censored",
    "sessions_to_repair",
)

_FLOAT = ("rupture_session", "nadir_session", "nadir_level", "pre_level", "depth",
          "repair_session", "intensity", "sessions_to_repair")


def empty_episodes(patient_dtype=None) -> pd.DataFrame:
    """An episode table with no rows and the standard columns.

    Examples
    --------
    >>> from alliancetrack.detection.episodes import EPISODE_COLUMNS, empty_episodes
    >>> list(empty_episodes().columns) == list(EPISODE_COLUMNS)
    True
    """
    return finalize_episodes(
        pd.DataFrame({c: pd.Series([], dtype=object) for c in EPISODE_COLUMNS}),
        patient_dtype=patient_dtype,
    )


def finalize_episodes(df: pd.DataFrame, patient_dtype=None) -> pd.DataFrame:
    """Give an episode table the standard column order and dtypes.

    Missing optional columns (``source``, ``type``, ``intensity``) are added as
    missing; ``episode`` is renumbered 1, 2, ... within patient in time order;
    ``sessions_to_repair`` is recomputed from the sessions.  Extra columns are
    kept after the standard ones.

    Examples
    --------
    >>> import pandas as pd
    >>> from alliancetrack.detection.episodes import finalize_episodes
    >>> raw = pd.DataFrame({"patient": [1, 1], "method": "mine", "rupture_session": [9, 3],
    ...                     "nadir_session": [9, 4], "nadir_level": [2.0, 2.5],
    ...                     "pre_level": [4.0, 4.0], "depth": [2.0, 1.5],
    ...                     "repair_session": [None, 6], "repaired": [False, True],
    ...                     "censored": [True, False]})
    >>> finalize_episodes(raw)[["episode", "rupture_session", "sessions_to_repair"]]
       episode  rupture_session  sessions_to_repair
    0        1              3.0                 3.0
    1        2              9.0                 NaN
    """
    df = df.copy()
    if "source" not in df:
        df["source"] = "scores"
    if "type" not in df:
        df["type"] = pd.NA
    if "intensity" not in df:
        df["intensity"] = np.nan
    for col in _FLOAT:
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="raise").astype("float64")
    # ``repaired`` is bool, or nullable boolean when the repair status is unknown for some
    # episodes (self-report / observer episodes without a resolution rating)
    if df["repaired"].isna().any():
        df["repaired"] = df["repaired"].astype("boolean")
    else:
        df["repaired"] = df["repaired"].astype(bool)
    df["censored"] = df["censored"].astype(bool)
    known = df["repaired"].fillna(False).to_numpy(dtype=bool)
    df["sessions_to_repair"] = np.where(
        known, df["repair_session"] - df["rupture_session"], np.nan
    )
    df = df.sort_values(["patient", "rupture_session"], kind="stable").reset_index(drop=True)
    df["episode"] = (df.groupby("patient", sort=False).cumcount() + 1).astype("int64")
    df["method"] = df["method"].astype(object)
    df["source"] = df["source"].astype(object)
    df["type"] = df["type"].astype(object)
    if patient_dtype is not None and len(df):
        df["patient"] = df["patient"].astype(patient_dtype)
    extra = [c for c in df.columns if c not in EPISODE_COLUMNS]
    return df[list(EPISODE_COLUMNS) + extra]
