"""The whole pipeline on the bundled example data (``alliancetrack demo``)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from .compare import compare_episodes
from .data import read_alliance
from .datasets import load_example
from .detect import detect_episodes
from .predictors import episode_predictors
from .rules import PRESETS

__all__ = ["run_demo"]


def run_demo(out: str | Path = "demo-output", quiet: bool = False) -> dict[str, Path]:
    """Run detection, predictors, agreement and the outcome model on the example cohort.

    Writes into ``out``: ``data_summary.csv``, ``excluded.csv``,
    ``episodes.csv`` (every preset and change points), ``predictors.csv``
    (per patient and method), ``agreement_with_truth.csv`` (each method
    against the planted episodes), ``outcome_model.csv`` (the
    ``stiles-2sd`` predictors in the outcome model), figures when plotting
    is available, and ``README.txt`` saying what each file holds.

    Returns the paths written, by name.

    Examples
    --------
    >>> import tempfile
    >>> from alliancetrack.demo import run_demo
    >>> paths = run_demo(tempfile.mkdtemp(), quiet=True)
    >>> sorted(paths)[:3]
    ['README', 'agreement_with_truth', 'data_summary']
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = (lambda *a: None) if quiet else print
    ex = load_example()
    data = read_alliance(ex.sessions, therapist="therapist", scale="wai-sr")
    say(f"example data: {data!r}")
    written: dict[str, Path] = {}

    def save(name: str, df: pd.DataFrame) -> None:
        path = out / f"{name}.csv"
        df.to_csv(path, index=False)
        written[name] = path

    frame = data.frame
    save("data_summary", pd.DataFrame({
        "patients": [len(data.patients)],
        "analysed": [len(data.analysed_patients)],
        "excluded": [len(data.excluded)],
        "sessions": [len(frame)],
        "rated_sessions": [int(frame["alliance"].notna().sum())],
        "missing_ratings": [int(frame["alliance"].isna().sum())],
        "therapists": [frame["therapist"].nunique()],
    }))
    save("excluded", data.excluded)

    tables = {name: detect_episodes(data, rule=name) for name in PRESETS}
    tables["changepoint"] = detect_episodes(data, method="changepoint")
    episodes = pd.concat(tables.values(), ignore_index=True)
    save("episodes", episodes)
    predictors = pd.concat([episode_predictors(data, t) for t in tables.values()],
                           ignore_index=True)
    save("predictors", predictors)

    rows = []
    for name, table in tables.items():
        cmp = compare_episodes(table, ex.truth, tolerance=1, patients=data)
        overall = cmp.overall.iloc[0].to_dict() if isinstance(cmp.overall, pd.DataFrame) \
            else dict(cmp.overall)
        rows.append({"method": table["method"].iloc[0] if len(table) else name,
                     "episodes": len(table), **overall})
    agreement = pd.DataFrame(rows)
    save("agreement_with_truth", agreement)
    say(f"episodes found per method: {dict(zip(agreement['method'], agreement['episodes'], strict=True))}")

    try:
        from .outcome import outcome_model  # noqa: PLC0415
    except ImportError:  # pragma: no cover - modelling module not installed
        outcome_model = None
    if outcome_model is not None:
        stiles = predictors[predictors["method"] == "rules:stiles-2sd"]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = outcome_model(stiles, ex.outcomes, outcome="bdi_post", baseline="bdi_pre",
                                predictors=["n_repaired", "n_unrepaired"], groups="therapist")
        save("outcome_model", fit.coefs)
        save("outcome_model_dropped", fit.dropped)
        for w in caught:
            say(f"note: {w.message}")

    try:
        from . import plots  # noqa: PLC0415
    except ImportError:
        plots = None
    if plots is not None and hasattr(plots, "plot_trajectories"):
        stiles_ep = tables["stiles-2sd"]
        with_eps = stiles_ep["patient"].drop_duplicates().head(8).tolist()
        fig = plots.plot_trajectories(data, stiles_ep, patients=with_eps)
        path = out / "trajectories.png"
        fig.save(path, width=8, height=5, dpi=120, verbose=False)
        written["trajectories"] = path

    readme = out / "README.txt"
    readme.write_text(
        "alliancetrack demo on the bundled example cohort (WAI-SR, 154 patients).\n"
        "data_summary.csv        patients, sessions, missing ratings, exclusions\n"
        "excluded.csv            patients not analysed and why\n"
        "episodes.csv            episodes of every rule preset and the change-point method\n"
        "predictors.csv          one row per patient and method (counts, depth, timing, group)\n"
        "agreement_with_truth.csv  each method against the planted episodes\n"
        "outcome_model.csv       bdi_post ~ bdi_pre + n_repaired + n_unrepaired + (1|therapist)\n"
        "                        with stiles-2sd predictors; outcome_model_dropped.csv lists the\n"
        "                        patients not in the model and why\n"
        "trajectories.png        eight patients with their stiles-2sd episodes\n",
        encoding="utf-8",
    )
    written["README"] = readme
    say(f"wrote {len(written)} files to {out}")
    return written
