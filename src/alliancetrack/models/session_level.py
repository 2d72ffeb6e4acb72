"""Session-level helpers: within/between decomposition and lags within patient.

Does alliance in session *t* predict symptoms in session *t + 1*?
------------------------------------------------------------------
The recipe of Falkenström, Finkel, Sandell, Rubel & Holmqvist (2017), with the
disaggregation of Curran & Bauer (2011):

1. Split alliance into a **between-patient** part (the patient's mean over
   sessions) and a **within-patient** part (the session's deviation from that
   mean) with :func:`split_within_between`.  Only the within part answers the
   session-to-session question; the between part absorbs stable differences
   between patients (which are confounded with everything patients differ in).
2. Bring the next session's symptom score onto the current row with
   :func:`lag_within` and ``lag=-1`` (a *lead*), and the current symptom score
   as a control (the autoregressive term).  Lags are by *session number*: if
   session t + 1 was not attended or not rated the lead is missing rather than
   silently taken from session t + 2.
3. Fit ``symptom_next ~ alliance_within + alliance_between + symptom +
   session`` with a random intercept per patient, :func:`fit_mixed` with
   ``groups="patient"``.  The coefficient of ``alliance_within`` is the
   within-patient effect of this session's alliance on next session's
   symptoms, adjusted for current symptoms.

Caveats (Falkenström et al., 2017): person-mean centring of a lagged dependent
variable gives a small-T (Nickell) bias of order 1/T; with few sessions per
patient prefer centring the symptom control on its person mean too, or
detrending (``split_within_between(..., detrend=True)`` removes each
patient's linear trend over sessions from the within part), and report
sensitivity analyses.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alliancetrack.errors import AllianceDataError

__all__ = ["lag_within", "split_within_between"]


def _require(df: pd.DataFrame, cols: list[str]) -> None:
    if not isinstance(df, pd.DataFrame):
        raise AllianceDataError(f"expected a pandas DataFrame, got {type(df).__name__}.")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise AllianceDataError(
            f"column(s) {missing} not in the data (columns: {list(df.columns)}); "
            "pass the right names with patient=, session=, column=."
        )


def split_within_between(
    df: pd.DataFrame,
    column: str,
    patient: str = "patient",
    *,
    session: str = "session",
    center_between: bool = False,
    detrend: bool = False,
) -> pd.DataFrame:
    """Split a time-varying variable into between- and within-patient parts.

    ``<column>_between`` is the patient's mean of ``column`` over the rows
    where it is observed; ``<column>_within`` is ``column - <column>_between``
    (person-mean centring), so ``between + within == column`` wherever
    ``column`` is observed (Curran & Bauer, 2011; Falkenström et al., 2017).
    Rows where ``column`` is missing keep the patient's mean in ``_between``
    and get NaN in ``_within``.

    Parameters
    ----------
    df : pandas.DataFrame
        Long data, one row per patient and session.
    column : str
        The time-varying variable (e.g. ``"alliance"``).
    patient : str
        Patient id column.
    session : str
        Session column (only used with ``detrend=True``).
    center_between : bool
        Grand-mean centre the between part (mean of patient means), which
        makes the intercept refer to an average patient.
    detrend : bool
        Remove each patient's linear trend over sessions from the within part
        (``_within`` then holds the residuals of a per-patient regression of
        ``column`` on session; patients with fewer than 3 observed values are
        only mean-centred).  Recommended by Falkenström et al. (2017) when the
        variable trends over treatment.

    Returns
    -------
    pandas.DataFrame
        A copy of ``df`` with the two new columns.

    Examples
    --------
    >>> import pandas as pd
    >>> d = pd.DataFrame({"patient": [1, 1, 1, 2, 2], "session": [1, 2, 3, 1, 2],
    ...                   "alliance": [3.0, 4.0, 5.0, 2.0, None]})
    >>> split_within_between(d, "alliance")[["alliance_between", "alliance_within"]]
       alliance_between  alliance_within
    0               4.0             -1.0
    1               4.0              0.0
    2               4.0              1.0
    3               2.0              0.0
    4               2.0              NaN
    """
    _require(df, [patient, column, *([session] if detrend else [])])
    out = df.copy()
    x = pd.to_numeric(out[column], errors="coerce")
    if (x.isna() & out[column].notna()).any():
        raise AllianceDataError(f"column {column!r} must be numeric.")
    between = x.groupby(out[patient], sort=False).transform("mean")
    within = x - between
    if detrend:
        s = pd.to_numeric(out[session], errors="coerce")
        for _, idx in out.groupby(patient, sort=False).groups.items():
            ok = x.loc[idx].notna() & s.loc[idx].notna()
            ii = np.asarray(idx)[ok.to_numpy()]
            if len(ii) >= 3 and s.loc[ii].nunique() > 1:
                sv = s.loc[ii].to_numpy(float)
                slope = np.polyfit(sv, x.loc[ii].to_numpy(float), 1)[0]
                within.loc[ii] = within.loc[ii] - slope * (sv - sv.mean())
    if center_between:
        between = between - x.groupby(out[patient], sort=False).mean().mean()
    out[f"{column}_between"] = between
    out[f"{column}_within"] = within
    return out


def lag_within(
    df: pd.DataFrame,
    column: str,
    patient: str = "patient",
    session: str = "session",
    lag: int = 1,
    *,
    name: str | None = None,
) -> pd.DataFrame:
    """Lag (or lead) a variable by session number within patient.

    The new column holds, for each row, the value of ``column`` at session
    ``session - lag`` of the same patient.  **Lag means the previous session
    number, not the previous row**: when that session is absent from the data
    (not attended) or its value is missing, the lag is NaN, so a gap is never
    bridged silently.  ``lag=-1`` gives the *next* session's value (a lead),
    the outcome of "does alliance in session t predict symptoms in t + 1"
    (Falkenström et al., 2017; see the module docstring for the full recipe).

    Parameters
    ----------
    df : pandas.DataFrame
        Long data; one row per patient and session.
    column : str
        Variable to lag.
    patient, session : str
        Id and session-number columns.  Sessions must be numbers.
    lag : int
        Sessions to go back (negative: forward).
    name : str, optional
        Name of the new column; default ``f"{column}_lag{lag}"`` or
        ``f"{column}_lead{-lag}"``.

    Returns
    -------
    pandas.DataFrame
        A copy of ``df`` (same row order) with the new column.

    Examples
    --------
    >>> import pandas as pd
    >>> d = pd.DataFrame({"patient": [1, 1, 1, 1], "session": [1, 2, 4, 5],
    ...                   "bdi": [20.0, 18.0, 15.0, None]})
    >>> lag_within(d, "bdi")["bdi_lag1"].tolist()
    [nan, 20.0, nan, 15.0]
    >>> lag_within(d, "bdi", lag=-1)["bdi_lead1"].tolist()
    [18.0, nan, nan, nan]
    """
    _require(df, [patient, session, column])
    if not isinstance(lag, (int, np.integer)) or lag == 0:
        raise AllianceDataError(f"lag must be a non-zero integer number of sessions, got {lag!r}.")
    if not pd.api.types.is_numeric_dtype(df[session]):
        raise AllianceDataError(
            f"session column {session!r} must be numeric to lag by session number."
        )
    dup = df.duplicated([patient, session])
    if dup.any():
        bad = df.loc[dup, patient].unique()[:10]
        raise AllianceDataError(
            f"patients {list(bad)} have more than one row for the same {session!r}; "
            "aggregate raters or sessions first (one row per patient and session)."
        )
    if name is None:
        name = f"{column}_lag{lag}" if lag > 0 else f"{column}_lead{-lag}"
    src = df[[patient, session, column]].rename(columns={column: name})
    src = src.assign(**{session: src[session] + lag})
    out = df.copy()
    key = out[[patient, session]].merge(src, on=[patient, session], how="left")
    out[name] = key[name].to_numpy()
    return out
