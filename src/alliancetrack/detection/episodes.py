"""The episode table: one row per rupture(-repair) episode, shared by every detector."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["EPISODE_COLUMNS", "Attached", "attach", "attached", "empty_episodes",
           "finalize_episodes"]

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


class Attached:
    """A table attached to an episode table's ``attrs`` (e.g. ``attrs["excluded"]``).

    pandas compares ``attrs`` when concatenating and deep-copies them on most
    operations.  A bare DataFrame there makes ``pd.concat`` of two episode
    tables fail ("truth value of a DataFrame is ambiguous") and is copied on
    every filter.  This wrapper compares by content, is not copied (treat it
    as read-only) and otherwise behaves like the DataFrame it holds
    (``attrs["excluded"]["patient"]``, ``len(...)``); ``.frame`` is the
    DataFrame itself.

    Examples
    --------
    >>> import pandas as pd
    >>> from alliancetrack.detection.episodes import attach
    >>> a = pd.DataFrame({"x": [1]}); b = pd.DataFrame({"x": [2]})
    >>> a.attrs["info"] = attach(pd.DataFrame({"p": [1]}))
    >>> b.attrs["info"] = attach(pd.DataFrame({"p": [2]}))
    >>> len(pd.concat([a, b]))  # attrs differ: dropped, no error
    2
    """

    __slots__ = ("frame",)
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def __eq__(self, other) -> bool:
        if isinstance(other, Attached):
            other = other.frame
        return isinstance(other, pd.DataFrame) and (other is self.frame or
                                                     self.frame.equals(other))

    def __deepcopy__(self, memo) -> Attached:
        return self

    def __copy__(self) -> Attached:
        return self

    def __getitem__(self, key):
        return self.frame[key]

    def __getattr__(self, name: str):
        return getattr(self.frame, name)

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        return repr(self.frame)


def attach(frame: pd.DataFrame) -> Attached:
    """Wrap a DataFrame for an episode table's ``attrs`` (see :class:`Attached`)."""
    return frame if isinstance(frame, Attached) else Attached(frame)


def attached(episodes: pd.DataFrame, key: str) -> pd.DataFrame | None:
    """The DataFrame stored under ``episodes.attrs[key]`` (wrapped or not), or None."""
    value = episodes.attrs.get(key)
    return value.frame if isinstance(value, Attached) else value
