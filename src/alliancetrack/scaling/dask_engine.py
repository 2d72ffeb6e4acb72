"""Out-of-core and distributed episode detection with Dask (``alliancetrack[dask]``).

:func:`alliancetrack.detect_episodes` and :func:`alliancetrack.episode_predictors`
accept a :class:`dask.dataframe.DataFrame` in the canonical long format
(``patient, session, alliance`` and optionally ``therapist``, ``rater``) and
return Dask DataFrames.  Nothing is computed until you call ``.compute()``,
``.to_parquet()`` and so on, and only a few partitions are in memory at a time,
so the data may be larger than one machine's memory; with a
``dask.distributed`` client the partitions are processed on its cluster.

How it works
------------
1. **Each patient in one partition.**  The partitions' ranges of patient ids
   are read first (the ``patient`` column only).  If they do not overlap --
   data written in patient order, e.g. one Parquet file per block of
   patients -- the partitions are used as they are; otherwise the rows are
   hash-partitioned on ``patient`` (a Dask shuffle), which places every
   patient's rows in one partition.  ``assume_partitioned=True`` skips the
   check when you know the layout.
2. **Cohort-wide statistics first.**  A few rules measure the dip in units
   of the *sample* SD (``unit="sample_sd"``, ``"max_sd"``, and ``"rci"``
   without a normative SD on the scale), and change-point detection pools the
   noise SD of patients with short series.  These statistics are computed in
   one pass over all partitions (the SD from per-partition counts, means and
   sums of squares, combined exactly as Chan et al., 1979; the median of the
   reliable per-patient noise SDs from all of them) and passed to every
   partition, so the result does not depend on the partitioning.
3. **The in-memory engine per partition.**  Each partition is validated
   with :func:`alliancetrack.read_alliance` (the same checks and the same
   :class:`alliancetrack.AllianceDataError` messages; rows are named by the
   partition's index labels, i.e. the input's index, where the data came from
   a file: the row within that file's partition) and detected with
   :func:`alliancetrack.detect_episodes` in memory.

The results equal the in-memory results (``tests/test_dask.py`` checks this on
a ``LocalCluster``) up to row order: rows come partition by partition, sorted
by patient within each partition.  Sort by ``patient`` (and ``episode``) after
``compute()`` if you need the in-memory order.

See ``docs/scale.md`` for the command line (``alliancetrack detect --engine
dask``) and for connecting to an existing cluster.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import pandas as pd

from alliancetrack.detection.base import Detector
from alliancetrack.detection.detect import resolve_detector
from alliancetrack.detection.engines import Engine, register_engine
from alliancetrack.detection.episodes import empty_episodes
from alliancetrack.detection.segmentation import noise_statistics
from alliancetrack.errors import AllianceDataError
from alliancetrack.predictors import episode_definition, episode_predictors
from alliancetrack.reading.alliance import read_alliance
from alliancetrack.reading.scales import get_scale

__all__ = [
    "detect_episodes_dask",
    "episode_predictors_dask",
    "is_dask_dataframe",
    "partition_by_patient",
]

_CANONICAL = ("patient", "session", "alliance", "therapist", "rater")
_SD_UNITS = ("sample_sd", "max_sd", "rci")
# token of an episode collection made by detect_episodes_dask -> token of the partitioned
# data it was detected in (its partitions line up with the data's)
_MADE: OrderedDict[str, dict[str, Any]] = OrderedDict()
# token of a collection -> whether its partitions hold disjoint ranges of patient ids
_DISJOINT: OrderedDict[str, bool] = OrderedDict()


def _token(ddf: Any) -> str:
    """A deterministic key of a Dask collection (``dask.base.tokenize``, public API)."""
    from dask.base import tokenize  # noqa: PLC0415 - optional dependency, imported when used

    return tokenize(ddf)


def is_dask_dataframe(obj: Any) -> bool:
    """Whether ``obj`` is a Dask DataFrame (checked without importing Dask).

    Examples
    --------
    >>> import pandas as pd
    >>> is_dask_dataframe(pd.DataFrame())
    False
    """
    mod = type(obj).__module__ or ""
    return (
        mod.split(".")[0] in ("dask", "dask_expr")
        and hasattr(obj, "map_partitions")
        and hasattr(obj, "columns")
    )


def _require_dask() -> Any:
    try:
        import dask.dataframe as dd  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Dask input needs the optional dependencies: pip install 'alliancetrack[dask]'."
        ) from exc
    return dd


def _check_columns(ddf: Any) -> None:
    missing = [c for c in ("patient", "session", "alliance") if c not in ddf.columns]
    if missing:
        raise AllianceDataError(
            f"Column(s) {missing} not found. A Dask DataFrame must be in the canonical long "
            f"format (columns patient, session, alliance; optional therapist, rater); it has "
            f"columns {list(ddf.columns)}. Rename the columns first (ddf.rename(columns=...))."
        )


def _ranges(part: pd.DataFrame) -> pd.DataFrame:
    p = part["patient"]
    if len(p) == 0:
        return pd.DataFrame(
            {"lo": pd.Series([], dtype=p.dtype), "hi": pd.Series([], dtype=p.dtype)}
        )
    return pd.DataFrame({"lo": [p.min()], "hi": [p.max()]})


def _disjoint(ranges: pd.DataFrame) -> bool:
    """Whether per-partition [lo, hi] ranges of patient ids do not overlap."""
    if len(ranges) < 2:
        return True
    try:
        r = ranges.sort_values("lo", kind="stable")
        lo, hi = r["lo"].to_numpy(), r["hi"].to_numpy()
        return bool(np.all(lo[1:] > hi[:-1]))
    except TypeError:  # ids of mixed types: cannot be ordered
        return False


def partition_by_patient(
    data: Any, *, npartitions: int | None = None, assume_partitioned: bool = False
) -> Any:
    """Repartition so that each patient's rows live in exactly one partition.

    Partitions whose ranges of patient ids do not overlap are kept as they
    are (no data movement); otherwise the rows are hash-partitioned on
    ``patient`` with a Dask shuffle into ``npartitions`` partitions (default:
    as many as the input has).

    Parameters
    ----------
    data : dask.dataframe.DataFrame
        Canonical long data.
    npartitions : int, optional
        Number of partitions after a shuffle.
    assume_partitioned : bool
        Trust that the input is partitioned by patient already (skip the check).

    Returns
    -------
    dask.dataframe.DataFrame

    Examples
    --------
    >>> import pandas as pd, pytest
    >>> dd = pytest.importorskip("dask.dataframe")  # the alliancetrack[dask] extra
    >>> df = pd.DataFrame({"patient": [1, 2, 1, 2], "session": [1, 1, 2, 2],
    ...                    "alliance": [4.0, 3.0, 4.5, 3.5]})
    >>> parts = partition_by_patient(dd.from_pandas(df, npartitions=2))
    >>> per_partition = parts.map_partitions(lambda p: p[["patient"]].drop_duplicates())
    >>> per_partition.compute()["patient"].is_unique  # each patient in one partition
    True
    """
    _require_dask()
    _check_columns(data)
    if assume_partitioned:
        return data
    if npartitions is None:
        key = _token(data)
        disjoint = _DISJOINT.get(key)
        if disjoint is None:  # one pass over the patient column, remembered per collection
            meta = pd.DataFrame({"lo": data._meta["patient"], "hi": data._meta["patient"]})
            disjoint = _disjoint(data[["patient"]].map_partitions(_ranges, meta=meta).compute())
            _DISJOINT[key] = disjoint
            while len(_DISJOINT) > 64:
                _DISJOINT.popitem(last=False)
        if disjoint:
            return data
    n = int(npartitions or data.npartitions)
    return data.shuffle(on="patient", npartitions=n)


def _as_data(part: pd.DataFrame, scale: Any, min_timepoints: int) -> Any:
    cols = [c for c in _CANONICAL if c in part.columns]
    return read_alliance(
        part[cols],
        therapist="therapist" if "therapist" in part.columns else None,
        rater="rater" if "rater" in part.columns else None,
        scale=scale,
        min_timepoints=min_timepoints,
    )


def _rule_frame(data: Any, rule_obj: Any) -> pd.DataFrame:
    """The ratings the rules engine analyses (as in detect_episodes)."""
    extra = rule_obj.exclusions(data)
    frame = data.analysed_frame
    if len(extra):
        frame = frame.loc[~frame["patient"].isin(extra["patient"])]
    return frame


# --------------------------------------------------------------------------- pass 1: statistics
def _moments_part(part: pd.DataFrame, rule_obj: Any, scale: Any, min_tp: int) -> pd.DataFrame:
    if len(part) == 0:
        return pd.DataFrame({"n": [0.0], "mean": [0.0], "m2": [0.0]})
    x = _rule_frame(_as_data(part, scale, min_tp), rule_obj)["alliance"].dropna().to_numpy(float)
    m = float(x.mean()) if x.size else 0.0
    return pd.DataFrame({"n": [float(x.size)], "mean": [m], "m2": [float(((x - m) ** 2).sum())]})


def _combined_sd(moments: pd.DataFrame) -> float:
    """Sample SD from per-partition counts, means and sums of squares (Chan et al.)."""
    n_tot, mean, m2 = 0.0, 0.0, 0.0
    for n, mu, s in moments[["n", "mean", "m2"]].itertuples(index=False):
        if n == 0:
            continue
        delta = mu - mean
        tot = n_tot + n
        mean += delta * n / tot
        m2 += s + delta * delta * n_tot * n / tot
        n_tot = tot
    return float(np.sqrt(m2 / (n_tot - 1))) if n_tot > 1 else float("nan")


def _noise_part(part: pd.DataFrame, scale: Any, min_tp: int) -> pd.DataFrame:
    if len(part) == 0:
        return pd.DataFrame({"sd": pd.Series([], dtype=float), "top": pd.Series([], dtype=float)})
    sds, top = noise_statistics(_as_data(part, scale, min_tp))
    # one row per reliable SD; the partition's largest |score| rides along (NaN padding)
    out = pd.DataFrame({"sd": np.r_[sds, np.nan], "top": np.nan})
    out.loc[out.index[-1], "top"] = top
    return out


# --------------------------------------------------------------------------- pass 2: detection
def _empty_like_episodes(patient_dtype: Any) -> pd.DataFrame:
    e = empty_episodes(patient_dtype)
    e["patient"] = e["patient"].astype(patient_dtype)
    return e


def _detect_part(
    part: pd.DataFrame,
    detector: Detector,
    stats: dict,
    scale: Any,
    min_tp: int,
    patient_dtype: Any,
) -> pd.DataFrame:
    if len(part) == 0:
        return _empty_like_episodes(patient_dtype)
    ep = detector.detect(_as_data(part, scale, min_tp), **stats).copy()
    ep.attrs = {}
    ep["patient"] = ep["patient"].astype(patient_dtype)
    return ep


def _remember(key: str, info: dict[str, Any]) -> None:
    _MADE[key] = info
    while len(_MADE) > 64:
        _MADE.popitem(last=False)


def detect_episodes_dask(
    data: Any,
    method: str = "rules",
    rule: Any = None,
    *,
    scale: Any = None,
    data_min_timepoints: int = 3,
    npartitions: int | None = None,
    assume_partitioned: bool = False,
    **options: Any,
) -> Any:
    """Detect episodes in a Dask DataFrame, partition by partition.

    Called by :func:`alliancetrack.detect_episodes` for Dask input; the
    result equals the in-memory result on the same data (up to row order).

    Parameters
    ----------
    data : dask.dataframe.DataFrame
        Canonical long data (``patient, session, alliance``; optional
        ``therapist``, ``rater``).
    method, rule, **options
        As :func:`alliancetrack.detect_episodes` (``rule=None``: the method's
        default detector, ``"stiles-2sd"`` for the rules).
    scale : str or Scale, optional
        The instrument (range check; reliability for ``unit="rci"``), as
        ``read_alliance(..., scale=)``.
    data_min_timepoints : int
        ``min_timepoints`` of :func:`alliancetrack.read_alliance` (patients with
        fewer rated sessions are excluded from the data; ``min_timepoints`` in
        ``options`` is the rule's, as in memory).
    npartitions : int, optional
        Partitions after hash-partitioning by patient (forces the shuffle).
    assume_partitioned : bool
        The input holds each patient in one partition already (skip the check).

    Returns
    -------
    dask.dataframe.DataFrame
        The episode table (lazy), one output partition per input partition.

    Examples
    --------
    >>> import pandas as pd, pytest, alliancetrack as at
    >>> dd = pytest.importorskip("dask.dataframe")  # the alliancetrack[dask] extra
    >>> df = pd.DataFrame({"patient": 1, "session": range(1, 9),
    ...                    "alliance": [4.0, 4.1, 4.0, 2.5, 3.0, 4.1, 4.0, 4.2]})
    >>> ep = at.detect_episodes(dd.from_pandas(df, npartitions=1), rule="strauss-1sd")
    >>> ep.compute()[["patient", "rupture_session", "repair_session"]]
       patient  rupture_session  repair_session
    0        1              4.0             6.0
    """
    _require_dask()
    detector = resolve_detector(method, rule, **options)
    if detector.method not in ("rules", "changepoint"):
        raise AllianceDataError(
            f"method {detector.method!r} is not available for Dask input; use 'rules' or "
            "'changepoint'."
        )
    _check_columns(data)
    scale_obj = get_scale(scale)
    parts = partition_by_patient(
        data, npartitions=npartitions, assume_partitioned=assume_partitioned
    )
    patient_dtype = data._meta["patient"].dtype
    stats = _cohort_statistics(parts, detector, scale_obj, data_min_timepoints)
    meta = _empty_like_episodes(patient_dtype)
    out = parts.map_partitions(
        _detect_part,
        detector,
        stats,
        scale_obj,
        data_min_timepoints,
        patient_dtype,
        meta=meta,
        enforce_metadata=False,
    )
    _remember(
        _token(out),
        {"data_token": _token(parts), "scale": scale_obj, "min_timepoints": data_min_timepoints,
         "label": detector.label},
    )
    return out


def _cohort_statistics(parts: Any, detector: Detector, scale: Any, min_tp: int) -> dict:
    """Pass 1: the cohort-wide statistics a partition cannot compute alone."""
    if detector.method == "changepoint":
        meta = pd.DataFrame({"sd": pd.Series([], dtype=float), "top": pd.Series([], dtype=float)})
        noise = parts.map_partitions(_noise_part, scale, min_tp, meta=meta).compute()
        sds = noise["sd"].dropna().to_numpy()
        top = noise["top"].max()
        return {"noise_pool": (float(np.median(sds)) if sds.size else float("nan"),
                               float(top) if pd.notna(top) else 0.0)}
    needs_sd = detector.unit in _SD_UNITS and not (  # type: ignore[attr-defined]
        detector.unit == "rci" and scale is not None and scale.sd is not None  # type: ignore[attr-defined]
    )
    if not needs_sd:
        return {}
    meta = pd.DataFrame({c: pd.Series([], dtype=float) for c in ("n", "mean", "m2")})
    moments = parts.map_partitions(_moments_part, detector, scale, min_tp, meta=meta).compute()
    return {"sample_sd": _combined_sd(moments)}


# --------------------------------------------------------------------------- predictors
def _predictors_part(
    part: pd.DataFrame,
    ep: pd.DataFrame,
    label: Any,
    scale: Any,
    min_tp: int,
    patient_dtype: Any,
    meta: pd.DataFrame,
) -> pd.DataFrame:
    if len(part) == 0:
        if len(ep):
            raise AllianceDataError(
                f"Episodes name {ep['patient'].nunique()} patient(s) that are not in the data: "
                f"{', '.join(map(str, ep['patient'].unique()[:10]))}. Pass the same data the "
                "episodes were detected in."
            )
        return meta
    data = _as_data(part, scale, min_tp)
    # the exclusions are re-derived from the data and the label, as in memory
    out = episode_predictors(data, ep, detector=None if pd.isna(label) else label)
    out["patient"] = out["patient"].astype(patient_dtype)
    out["method"] = out["method"].astype(meta["method"].dtype)
    return out


def episode_predictors_dask(
    data: Any,
    episodes: Any,
    *,
    scale: Any = None,
    data_min_timepoints: int | None = None,
    npartitions: int | None = None,
    detector: Any = None,
) -> Any:
    """Per-patient predictors from a Dask DataFrame and its episodes.

    Called by :func:`alliancetrack.episode_predictors` for Dask input.  When
    ``episodes`` is the (unmodified) result of ``detect_episodes`` on ``data``
    its partitions line up with the data's and nothing moves; otherwise data
    and episodes are both hash-partitioned on ``patient``.

    Parameters
    ----------
    data : dask.dataframe.DataFrame
        The data the episodes were detected in.
    episodes : dask.dataframe.DataFrame or pandas.DataFrame
        The episode table.
    scale, data_min_timepoints : optional
        As in detection (by default those the episodes were detected with).
    npartitions : int, optional
        Partitions when both have to be hash-partitioned.
    detector : Detector or str, optional
        As :func:`alliancetrack.episode_predictors` (for a table without rows).

    Returns
    -------
    dask.dataframe.DataFrame
        One row per input patient (columns as the in-memory result).  Patients
        excluded by the detector (e.g. a rule's own ``min_timepoints``) are
        re-derived per partition from the data and the episode table's
        ``method`` label, as in memory.

    Examples
    --------
    >>> import pandas as pd, pytest, alliancetrack as at
    >>> dd = pytest.importorskip("dask.dataframe")  # the alliancetrack[dask] extra
    >>> ddf = dd.from_pandas(pd.DataFrame({"patient": [1] * 4, "session": [1, 2, 3, 4],
    ...                      "alliance": [4.0, 2.0, 4.0, 4.0]}), npartitions=1)
    >>> pred = at.episode_predictors(ddf, at.detect_episodes(ddf, rule="strauss-1sd"))
    >>> pred.compute()[["patient", "n_ruptures", "group"]]
       patient  n_ruptures     group
    0        1           1  repaired
    """
    dd = _require_dask()
    _check_columns(data)
    label = None
    if not is_dask_dataframe(episodes):
        if not isinstance(episodes, pd.DataFrame):
            raise AllianceDataError("episodes must be a DataFrame (pandas or Dask).")
        label, _ = episode_definition(episodes, detector)
        episodes = episodes.copy()
        episodes.attrs = {}
        episodes = dd.from_pandas(episodes, npartitions=max(1, data.npartitions))
    info = _MADE.get(_token(episodes))
    if label is None:  # a Dask episode table: its labels, or the one it was made with
        labels = episodes["method"].dropna().unique().compute().tolist()
        made = None if info is None else info["label"]
        label, _ = episode_definition(pd.DataFrame({"method": labels}), detector or made)
    patient_dtype = data._meta["patient"].dtype
    if info is not None:
        parts = partition_by_patient(data, npartitions=None, assume_partitioned=False)
        if _token(parts) != info["data_token"]:
            info = None
    if info is not None and episodes.npartitions == parts.npartitions:
        ep_parts = episodes
        scale = info["scale"] if scale is None else scale
        min_tp = info["min_timepoints"] if data_min_timepoints is None else data_min_timepoints
    else:
        n = int(npartitions or data.npartitions)
        parts = data.shuffle(on="patient", npartitions=n)
        ep_parts = episodes.shuffle(on="patient", npartitions=n)
        min_tp = 3 if data_min_timepoints is None else data_min_timepoints
    scale_obj = get_scale(scale)
    meta = _predictors_meta(data, episodes, label, scale_obj, min_tp, patient_dtype)
    return dd.map_partitions(
        _predictors_part,
        parts,
        ep_parts,
        label,
        scale_obj,
        min_tp,
        patient_dtype,
        meta,
        meta=meta,
        align_dataframes=False,
        enforce_metadata=False,
    )


def _predictors_meta(
    ddf: Any, episodes: Any, method: Any, scale: Any, min_tp: int, patient_dtype: Any
) -> pd.DataFrame:
    """Empty predictor table with the columns and dtypes the partitions give."""
    pid = ddf._meta_nonempty["patient"].iloc[0]
    level = float(scale.low) if scale is not None else 1.0
    n = max(min_tp, 1)
    sample = pd.DataFrame(
        {"patient": [pid] * n, "session": list(range(1, n + 1)), "alliance": [level] * n}
    )
    sample["patient"] = sample["patient"].astype(patient_dtype)
    data = _as_data(sample, scale, min_tp)
    ep = episodes._meta.iloc[:0].copy()
    out = episode_predictors(data, ep, detector=None if pd.isna(method) else method)
    out["patient"] = out["patient"].astype(patient_dtype)
    out["method"] = method
    return out.iloc[:0]


register_engine(Engine("dask", is_dask_dataframe, detect_episodes_dask, episode_predictors_dask))
