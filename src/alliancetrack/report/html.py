"""A self-contained HTML report of the whole analysis (``alliancetrack report``).

:func:`write_report` detects episodes with every rule preset, change
points and the cohort hidden Markov model (when the cohort is large enough
to fit it), compares the methods, computes per-patient predictors, fits the
outcome model when outcomes are given, draws the figures and writes
``report.html`` (figures embedded as base64 PNG, styles inline, no external
files) together with the CSV tables it shows.
"""

from __future__ import annotations

import base64
import io
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import jinja2
import markupsafe
import numpy as np
import pandas as pd

from alliancetrack._version import __version__
from alliancetrack.agreement.compare import compare_episodes
from alliancetrack.detection.detect import detect_episodes, resolve_detector
from alliancetrack.detection.rules import PRESETS
from alliancetrack.predictors import episode_predictors
from alliancetrack.reading.alliance import AllianceData, as_alliance_data, therapist_of

__all__ = ["write_report", "Progress", "format_value", "REPORT_FILES"]

CHANGEPOINT = "changepoint"
HMM = "hmm"
_MODEL_METHODS = (CHANGEPOINT, HMM)

#: Every file :func:`write_report` may write, relative to its folder (stale ones are removed).
REPORT_FILES = (
    "report.html", "data_summary.csv", "excluded.csv", "episodes.csv", "episode_counts.csv",
    "agreement.csv", "predictors.csv", "predictor_groups.csv", "predictors_primary.csv",
    "model.csv", "model_dropped.csv", "figures/trajectories.png", "figures/cohort.png",
    "figures/episode_summary.png", "figures/coefficients.png",
)


class Progress:
    """A progress bar on standard error (tqdm), drawn only on a terminal.

    Logs and pipes stay clean: when ``enabled`` is False or the stream is not
    a terminal nothing is written.

    Examples
    --------
    >>> import io
    >>> bar = Progress(3, stream=io.StringIO())   # not a TTY: prints nothing
    >>> bar.step("detecting"); bar.done()
    >>> bar.stream.getvalue()
    ''
    """

    def __init__(self, total: int, enabled: bool = True, stream=None):
        from tqdm.auto import tqdm  # noqa: PLC0415 - only when a report is written

        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.enabled = bool(enabled) and bool(isatty())
        self._bar = tqdm(total=max(1, int(total)), file=self.stream, disable=not self.enabled,
                         leave=True, dynamic_ncols=True, unit="step")

    def step(self, label: str) -> None:
        """Advance by one step, showing ``label``."""
        self._bar.set_description_str(label[:40], refresh=False)
        self._bar.update(1)

    def done(self) -> None:
        """Finish the bar."""
        self._bar.close()


def format_value(value) -> str:
    """How a cell is shown in the report: 3 decimals, scientific for tiny numbers.

    Examples
    --------
    >>> [format_value(v) for v in [3, 0.123456, 1.5e-12, float("nan"), True, "x"]]
    ['3', '0.123', '1.5e-12', '', 'True', 'x']
    """
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return ""
        if v == int(v) and abs(v) < 1e15:
            return str(int(v))
        if abs(v) < 0.001:
            return f"{v:.3g}"
        return f"{v:.3f}"
    return str(value)


def _table(df: pd.DataFrame, name: str, max_rows: int | None = None) -> dict:
    """A table for the template: name, column names, formatted cells, total rows."""
    rows = [[format_value(v) for v in rec] for rec in df.itertuples(index=False)]
    return {"name": name, "columns": [str(c) for c in df.columns],
            "rows": rows if max_rows is None else rows[:max_rows], "total": len(rows)}


def _html_table(df: pd.DataFrame, name: str) -> str:
    """A table as HTML (the template's table macro), for sections built in Python."""
    return _TABLE.render(t=_table(df, name))


def _figure_png(plot, path: Path, dpi: int = 150) -> str:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig = plot.draw()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    data = buf.getvalue()
    path.write_bytes(data)
    return base64.b64encode(data).decode("ascii")


_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("alliancetrack.report", "templates"),
    autoescape=jinja2.select_autoescape(["html", "html.j2"], default=True),
    trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined,
)


_TABLE = _TEMPLATES.from_string('{% from "macros.html.j2" import table %}{{ table(t) }}')


