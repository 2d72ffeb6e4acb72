"""The report always writes its HTML: a model that cannot be fitted becomes a section saying why."""

from __future__ import annotations

import html
import warnings

import numpy as np
import pandas as pd

import alliancetrack as at


def _flat_cohort(n=10, seed=2):
    """Rising alliance, no rupture at all: n_repaired and n_unrepaired are constant."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n):
        for s in range(1, 9):
            rows.append({"patient": p, "session": s, "therapist": p % 3,
                         "alliance": round(3 + 0.1 * s + float(rng.uniform(0, 0.05)), 3)})
    return pd.DataFrame(rows)


def test_constant_predictor_gives_a_section_naming_the_column(tmp_path):
    data = at.read_alliance(_flat_cohort(), therapist="therapist", scale="wai-sr")
    out = pd.DataFrame({"patient": range(10), "bdi_pre": np.linspace(20, 30, 10),
                        "bdi_post": np.linspace(10, 25, 10)})
    paths = at.write_report(data, tmp_path, outcomes=out, methods=["strauss-1sd"])
    page = paths["report"].read_text()
    assert "No outcome model was fitted" in page and "'n_repaired'" in html.unescape(page)
    assert not (tmp_path / "model.csv").exists()
    # the header is a readable summary, not a Python repr
    assert "10 patients (10 analysed, 0 excluded)" in page and "&lt;AllianceData" not in page


def test_stale_model_files_are_removed(tmp_path):
    (tmp_path / "model.csv").write_text("old")
    (tmp_path / "notes.txt").write_text("mine")
    data = at.read_alliance(_flat_cohort(), scale="wai-sr")
    at.write_report(data, tmp_path, methods=["strauss-1sd"])
    assert not (tmp_path / "model.csv").exists() and (tmp_path / "notes.txt").exists()


def test_singular_fit_is_flagged(tmp_path):
    """No therapist effect at all: the therapist variance is estimated at zero (singular)."""
    ex = at.datasets.load_example()
    small = ex.sessions[ex.sessions["patient"] <= 60]
    data = at.read_alliance(small, therapist="therapist", scale="wai-sr")
    rng = np.random.default_rng(3)
    oc = ex.outcomes.loc[ex.outcomes["patient"] <= 60, ["patient", "bdi_pre"]].copy()
    oc["bdi_post"] = 0.5 * oc["bdi_pre"] + rng.normal(0, 5, len(oc))
    pred = at.episode_predictors(data, at.detect_episodes(data, rule="stiles-2sd"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = at.outcome_model(pred, oc)
    page = at.write_report(data, tmp_path, outcomes=oc, methods=["stiles-2sd"])["report"]
    assert ("Singular fit" in page.read_text()) == bool(fit.fit.singular)
    assert fit.fit.singular, "the example should give a singular fit; pick another seed"


def test_hmm_on_a_small_cohort_is_a_note_not_an_abort(tmp_path):
    ex = at.datasets.load_example()
    tiny = at.read_alliance(ex.sessions[ex.sessions["patient"] <= 6], scale="wai-sr")
    # asked for explicitly, the HMM still becomes a note: the cohort is too small to fit
    paths = at.write_report(tiny, tmp_path / "tiny", methods=["stiles-2sd", "hmm"])
    page = html.unescape(paths["report"].read_text())
    assert "Not run: hmm:" in page and "at least 10 analysed patients" in page
    counts = pd.read_csv(paths["episode_counts"])
    assert counts["method"].tolist() == ["rules:stiles-2sd"]
    # only the HMM asked for, and it cannot run: the report says why no method ran
    try:
        at.write_report(tiny, tmp_path / "none", methods=["hmm"])
    except ValueError as exc:
        assert "no detection method could run" in str(exc) and "hmm" in str(exc)
    else:
        raise AssertionError("a report with no method that ran must be refused")
    # a cohort large enough to fit but small enough to warn: the warning is a caution
    small = at.read_alliance(ex.sessions[ex.sessions["patient"] <= 20], scale="wai-sr")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the HMM's warning does not escape write_report
        paths = at.write_report(small, tmp_path / "small", methods=["hmm"])
    page = html.unescape(paths["report"].read_text())
    assert "Caution: hmm: Only" in page
    assert pd.read_csv(paths["episode_counts"])["method"].tolist() == ["hmm"]
