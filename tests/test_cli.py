"""The command line: sub-commands, one-line errors, demo outputs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import alliancetrack as at
from alliancetrack.cli import main
from alliancetrack.datasets import example_path


@pytest.fixture
def csv(tmp_path):
    df = pd.DataFrame({
        "id": ["a"] * 8 + ["b"] * 2,
        "sess": list(range(1, 9)) + [1, 2],
        "wai": [4.0, 4.1, 4.0, 2.5, 3.0, 4.1, 4.0, 4.2, 3.0, 3.1],
    })
    path = tmp_path / "ratings.csv"
    df.to_csv(path, index=False)
    return path


def test_detect_writes_the_episode_table(csv, tmp_path):
    out = tmp_path / "ep.csv"
    code = main(["detect", str(csv), "--patient", "id", "--session", "sess", "--score", "wai",
                 "--scale", "wai-sr", "--rule", "strauss-1sd", "--out", str(out)])
    assert code == 0
    ep = pd.read_csv(out)
    expected = at.detect_episodes(
        at.read_alliance(csv, patient="id", session="sess", score="wai", scale="wai-sr"),
        rule="strauss-1sd")
    assert ep.columns.tolist() == expected.columns.tolist()
    assert ep["rupture_session"].tolist() == expected["rupture_session"].tolist() == [4.0]


def test_rule_overrides_on_the_command_line(csv, tmp_path):
    out = tmp_path / "ep.csv"
    main(["detect", str(csv), "--patient", "id", "--session", "sess", "--score", "wai",
          "--rule", "strauss-1sd", "--set", "repair_window=1", "--out", str(out)])
    ep = pd.read_csv(out)
    assert ep["repaired"].tolist() == [False]  # repair came 2 sessions later


def test_predictors_keep_every_patient(csv, tmp_path):
    out = tmp_path / "pred.csv"
    assert main(["predictors", str(csv), "--patient", "id", "--session", "sess", "--score",
                 "wai", "--rule", "strauss-1sd", "--out", str(out)]) == 0
    pred = pd.read_csv(out)
    assert pred["patient"].tolist() == ["a", "b"]
    assert pred["status"].tolist() == ["analysed", "fewer than 3 rated sessions (2 rated)"]


def test_changepoint_method_from_the_command_line(tmp_path):
    out = tmp_path / "cp.csv"
    assert main(["detect", str(example_path()), "--therapist", "therapist", "--method",
                 "changepoint", "--out", str(out)]) == 0
    assert pd.read_csv(out)["method"].unique().tolist() == ["changepoint:l2"]



@pytest.mark.filterwarnings("ignore:sudden_changes. cutoff:UserWarning")
@pytest.mark.parametrize("method", ["hmm", "sudden"])
def test_model_and_sudden_methods_from_the_command_line(tmp_path, method):
    out = tmp_path / f"{method}.csv"
    extra = ["--set", "n_starts=1"] if method == "hmm" else []
    assert main(["detect", str(example_path()), "--therapist", "therapist", "--scale", "wai-sr",
                 "--method", method, *extra, "--out", str(out)]) == 0
    got = pd.read_csv(out)
    data = at.read_alliance(pd.read_csv(example_path()), therapist="therapist", scale="wai-sr")
    opts = {"n_starts": 1} if method == "hmm" else {}
    want = at.detect_episodes(data, method=method, **opts)
    assert len(got) == len(want) > 0
    assert got["method"].unique().tolist() == [want["method"].iloc[0]]
    if method == "hmm":
        assert want["method"].iloc[0] == "hmm[n_starts=1]"
        np.testing.assert_allclose(got["probability"], want["probability"], rtol=1e-6)
    key = ["patient", "rupture_session"]
    np.testing.assert_array_equal(got[key].to_numpy(dtype=float), want[key].to_numpy(dtype=float))


def test_detector_options_are_checked(capsys):
    code = main(["detect", str(example_path()), "--therapist", "therapist", "--method", "hmm",
                 "--set", "n_starts=0"])
    err = capsys.readouterr().err
    assert code == 2 and "n_starts" in err and "Traceback" not in err
    code = main(["detect", str(example_path()), "--method", "hmm", "--engine", "dask",
                 "--out", "unused-dir"])
    assert code == 2 and "--engine dask runs --method rules or changepoint" in (
        capsys.readouterr().err)


@pytest.mark.parametrize("args, words", [
    (["--score", "nope"], "Column(s) ['nope'] not found"),
    (["--rule", "strauss-1sd", "--set", "thresold=2"], "--set 'thresold=2'"),
    (["--rule", "strauss-1sd", "--set", "threshold=big"], "not a valid threshold"),
    (["--scale", "srs2"], "Unknown scale"),
])
def test_errors_are_one_line_without_traceback(csv, capsys, args, words):
    code = main(["detect", str(csv), "--patient", "id", "--session", "sess", "--score", "wai",
                 *args])
    err = capsys.readouterr().err
    assert code == 2
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_presets_lists_every_preset_with_citation(capsys):
    assert main(["presets"]) == 0
    text = capsys.readouterr().out
    for name, rule in at.PRESETS.items():
        assert name in text and rule.citation[:40] in text


def test_console_script_help_and_error_exit_code(tmp_path):
    run = subprocess.run([sys.executable, "-m", "alliancetrack.cli", "--help"],
                         capture_output=True, text=True)
    assert run.returncode == 0
    for sub in ("detect", "predictors", "presets", "demo", "sudden"):
        assert sub in run.stdout
    run = subprocess.run([sys.executable, "-m", "alliancetrack.cli", "detect",
                          str(tmp_path / "missing.csv")], capture_output=True, text=True)
    assert run.returncode == 2 and "File not found" in run.stderr
    assert "Traceback" not in run.stderr


def test_demo_writes_its_outputs(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    for name in ("episodes", "predictors", "agreement_with_truth", "excluded", "data_summary",
                 "strategies_linked", "strategy_effects"):
        assert (out / f"{name}.csv").exists()
    pred = pd.read_csv(out / "predictors.csv")
    ex = at.datasets.load_example()
    n_patients = ex.sessions["patient"].nunique()
    # every patient, once per method
    assert pred.groupby("method")["patient"].nunique().eq(n_patients).all()
    excluded = pd.read_csv(out / "excluded.csv")
    assert len(excluded) == 4
    agreement = pd.read_csv(out / "agreement_with_truth.csv")
    assert set(agreement["method"]) == ({f"rules:{p}" for p in at.PRESETS}
                                        | {"changepoint:l2", "hmm"})
    # the HMM's own figures against the planted episodes (same comparison as the demo's)
    ep = pd.read_csv(out / "episodes.csv")
    cmp = at.compare_episodes(ep.loc[ep["method"] == "hmm"], ex.truth, tolerance=1,
                              patients=at.read_alliance(ex.sessions, scale="wai-sr"))
    row = agreement.set_index("method").loc["hmm"]
    assert row["f1"] == pytest.approx(cmp.overall["f1"].iloc[0])


def test_import_is_light_and_every_public_name_resolves():
    code = ("import sys, alliancetrack as at; "
            "heavy = [m for m in ('plotnine', 'statsmodels', 'dask') if m in sys.modules]; "
            "missing = [n for n in at.__all__ if getattr(at, n, None) is None]; "
            "print(heavy, missing)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[] []"
    assert set(at._LAZY_NAMES) <= set(at.__all__)