def _method_names(methods: Sequence[str] | None) -> list[str]:
    names = [*PRESETS, *_MODEL_METHODS] if methods is None else list(methods)
    bad = [m for m in names if m not in _MODEL_METHODS and m not in PRESETS]
    if bad:
        raise ValueError(f"unknown method(s) {bad}; use rule presets {list(PRESETS)}, "
                         f"{CHANGEPOINT!r} or {HMM!r}.")
    if not names:
        raise ValueError("give at least one method.")
    return names


def _data_summary(data: AllianceData) -> pd.DataFrame:
    frame = data.frame
    rated = frame.loc[frame["alliance"].notna()]
    per = rated.groupby("patient").size()
    return pd.DataFrame({
        "patients": [len(data.patients)],
        "analysed": [len(data.analysed_patients)],
        "excluded": [len(data.excluded)],
        "sessions": [len(frame)],
        "rated_sessions": [len(rated)],
        "missing_ratings": [int(frame["alliance"].isna().sum())],
        "sessions_per_patient_median": [float(per.median()) if len(per) else np.nan],
        "sessions_per_patient_min": [int(per.min()) if len(per) else 0],
        "sessions_per_patient_max": [int(per.max()) if len(per) else 0],
        "scale": [data.scale.name if data.scale is not None else ""],
    })


def _episode_counts(episodes: dict[str, pd.DataFrame]) -> pd.DataFrame:
    rows = []
    for label, ep in episodes.items():
        rep = ep["repaired"].astype(bool)
        rows.append({
            "method": label,
            "episodes": len(ep),
            "patients_with_rupture": ep["patient"].nunique(),
            "repaired": int(rep.sum()),
            "unrepaired": int((~rep).sum()),
            "censored": int(ep["censored"].astype(bool).sum()),
            "mean_depth": float(ep["depth"].mean()) if len(ep) else np.nan,
            "median_sessions_to_repair": float(ep["sessions_to_repair"].median())
            if rep.any() else np.nan,
        })
    return pd.DataFrame(rows)


def _agreement(episodes: dict[str, pd.DataFrame], data: AllianceData,
               tolerance: float) -> pd.DataFrame:
    labels = list(episodes)
    rows = []
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            res = compare_episodes(episodes[a], episodes[b], tolerance=tolerance,
                                   patients=data.analysed_patients)
            o = res.overall.iloc[0]
            rows.append({"method_a": a, "method_b": b, "n_episodes_a": int(o["n_episodes_a"]),
                         "n_episodes_b": int(o["n_episodes_b"]),
                         "n_matched": int(o["n_matched"]), "precision": o["precision"],
                         "recall": o["recall"], "f1": o["f1"], "kappa": o["kappa"],
                         "repaired_kappa": o["repaired_kappa"]})
    cols = ["method_a", "method_b", "n_episodes_a", "n_episodes_b", "n_matched", "precision",
            "recall", "f1", "kappa", "repaired_kappa"]
    return pd.DataFrame(rows, columns=cols)


