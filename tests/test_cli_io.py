"""The command line on real-world files: safe outputs, one-line errors, summaries, formats."""

from __future__ import annotations

import pandas as pd
import pytest

from alliancetrack.cli import main


@pytest.fixture
def csv(tmp_path):
    df = pd.DataFrame({
        "patient": ["a"] * 8 + ["b"] * 8,
        "session": list(range(1, 9)) * 2,
        "alliance": [4.0, 4.1, 4.0, 2.5, 3.0, 4.1, 4.0, 4.2] * 2,
    })
    path = tmp_path / "ratings.csv"
    df.to_csv(path, index=False)
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def one_line_error(code, err):
    return code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_detect_never_writes_onto_its_input(csv, capsys):
    before = csv.read_bytes()
    for extra in ([], ["--force"]):
        code, _, err = run(capsys, "detect", csv, "--out", csv, *extra)
        assert one_line_error(code, err) and "input file" in err
    assert csv.read_bytes() == before


def test_existing_output_file_needs_force(csv, tmp_path, capsys):
    out = tmp_path / "ep.csv"
    out.write_text("keep me")
    code, _, err = run(capsys, "detect", csv, "--scale", "wai-sr", "--out", out)
    assert one_line_error(code, err) and "--force" in err and out.read_text() == "keep me"
    code, _, err = run(capsys, "detect", csv, "--scale", "wai-sr", "--out", out, "--force")
    assert code == 0 and "rupture_session" in out.read_text()


@pytest.mark.parametrize("cmd, target", [("detect", "dir"), ("predictors", "dir"),
                                         ("report", "file"), ("sudden", "file")])
def test_output_of_the_wrong_kind_is_a_one_line_error(csv, tmp_path, capsys, cmd, target):
    out = tmp_path / "x"
    if target == "dir":
        out.mkdir()
    else:
        out.write_text("x")
    extra = ["--cutoff", "1"] if cmd == "sudden" else []
    code, _, err = run(capsys, cmd, csv, "--scale", "wai-sr", "--out", out, *extra)
    assert one_line_error(code, err), err


def test_report_refuses_a_used_folder_and_force_clears_only_its_files(csv, tmp_path, capsys):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "model.csv").write_text("stale")
    (out / "model_dropped.csv").write_text("stale")
    (out / "my_notes.txt").write_text("mine")
    code, _, err = run(capsys, "report", csv, "--scale", "wai-sr", "--methods", "strauss-1sd",
                       "--out", out, "--quiet")
    assert one_line_error(code, err) and "not empty" in err
    code, _, err = run(capsys, "report", csv, "--scale", "wai-sr", "--methods", "strauss-1sd",
                       "--out", out, "--quiet", "--force")
    assert code == 0, err
    assert not (out / "model.csv").exists() and not (out / "model_dropped.csv").exists()
    assert (out / "my_notes.txt").read_text() == "mine" and (out / "report.html").exists()


def test_summary_line_and_all_excluded_exit(csv, tmp_path, capsys):
    code, _, err = run(capsys, "detect", csv, "--scale", "wai-sr", "--min-timepoints", "8")
    assert code == 0 and "2 patient(s) analysed, 0 excluded" in err
    code, _, err = run(capsys, "detect", csv, "--scale", "wai-sr", "--min-timepoints", "9")
    assert one_line_error(code, err) and "every patient (2) was excluded" in err


def test_missing_codes_sep_and_encoding_options(tmp_path, capsys):
    rows = "".join(f"José;{s};{v}\n" for s, v in enumerate([4, 4.1, -99, 2.5, 3, 4.1, 4], 1))
    p = tmp_path / "export.txt"
    p.write_bytes(("patient;session;alliance\n" + rows).encode("latin-1"))
    code, _, err = run(capsys, "detect", p)
    assert one_line_error(code, err) and "--encoding latin-1" in err
    code, _, err = run(capsys, "detect", p, "--encoding", "latin-1")
    assert one_line_error(code, err) and "--missing -99" in err
    code, out, err = run(capsys, "detect", p, "--encoding", "latin-1", "--missing", "-99",
                         "--sep", ";")
    assert code == 0, err
    assert "José" in out


def test_excel_hint_keeps_its_closing_quote(tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake(name, *a, **k):
        if name == "openpyxl":
            raise ImportError("no openpyxl")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    p = tmp_path / "r.xlsx"
    p.write_bytes(b"PK\x03\x04")
    code, _, err = run(capsys, "detect", p)
    assert one_line_error(code, err) and "pip install 'alliancetrack[excel]'" in err
