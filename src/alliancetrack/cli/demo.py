"""The whole pipeline on the bundled example data (``alliancetrack demo``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from alliancetrack.cli.common import prepare_output_dir
from alliancetrack.datasets import load_example
from alliancetrack.reading.alliance import read_alliance
from alliancetrack.reading.reported import read_3rs

__all__ = ["run_demo"]

_README = """alliancetrack demo on the bundled example cohort (WAI-SR, 154 patients, of whom 4 early
drop-outs are excluded; simulated, so the true episodes are known).

report.html               the whole analysis in one page (open it in a browser)
data_summary.csv          patients, sessions, missing ratings, exclusions
excluded.csv              patients not analysed and why
episodes.csv              episodes of every rule preset, of change-point detection and of the
                          cohort hidden Markov model (hmm, with a posterior probability)
episode_counts.csv        episodes per method
agreement.csv             agreement between the methods
agreement_with_truth.csv  each method against the planted (true) episodes
predictors.csv            one row per patient and method (counts, depth, timing, group)
predictors_primary.csv    the same for stiles-2sd only; predictor_groups.csv: group sizes
model.csv                 bdi_post ~ bdi_pre + n_repaired + n_unrepaired + (1 | therapist)
                          with the stiles-2sd predictors; model_dropped.csv lists the patients
                          not in the model and why
strategies_linked.csv     3RS resolution strategies per observer episode (patients 1-30);
                          strategy_repair_rates.csv, strategy_effects.csv: repair by strategy
                          class (invented example effect; associations, see docs/strategies.md)
figures/                  the report's figures as PNG
"""


def run_demo(out: str | Path = "demo-output", quiet: bool = False,
             force: bool = False) -> dict[str, Path]:
    """Run the whole pipeline on the example cohort and write its outputs.

    Writes the HTML report of :func:`alliancetrack.write_report` with every
    detection method, the per-patient predictors and the outcome model, plus
    ``agreement_with_truth.csv`` (each method against the planted episodes,
    which only simulated data have) and ``README.txt`` saying what each file
    holds.  A non-empty ``out`` is refused unless ``force`` (which replaces
    only the demo's own files).

    Returns the paths written, by name.

    Examples
    --------
    >>> import tempfile
    >>> from alliancetrack.cli.demo import run_demo
    >>> paths = run_demo(tempfile.mkdtemp(), quiet=True)
    >>> paths["report"].name, paths["agreement_with_truth"].name
    ('report.html', 'agreement_with_truth.csv')
    """
    from alliancetrack.agreement.compare import compare_episodes  # noqa: PLC0415 - heavy modules only when used
    from alliancetrack.report.html import REPORT_FILES, write_report  # noqa: PLC0415

    out = prepare_output_dir(out, [*REPORT_FILES, "agreement_with_truth.csv", "README.txt"],
                             force)
    say = (lambda *a: None) if quiet else print
    ex = load_example()
    data = read_alliance(ex.sessions, therapist="therapist", scale="wai-sr")
    say(f"example data: {data!r}")
    codes = read_3rs(pd.concat([ex.observer, ex.strategies], ignore_index=True),
                     marker="marker", resolution="resolution", strategy="strategy",
                     patients=data.patients)
    written = write_report(data, out, outcomes=ex.outcomes, outcome="bdi_post",
                           baseline="bdi_pre", title="alliancetrack demo: example cohort",
                           progress=not quiet, strategy_codes=codes)

    episodes = pd.read_csv(written["episodes"])
    rows = []
    for method, table in episodes.groupby("method", sort=False):
        cmp = compare_episodes(table, ex.truth, tolerance=1, patients=data)
        rows.append({"method": method, **cmp.overall.iloc[0].to_dict()})
    agreement = pd.DataFrame(rows)
    written["agreement_with_truth"] = out / "agreement_with_truth.csv"
    agreement.to_csv(written["agreement_with_truth"], index=False)
    (out / "README.txt").write_text(_README, encoding="utf-8")
    written["README"] = out / "README.txt"
    for row in agreement.itertuples():
        say(f"{row.method:<20} {int(row.n_episodes_a):>4} episodes; against the truth: "
            f"precision {row.precision:.2f}, recall {row.recall:.2f}, F1 {row.f1:.2f}")
    say(f"wrote {len(written)} files to {out}; open {written['report']}")
    return written
