"""Regenerate the agreement table and figures of docs/measuring-ruptures.md.

Run from the repository root: ``python docs/make_sources.py``.  Prints the
agreement table (Markdown) on the bundled example data and writes
``docs/figures/sources_agreement.csv``, ``sources_agreement.png`` and
``sources_timeline.png``.
"""

from __future__ import annotations

from pathlib import Path

import alliancetrack as at

OUT = Path(__file__).resolve().parent / "figures"
COLUMNS = ["source_a", "source_b", "n_patients", "n_sessions", "n_a", "n_b", "n_matched",
           "precision", "recall", "session_kappa", "patient_kappa", "group_kappa"]


def sources():
    ex = at.datasets.load_example()
    data = at.read_alliance(ex.sessions, therapist="therapist", scale="wai-sr")
    psq = at.read_psq(ex.psq, rater="rater", tension_intensity="tension_intensity",
                      withdrawal="withdrawal", withdrawal_intensity="withdrawal_intensity",
                      addressed="addressed", patients=data.patients)
    codes = at.read_3rs(ex.observer, marker="marker", resolution="resolution",
                        patients=data.patients)
    self_report = at.detect_episodes(psq, method="self-report")
    eps = {
        "truth": ex.truth,
        "scores": at.detect_episodes(data),  # stiles-2sd
        "patient PSQ": self_report[self_report["rater"] == "patient"],
        "therapist PSQ": self_report[self_report["rater"] == "therapist"],
        "3RS": at.detect_episodes(codes, method="observer"),
    }
    return data, eps


def main(out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data, eps = sources()
    tab = at.source_agreement(eps, coverage={"truth": data, "scores": data})
    tab.to_csv(out / "sources_agreement.csv", index=False)
    shown = tab[COLUMNS].round(2)
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in shown.itertuples(index=False):
        print("| " + " | ".join("–" if str(v) == "nan" else str(v) for v in row) + " |")
    observed = {k: v for k, v in eps.items() if k != "truth"}
    at.plot_source_agreement(tab[(tab["source_a"] != "truth")]).save(
        out / "sources_agreement.png", dpi=110, verbose=False)
    at.plot_sources_timeline(data, observed, patients=[1, 5, 6, 18],
                             coverage={"scores": data}).save(
        out / "sources_timeline.png", dpi=110, verbose=False)


if __name__ == "__main__":
    main()
