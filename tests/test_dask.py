"""Dask engine: results on a 2-worker LocalCluster equal the in-memory results exactly."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import alliancetrack as at
from alliancetrack.scaling import dask_engine

dd = pytest.importorskip(
    "dask.dataframe", reason="the Dask engine needs the optional extra alliancetrack[dask]"
)
distributed = pytest.importorskip(
    "distributed", reason="the Dask tests run on a dask.distributed LocalCluster"
)


@pytest.fixture(scope="module")
def client():
    logging.getLogger("distributed.shuffle").setLevel(logging.ERROR)
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
    )
    with cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    sim = at.simulate_cohort(n_patients=240, n_sessions=(3, 16), seed=11, missing_rate=0.2)
    df = sim.sessions[["patient", "session", "alliance"]]
    # rows in random order, so the shuffle by patient is exercised
    return df.sample(frac=1.0, random_state=2).reset_index(drop=True)


def _sorted(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


def _same_episodes(got, expected: pd.DataFrame) -> None:
    got = got.compute() if hasattr(got, "compute") else got
    pd.testing.assert_frame_equal(
        _sorted(got, ["patient", "episode"]), _sorted(expected, ["patient", "episode"])
    )


@pytest.mark.parametrize(
    ("rule", "overrides"),
    [
        ("stiles-2sd", {}),
        ("gumz-2012", {}),  # max_sd: the cohort's sample SD
        ("stiles-2sd", {"unit": "sample_sd", "threshold": 1.5}),
        ("rci", {}),  # wai-sr has no normative SD: the sample SD
        ("strauss-1sd", {"min_timepoints": 6, "repair_window": 3}),  # rule exclusions
    ],
)
def test_rules_equal_in_memory(client, cohort, rule, overrides):
    ddf = dd.from_pandas(cohort, npartitions=4)
    data = at.read_alliance(cohort, scale="wai-sr")
    expected = at.detect_episodes(data, rule=rule, **overrides)
    got = at.detect_episodes(ddf, rule=rule, scale="wai-sr", **overrides)
    assert is_lazy(got)
    _same_episodes(got, expected)
    pred = at.episode_predictors(ddf, got)
    assert is_lazy(pred)
    pd.testing.assert_frame_equal(
        _sorted(pred.compute(), ["patient"]),
        _sorted(at.episode_predictors(data, expected), ["patient"]),
    )


def is_lazy(obj) -> bool:
    return dask_engine.is_dask_dataframe(obj)


def test_sample_sd_is_global_not_per_partition(client, cohort):
    """Per-partition sample SDs would differ; the engine uses the cohort's."""
    ddf = dd.from_pandas(cohort, npartitions=6)
    parts = dask_engine.partition_by_patient(ddf)
    sds = parts.map_partitions(lambda p: pd.Series([p["alliance"].std()])).compute()
    assert sds.nunique() > 1
    expected = at.detect_episodes(cohort, rule="gumz-2012", threshold=1.0)
    _same_episodes(at.detect_episodes(ddf, rule="gumz-2012", threshold=1.0), expected)


def test_changepoint_equals_in_memory(client, cohort):
    ddf = dd.from_pandas(cohort, npartitions=4)
    expected = at.detect_episodes(cohort, method="changepoint")
    got = at.detect_episodes(ddf, method="changepoint")
    _same_episodes(got, expected)
    pd.testing.assert_frame_equal(
        _sorted(at.episode_predictors(ddf, got).compute(), ["patient"]),
        _sorted(at.episode_predictors(cohort, expected), ["patient"]),
    )


def test_partitioned_input_is_not_shuffled_and_foreign_episodes_are(client, cohort):
    ordered = _sorted(cohort, ["patient", "session"])
    blocks = np.array_split(ordered["patient"].unique(), 3)  # whole patients per partition
    ddf = dd.concat(
        [dd.from_pandas(ordered[ordered["patient"].isin(b)], npartitions=1) for b in blocks]
    )
    parts = dask_engine.partition_by_patient(ddf)
    assert parts._name == ddf._name  # already one partition per block of patients
    expected = at.detect_episodes(ordered, rule="stiles-2sd")
    _same_episodes(at.detect_episodes(ddf, rule="stiles-2sd"), expected)
    # an episode table that did not come from this data: both are hash-partitioned
    plain = expected.copy()
    plain.attrs = {}
    foreign = dd.from_pandas(plain, npartitions=2)
    got = at.episode_predictors(ddf, foreign).compute()
    pd.testing.assert_frame_equal(
        _sorted(got, ["patient"]), _sorted(at.episode_predictors(ordered, expected), ["patient"])
    )
    # an in-memory episode table with a rule's own exclusions (attrs["excluded"])
    strict = at.detect_episodes(ordered, rule="stiles-2sd", min_timepoints=8)
    got = at.episode_predictors(ddf, strict).compute()
    want = at.episode_predictors(ordered, strict)
    assert want["status"].str.contains("rule 'stiles-2sd'").any()
    pd.testing.assert_frame_equal(_sorted(got, ["patient"]), _sorted(want, ["patient"]))
    # the exclusions come from the label in the method column, not from attrs
    saved = strict.copy()
    saved.attrs = {}
    got = at.episode_predictors(ddf, dd.from_pandas(saved, npartitions=2)).compute()
    pd.testing.assert_frame_equal(_sorted(got, ["patient"]), _sorted(want, ["patient"]))


def test_validation_errors_are_the_in_memory_ones(client, cohort):
    bad = pd.concat([cohort, cohort.iloc[[0]]], ignore_index=True)  # a duplicated rating
    with pytest.raises(at.AllianceDataError, match="duplicated patient/session"):
        at.detect_episodes(dd.from_pandas(bad, npartitions=3)).compute()
    with pytest.raises(at.AllianceDataError, match="canonical long format"):
        at.detect_episodes(dd.from_pandas(cohort.rename(columns={"alliance": "wai"}), 2))
    with pytest.raises(at.AllianceDataError, match="not available for Dask"):
        at.detect_episodes(dd.from_pandas(cohort, 2), method="self-report")


def test_cli_engine_dask_writes_parquet(tmp_path, cohort):
    src = tmp_path / "in"
    src.mkdir()
    cuts = np.linspace(0, len(cohort), 4).astype(int)
    for i in range(3):  # rows in random order: patients split across files
        cohort.iloc[cuts[i] : cuts[i + 1]].to_parquet(src / f"part-{i}.parquet", index=False)
    out = tmp_path / "episodes"
    cmd = [
        sys.executable,
        "-m",
        "alliancetrack.cli",
        "detect",
        str(src / "*.parquet"),
        "--engine",
        "dask",
        "--workers",
        "2",
        "--rule",
        "strauss-1sd",
        "--out",
        str(out),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    got = pd.read_parquet(out)
    expected = at.detect_episodes(cohort, rule="strauss-1sd")
    pd.testing.assert_frame_equal(
        _sorted(got, ["patient", "episode"]),
        _sorted(expected, ["patient", "episode"]),
        check_dtype=False,  # Parquet stores text columns as strings
    )
