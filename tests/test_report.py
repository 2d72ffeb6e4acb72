"""The HTML report: every section and figure present, numbers equal to the CSVs."""

from __future__ import annotations

import io
import math
from html.parser import HTMLParser

import pandas as pd
import pytest

import alliancetrack as at
from alliancetrack.cli import main
from alliancetrack.report.html import Progress

SECTIONS = ["data-summary", "episodes", "agreement", "predictors", "model", "figures"]


class ReportParser(HTMLParser):
    """Collect sections, figures (with their image source) and tables (cell text)."""

    def __init__(self):
        super().__init__()
        self.sections: list[str] = []
        self.figures: dict[str, str] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self.external: list[str] = []
        self._figure = None
        self._table = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id"))
        elif tag == "figure":
            self._figure = a.get("id")
        elif tag == "img":
            self.figures[self._figure] = a.get("src", "")
        elif tag in ("link", "script") and (a.get("href") or a.get("src")):
            self.external.append(a.get("href") or a.get("src"))
        elif tag == "table":
            self._table = a["data-csv"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append(self._cell)
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "figure":
            self._figure = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _same(cell: str, value) -> bool:
    if pd.isna(value):
        return cell == ""
    if isinstance(value, (bool,)) or str(value) in ("True", "False"):
        return cell == str(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return cell == str(value)
    return math.isclose(float(cell), v, rel_tol=1e-3, abs_tol=5e-4)


@pytest.fixture(scope="module")
def example_files(tmp_path_factory):
    ex = at.datasets.load_example()
    keep = ex.sessions["patient"] <= 40
    d = tmp_path_factory.mktemp("in")
    sessions = ex.sessions.loc[keep].rename(columns={"patient": "id", "alliance": "wai"})
    # one patient with too few ratings, to be reported as excluded
    sessions = pd.concat([sessions, pd.DataFrame({"id": [999, 999], "therapist": "T01",
                                                  "session": [1, 2], "wai": [4.0, 3.0]})])
    sessions.to_csv(d / "sessions.csv", index=False)
    ex.outcomes.rename(columns={"patient": "id"}).to_csv(d / "outcomes.csv", index=False)
    return d


@pytest.fixture(scope="module")
def report(example_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    rc = main(["report", str(example_files / "sessions.csv"), "--patient", "id", "--score", "wai",
               "--therapist", "therapist", "--scale", "wai-sr",
               "--outcomes", str(example_files / "outcomes.csv"), "--outcome", "bdi_post",
               "--baseline", "bdi_pre", "--out", str(out), "--quiet"])
    assert rc == 0
    parser = ReportParser()
    parser.feed((out / "report.html").read_text(encoding="utf-8"))
    return out, parser


def test_every_section_and_figure(report):
    out, parsed = report
    assert parsed.sections == SECTIONS
    assert set(parsed.figures) == {"figure-trajectories", "figure-cohort",
                                   "figure-episode_summary", "figure-coefficients"}
    for src in parsed.figures.values():
        assert src.startswith("data:image/png;base64,") and len(src) > 5000
    assert parsed.external == []  # self-contained
    for name in ("trajectories", "cohort", "episode_summary", "coefficients"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000


def test_tables_equal_csvs(report):
    out, parsed = report
    expected = {"data_summary", "excluded", "episode_counts", "agreement", "predictor_groups",
                "predictors_primary", "model", "model_dropped"}
    assert {f"{n}.csv" for n in expected} <= set(parsed.tables)
    for name, rows in parsed.tables.items():
        csv = pd.read_csv(out / name, keep_default_na=True)
        header, body = rows[0], rows[1:]
        assert header == list(csv.columns), name
        assert len(body) == len(csv), name
        for cells, rec in zip(body, csv.itertuples(index=False), strict=True):
            for cell, value in zip(cells, rec, strict=True):
                assert _same(cell, value), (name, cell, value)


def test_report_content(report):
    out, _ = report
    summary = pd.read_csv(out / "data_summary.csv").iloc[0]
    assert summary["patients"] == 41 and summary["excluded"] == 1
    assert pd.read_csv(out / "excluded.csv")["patient"].tolist() == [999]
    counts = pd.read_csv(out / "episode_counts.csv")
    assert counts["method"].tolist() == ([f"rules:{p}" for p in at.PRESETS]
                                         + ["changepoint:l2", "hmm"])
    episodes = pd.read_csv(out / "episodes.csv")
    assert episodes.groupby("method", sort=False).size().tolist() == counts["episodes"].tolist()
    agreement = pd.read_csv(out / "agreement.csv")
    assert len(agreement) == 6 * 5 // 2
    hmm = episodes.loc[episodes["method"] == "hmm"]
    assert hmm["probability"].between(0, 1).all()
    assert episodes.loc[episodes["method"] != "hmm", "probability"].isna().all()
    model = pd.read_csv(out / "model.csv")
    assert model["term"].tolist() == ["(Intercept)", "bdi_pre", "n_repaired", "n_unrepaired"]


def test_report_without_outcomes_and_errors(example_files, tmp_path, capsys):
    out = tmp_path / "r"
    rc = main(["report", str(example_files / "sessions.csv"), "--patient", "id", "--score",
               "wai", "--methods", "stiles-2sd", "changepoint", "--out", str(out), "--quiet"])
    assert rc == 0
    parsed = ReportParser()
    parsed.feed((out / "report.html").read_text(encoding="utf-8"))
    assert parsed.sections == SECTIONS
    assert "figure-coefficients" not in parsed.figures
    assert not (out / "model.csv").exists()
    rc = main(["report", str(example_files / "sessions.csv"), "--patient", "id", "--score",
               "wai", "--outcomes", str(tmp_path / "nope.csv"), "--out", str(out), "--quiet"])
    assert rc == 2 and "outcomes file not found" in capsys.readouterr().err


def test_progress_bar_only_on_tty():
    class TTY(io.StringIO):
        def isatty(self):
            return True

    tty = TTY()
    bar = Progress(2, stream=tty)
    bar.step("a")
    bar.step("b")
    bar.done()
    assert "[" in tty.getvalue() and "2/2" in tty.getvalue()
    quiet = Progress(2, enabled=False, stream=TTY())
    quiet.step("a")
    assert quiet.stream.getvalue() == ""


def test_outcome_model_section_has_methods_paragraph(report):
    """The report states the df method, estimator and software (issue 14)."""
    out, _ = report
    text = (out / "report.html").read_text(encoding="utf-8")
    assert "<b>Methods.</b>" in text
    assert "Satterthwaite" in text and "restricted maximum likelihood" in text
