"""The report always writes its HTML: a model that cannot be fitted becomes a section saying why."""

from __future__ import annotations

import html

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