def _trajectory_patients(pred: pd.DataFrame, k: int = 12, seed: int = 1) -> list:
    """Up to ``k`` patients, balanced over the three groups (reproducible)."""
    rng = np.random.default_rng(seed)
    analysed = pred.loc[pred["status"] == "analysed"]
    chosen: list = []
    groups = ["unrepaired", "repaired", "no_rupture"]
    per = max(1, k // len(groups))
    for g in groups:
        ids = analysed.loc[analysed["group"] == g, "patient"].tolist()
        if ids:
            take = rng.choice(len(ids), size=min(per, len(ids)), replace=False)
            chosen += [ids[i] for i in sorted(take)]
    rest = [p for p in analysed["patient"] if p not in set(chosen)]
    chosen += rest[: max(0, k - len(chosen))]
    order = {p: i for i, p in enumerate(pred["patient"])}
    return sorted(chosen, key=order.get)


def _model_problem(pred: pd.DataFrame, oc: pd.DataFrame, outcome: str,
                   baseline: str | None) -> str | None:
    """Why the outcome model cannot be fitted (a constant predictor, too few patients), or None."""
    cols = [*([baseline] if baseline else []), "n_repaired", "n_unrepaired"]
    left = pred.loc[pred["status"] == "analysed", ["patient", "n_repaired", "n_unrepaired"]]
    right = oc[["patient", *[c for c in (outcome, baseline) if c]]]
    m = left.merge(right, on="patient").dropna(subset=[outcome, *cols])
    if len(m) <= len(cols) + 1:
        return (f"only {len(m)} analysed patient(s) have {outcome!r}"
                + (f" and {baseline!r}" if baseline else "")
                + f", too few for {len(cols) + 1} coefficients.")
    for c in cols:
        values = m[c].unique()
        if len(values) == 1:
            return (f"column {c!r} has the same value ({format_value(values[0])}) for every "
                    f"patient in the model, so its effect cannot be estimated.")
    return None


def _model_section(pred: pd.DataFrame, oc: pd.DataFrame, outcome: str, baseline: str | None,
                   save) -> tuple[dict, object, dict]:
    """The outcome model for the template: the fit, or the reason why there is none."""
    from alliancetrack.models.outcome import outcome_model  # noqa: PLC0415

    problem = _model_problem(pred, oc, outcome, baseline)
    fit = None
    if problem is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = outcome_model(pred, oc, outcome=outcome, baseline=baseline,
                                    groups="therapist" if "therapist" in oc else None)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            problem = " ".join(str(exc).split())
    if fit is None:
        return {"problem": problem}, None, {}
    coefs, dropped = fit.coefs.copy(), fit.dropped.copy()
    save("model", coefs)
    save("model_dropped", dropped)
    notes = [str(n) for n in getattr(fit, "notes", [])]
    if getattr(fit.fit, "singular", False):
        notes.insert(0, "Singular fit: a variance component (therapist) is estimated at zero "
                     "or its correlations at +-1; the clustering adds nothing and the "
                     "standard errors rest on the boundary estimate.")
    methods = fit.fit.methods_text() if hasattr(fit.fit, "methods_text") else None
    model = {"problem": None, "kind": str(getattr(fit, "model", "")), "outcome": outcome,
             "baseline": baseline, "n": fit.n, "notes": notes, "methods": methods}
    return model, fit, {"model": _table(coefs, "model"),
                        "model_dropped": _table(dropped, "model_dropped")}


def _summary_text(data: AllianceData) -> str:
    """One readable line about the data, for the page header."""
    f = data.frame
    n_rated = int(f["alliance"].notna().sum())
    text = (f"{len(data.patients)} patients ({len(data.analysed_patients)} analysed, "
            f"{len(data.excluded)} excluded), {n_rated} ratings and "
            f"{int(f['alliance'].isna().sum())} missing, "
            + (f"scale {data.scale.name}" if data.scale is not None else "no scale given"))
    if "date" in f and f["date"].notna().any():
        text += (f", sessions dated {f['date'].min():%Y-%m-%d} to "
                 f"{f['date'].max():%Y-%m-%d}")
    return text


def write_report(
    data,
    out: str | Path,
    *,
    outcomes: pd.DataFrame | None = None,
    outcome: str = "bdi_post",
    baseline: str | None = "bdi_pre",
    methods: Sequence[str] | None = None,
    primary: str = "stiles-2sd",
    tolerance: float = 1,
    title: str = "alliancetrack report",
    progress: bool = False,
    strategy_codes=None,
    strategy_window: int = 0,
) -> dict[str, Path]:
    """Run the analysis and write ``report.html`` plus the CSV tables it shows.

    Parameters
    ----------
    data : AllianceData or DataFrame
        The ratings (from :func:`alliancetrack.read_alliance`).
    out : str or Path
        Output folder (created).
    outcomes : DataFrame, optional
        One row per patient with ``patient``, the outcome, the baseline and
        (for a mixed model) ``therapist``.  Without it, the model section says
        that no outcomes were given.
    outcome : str
        Outcome and baseline columns of ``outcomes``.
    baseline : str
        Outcome and baseline columns of ``outcomes``.
    methods : sequence of str, optional
        Rule presets, ``"changepoint"`` and/or ``"hmm"``; default all of
        them.  The hidden Markov model is fitted to the whole cohort: with
        too few analysed patients (fewer than 10) it is not run and the
        report says so ("Not run: ..."), even when asked for; its warnings
        (a small cohort, no convergence) are shown beside the episode
        counts.
    primary : str, default "stiles-2sd"
        The method whose predictors feed the outcome model and the
        trajectory and cohort figures.
    tolerance : float, default 1
        Sessions by which two methods' rupture sessions may differ and still
        match (:func:`alliancetrack.compare_episodes`).
    title : str
        Title of the report.
    progress : bool, default False
        Show a progress bar on standard error (only when it is a terminal).
    strategy_codes : ObserverData, optional
        3RS codes read with ``read_3rs(..., strategy=...)``: adds a "Repair
        strategies" section (:mod:`alliancetrack.report.strategies`).
    strategy_window : int, default 0
        Sessions after the rupture whose strategies count.

    Returns
    -------
    dict of str to Path
        Every file written, by name (``"report"`` is the HTML).

    Examples
    --------
    >>> import tempfile, alliancetrack as at
    >>> ex = at.datasets.load_example()
    >>> small = ex.sessions[ex.sessions["patient"] <= 24]
    >>> data = at.read_alliance(small, therapist="therapist", scale="wai-sr")
    >>> paths = at.write_report(data, tempfile.mkdtemp(), methods=["stiles-2sd", "changepoint"])
    >>> paths["report"].name, sorted(paths)[:3]
    ('report.html', ['agreement', 'data_summary', 'episode_counts'])
    """
    data = as_alliance_data(data)
    names = _method_names(methods)
    out = _prepare_folder(out)
    bar = Progress(len(names) + 3 + 4 + (1 if outcomes is not None else 0), enabled=progress)
    written: dict[str, Path] = {}
    tables: dict[str, dict] = {}

    def save(name: str, df: pd.DataFrame) -> None:
        path = out / f"{name}.csv"
        df.to_csv(path, index=False)
        written[name] = path
        tables[name] = _table(df, name)

    save("data_summary", _data_summary(data))
    save("excluded", data.excluded.copy())
    try:
        episodes, skipped, label_of, cautions = _detect_all(data, names, methods is not None,
                                                            bar)
    except ValueError:
        bar.done()
        raise
    if not episodes:
        bar.done()
        raise ValueError("no detection method could run: " + "; ".join(skipped))
    primary_label = label_of.get(primary, next(iter(episodes)))
    all_ep = pd.concat(list(episodes.values()), ignore_index=True)
    save("episodes", all_ep)
    save("episode_counts", _episode_counts(episodes))
    bar.step("agreement between methods")
    save("agreement", _agreement(episodes, data, tolerance))
    bar.step("per-patient predictors")
    pred = _predictor_tables(data, episodes, primary_label, save)

    model, fit = None, None
    if outcomes is not None:
        bar.step("outcome model")
        oc = _with_therapists(outcomes, data)
        model, fit, model_tables = _model_section(pred, oc, outcome, baseline, save)
        tables.update(model_tables)
    figures, notes = _figures(data, episodes[primary_label], all_ep, pred, fit, primary_label,
                              out, bar, written)
    strategies = None
    sections = list(_SECTIONS)
    if strategy_codes is not None:
        from alliancetrack.report.strategies import strategy_section  # noqa: PLC0415

        def figure(name: str, plot, caption: str) -> None:
            path = out / "figures" / f"{name}.png"
            figures.append({"name": name, "png": _figure_png(plot, path), "caption": caption})
            written[f"figure_{name}"] = path

        strategies = markupsafe.Markup(strategy_section(
            strategy_codes, data, strategy_window, save, _html_table, figure))
        sections.insert(-1, ("strategies", "Repair strategies"))
    page = _TEMPLATES.get_template("report.html.j2").render(
        title=title, css=_TEMPLATES.get_template("report.css").render(), version=__version__,
        summary_text=_summary_text(data), sections=sections, tables=tables, skipped=skipped,
        cautions=cautions,
        strategies=strategies,
        tolerance=f"{tolerance:g}", primary_label=primary_label, model=model,
        figures=figures, figure_notes=notes)
    bar.step("writing report.html")
    written["report"] = out / "report.html"
    written["report"].write_text(page, encoding="utf-8")
    bar.done()
    return written


def _prepare_folder(out: str | Path) -> Path:
    """The output folder, created, without a previous run's files (REPORT_FILES)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out={str(out)!r} is a file; write_report needs a folder.")
    (out / "figures").mkdir(parents=True, exist_ok=True)
    for name in REPORT_FILES:  # a previous run's files must not sit beside this report
        if (out / name).is_file():
            (out / name).unlink()
    return out


def _with_therapists(outcomes: pd.DataFrame, data: AllianceData) -> pd.DataFrame:
    """The outcomes with the therapist of each patient from the ratings, when they lack it."""
    oc = outcomes.copy()
    th = therapist_of(data.frame)
    if "therapist" not in oc and th is not None:
        oc["therapist"] = oc["patient"].map(th)
    return oc


_SECTIONS = [("data-summary", "Data summary"), ("episodes", "Episodes per method"),
             ("agreement", "Agreement between methods"),
             ("predictors", "Per-patient predictors"), ("model", "Outcome model"),
             ("figures", "Figures")]


def _detect_all(data: AllianceData, names: list[str], strict: bool, bar: Progress,
                ) -> tuple[dict[str, pd.DataFrame], list[str], dict[str, str], list[str]]:
    """Episodes of every method; a preset that cannot run is skipped (unless asked for).

    The HMM is skipped whenever the cohort is too small to fit (a property of
    the data, not of the request); its warnings are returned as cautions.
    """
    episodes: dict[str, pd.DataFrame] = {}
    skipped: list[str] = []
    cautions: list[str] = []
    label_of: dict[str, str] = {}
    for m in names:
        bar.step(f"detecting: {m}")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if m in _MODEL_METHODS:
                    ep = detect_episodes(data, method=m)
                else:
                    ep = detect_episodes(data, method="rules", rule=m)
        except ValueError as exc:  # e.g. rci without a scale reliability; HMM cohort too small
            if strict and m != HMM:
                raise
            skipped.append(f"{m}: {exc}")
            continue
        for w in caught:
            if m == HMM and issubclass(w.category, (UserWarning, RuntimeWarning)):
                cautions.append(f"{m}: {w.message}")
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        label = _default_label(m)
        # keep only the detector's label: an empty table still says which detector made it
        # (episode_predictors needs it for the detector's exclusions)
        det_label = ep.attrs.get("method") or (str(ep["method"].iloc[0]) if len(ep) else None)
        ep.attrs = {"method": det_label} if det_label else {}
        label_of[m] = label
        episodes[label] = ep
    return episodes, skipped, label_of, cautions


def _default_label(m: str) -> str:
    """The label of the detector the report runs for ``m`` (a preset name or a method)."""
    detector = resolve_detector(m) if m in _MODEL_METHODS else resolve_detector("rules", m)
    return detector.label


def _predictor_tables(data: AllianceData, episodes: dict[str, pd.DataFrame], primary_label: str,
                      save) -> pd.DataFrame:
    """Predictors of every method and their group sizes; returns the primary's predictors."""
    # the label names the detector even when a method found no episode (an empty table)
    preds = {lab: episode_predictors(data, ep, detector=lab) for lab, ep in episodes.items()}
    for lab, p in preds.items():
        p["method"] = lab
    predictors = pd.concat(list(preds.values()), ignore_index=True)
    save("predictors", predictors)
    group_counts = (
        predictors.assign(group=predictors["group"].astype(object).fillna("excluded"))
        .groupby(["method", "group"], sort=False).size().unstack(fill_value=0)
        .reindex(columns=["no_rupture", "repaired", "unrepaired", "excluded"], fill_value=0)
        .reindex(list(episodes)).reset_index()
    )
    group_counts.columns.name = None
    save("predictor_groups", group_counts)
    save("predictors_primary", preds[primary_label])
    return preds[primary_label]


def _figures(data: AllianceData, primary_ep: pd.DataFrame, all_ep: pd.DataFrame,
             pred: pd.DataFrame, fit, primary_label: str, out: Path, bar: Progress,
             written: dict[str, Path]) -> tuple[list[dict], list[str]]:
    """Draw the figures (PNG files and embedded base64); notes for figures left out."""
    from alliancetrack.plotting.trajectories import (  # noqa: PLC0415
        plot_coefficients,
        plot_cohort,
        plot_episode_summary,
        plot_trajectories,
    )

    figs: list[dict] = []
    notes: list[str] = []

    def figure(name: str, plot, caption: str) -> None:
        bar.step(f"figure: {name}")
        path = out / "figures" / f"{name}.png"
        figs.append({"name": name, "png": _figure_png(plot, path), "caption": caption})
        written[f"figure_{name}"] = path

    chosen = _trajectory_patients(pred)
    figure("trajectories", plot_trajectories(data, primary_ep, patients=chosen),
           f"Trajectories of {len(chosen)} patients (balanced over groups) with the episodes of "
           f"{primary_label}: shaded from rupture to repair (blue) or to the end of treatment "
           "when unrepaired (vermillion, cross at the rupture); dashed: pre-rupture level; "
           "ticks on the session axis: missing ratings.")
    figure("cohort", plot_cohort(data, pred),
           f"All trajectories (faint) and the mean per group ({primary_label}) with 95% "
           "confidence bands.")
    if len(all_ep):
        figure("episode_summary", plot_episode_summary(all_ep, data),
               "Depth, sessions to repair (repaired episodes) and timing (phase of treatment) "
               "of the episodes, by method.")
    else:
        notes.append("No method found any episode, so there is no episode summary.")
    if fit is not None:
        figure("coefficients", plot_coefficients(fit),
               "Outcome model coefficients with 95% confidence intervals.")
    return figs, notes
