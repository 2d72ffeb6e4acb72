"""A self-contained HTML report of the whole analysis (``alliancetrack report``).

:func:`write_report` detects episodes with every rule preset and change
points, compares the methods, computes per-patient predictors, fits the
outcome model when outcomes are given, draws the figures and writes
``report.html`` (figures embedded as base64 PNG, styles inline, no external
files) together with the CSV tables it shows.
"""

from __future__ import annotations

import base64
import html
import io
import math
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from alliancetrack._version import __version__
from alliancetrack.agreement.compare import compare_episodes
from alliancetrack.detection.detect import detect_episodes
from alliancetrack.detection.rules import PRESETS
from alliancetrack.predictors import episode_predictors
from alliancetrack.reading.alliance import AllianceData, as_alliance_data

__all__ = ["write_report", "Progress", "format_value"]

CHANGEPOINT = "changepoint"


class Progress:
    """A plain-text progress bar on standard error.

    Drawn only when ``enabled`` and the stream is a terminal, so logs and
    pipes stay clean.

    Examples
    --------
    >>> import io
    >>> bar = Progress(3, stream=io.StringIO())   # not a TTY: prints nothing
    >>> bar.step("detecting"); bar.done()
    >>> bar.stream.getvalue()
    ''
    """

    def __init__(self, total: int, enabled: bool = True, stream=None, width: int = 28):
        self.total = max(1, int(total))
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.enabled = bool(enabled) and bool(isatty())
        self.width = width
        self.count = 0
        self.start = time.monotonic()

    def step(self, label: str) -> None:
        """Advance by one step, showing ``label``."""
        self.count = min(self.count + 1, self.total)
        if not self.enabled:
            return
        filled = round(self.width * self.count / self.total)
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.monotonic() - self.start
        self.stream.write(f"\r[{bar}] {self.count}/{self.total} {elapsed:5.1f}s {label[:40]:<40}")
        self.stream.flush()

    def done(self) -> None:
        """Finish the line."""
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


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


def _html_table(df: pd.DataFrame, name: str, max_rows: int | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for rec in df.itertuples(index=False):
        cells = "".join(f"<td>{html.escape(format_value(v))}</td>" for v in rec)
        rows.append(f"<tr>{cells}</tr>")
    note = ""
    if max_rows is not None and len(rows) > max_rows:
        note = (f'<p class="note">First {max_rows} of {len(rows)} rows shown; all rows are '
                f"in <code>{name}.csv</code>.</p>")
        rows = rows[:max_rows]
    return (f'<div class="scroll"><table class="data" id="table-{name}" data-csv="{name}.csv">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>{note}")


def _figure_png(plot, path: Path, dpi: int = 150) -> str:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig = plot.draw()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    data = buf.getvalue()
    path.write_bytes(data)
    return base64.b64encode(data).decode("ascii")


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
div.scroll{overflow-x:auto;max-width:100%}
table.data{border-collapse:collapse;font-size:.85em;margin:.6em 0}
table.data th,table.data td{border:1px solid #ddd;padding:.25em .5em;text-align:right}
table.data th{background:#f3f3f3}table.data td:first-child,table.data th:first-child{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#444}.note{font-size:.85em;color:#555}
nav a{margin-right:1em}details{margin:.5em 0}code{background:#f5f5f5;padding:0 .2em}
"""


def _method_names(methods: Sequence[str] | None) -> list[str]:
    names = list(PRESETS) + [CHANGEPOINT] if methods is None else list(methods)
    bad = [m for m in names if m != CHANGEPOINT and m not in PRESETS]
    if bad:
        raise ValueError(f"unknown method(s) {bad}; use rule presets {list(PRESETS)} or "
                         f"{CHANGEPOINT!r}.")
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
    outcome, baseline : str
        Outcome and baseline columns of ``outcomes``.
    methods : sequence of str, optional
        Rule presets and/or ``"changepoint"``; default every preset and
        change points.
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
    from alliancetrack.models.outcome import outcome_model  # noqa: PLC0415
    from alliancetrack.plotting.trajectories import (  # noqa: PLC0415
        plot_coefficients,
        plot_cohort,
        plot_episode_summary,
        plot_trajectories,
    )

    data = as_alliance_data(data)
    names = _method_names(methods)
    if primary not in names:
        primary = names[0]
    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    n_steps = len(names) + 3 + 4 + (1 if outcomes is not None else 0)
    bar = Progress(n_steps, enabled=progress)
    written: dict[str, Path] = {}

    def save(name: str, df: pd.DataFrame) -> None:
        path = out / f"{name}.csv"
        df.to_csv(path, index=False)
        written[name] = path

    # -- data summary
    summary = _data_summary(data)
    excluded = data.excluded.copy()
    save("data_summary", summary)
    save("excluded", excluded)

    # -- episodes
    episodes: dict[str, pd.DataFrame] = {}
    skipped: list[str] = []
    label_of: dict[str, str] = {}
    for m in list(names):
        bar.step(f"detecting: {m}")
        try:
            if m == CHANGEPOINT:
                ep = detect_episodes(data, method="changepoint")
            else:
                ep = detect_episodes(data, method="rules", rule=m)
        except ValueError as exc:  # e.g. rci without a scale reliability
            if methods is not None:
                bar.done()
                raise
            skipped.append(f"{m}: {exc}")
            names.remove(m)
            continue
        ep.attrs = {}
        label = f"rules:{m}" if m != CHANGEPOINT else "changepoint:l2"
        label_of[m] = label
        episodes[label] = ep
    if primary not in names:
        primary = names[0]
    labels = list(episodes)
    primary_label = label_of[primary]
    all_ep = pd.concat(list(episodes.values()), ignore_index=True)
    save("episodes", all_ep)
    counts = _episode_counts(episodes)
    save("episode_counts", counts)

    bar.step("agreement between methods")
    agreement = _agreement(episodes, data, tolerance)
    save("agreement", agreement)

    # -- predictors
    bar.step("per-patient predictors")
    preds = {lab: episode_predictors(data, ep) for lab, ep in episodes.items()}
    for lab, p in preds.items():
        p["method"] = lab
    predictors = pd.concat(list(preds.values()), ignore_index=True)
    save("predictors", predictors)
    pred = preds[primary_label]
    group_counts = (
        predictors.assign(group=predictors["group"].astype(object).fillna("excluded"))
        .groupby(["method", "group"], sort=False).size().unstack(fill_value=0)
        .reindex(columns=["no_rupture", "repaired", "unrepaired", "excluded"], fill_value=0)
        .reindex(labels).reset_index()
    )
    group_counts.columns.name = None
    save("predictor_groups", group_counts)

    # -- model
    model_html = ("<p>No outcomes were given (<code>--outcomes FILE --outcome COL "
                  "--baseline COL</code>), so no outcome model was fitted.</p>")
    fit = None
    if outcomes is not None:
        bar.step("outcome model")
        oc = outcomes.copy()
        if "therapist" not in oc and "therapist" in data.frame:
            th = data.frame.drop_duplicates("patient").set_index("patient")["therapist"]
            oc["therapist"] = oc["patient"].map(th)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = outcome_model(pred, oc, outcome=outcome, baseline=baseline,
                                groups="therapist" if "therapist" in oc else None)
        coefs = fit.coefs.copy()
        save("model", coefs)
        dropped = fit.dropped.copy()
        save("model_dropped", dropped)
        notes = "".join(f"<li>{html.escape(str(n))}</li>" for n in getattr(fit, "notes", []))
        methods = (
            f"<p class='methods'><b>Methods.</b> {html.escape(fit.fit.methods_text())}</p>"
            if hasattr(fit.fit, "methods_text")
            else ""
        )
        model_html = (
            f"<p>{html.escape(str(getattr(fit, 'model', '')))} model of "
            f"<code>{html.escape(outcome)}</code> on "
            + (f"<code>{html.escape(baseline)}</code>, " if baseline else "")
            + "<code>n_repaired</code> and <code>n_unrepaired</code> "
            f"(episodes of <code>{html.escape(primary_label)}</code>), "
            f"n = {fit.n} patients.</p>"
            + _html_table(coefs, "model")
            + methods
            + (f"<ul class='note'>{notes}</ul>" if notes else "")
            + "<h3>Patients not in the model</h3>" + _html_table(dropped, "model_dropped")
        )

    # -- figures
    figs: list[tuple[str, str, str]] = []

    def figure(name: str, plot, caption: str) -> None:
        bar.step(f"figure: {name}")
        path = out / "figures" / f"{name}.png"
        figs.append((name, _figure_png(plot, path), caption))
        written[f"figure_{name}"] = path

    chosen = _trajectory_patients(pred)
    figure("trajectories", plot_trajectories(data, episodes[primary_label], patients=chosen),
           f"Trajectories of {len(chosen)} patients (balanced over groups) with the episodes of "
           f"{primary_label}: shaded from rupture to repair (blue) or to the end of treatment "
           "when unrepaired (vermillion, cross at the rupture); dashed: pre-rupture level; "
           "ticks on the session axis: missing ratings.")
    figure("cohort", plot_cohort(data, pred),
           f"All trajectories (faint) and the mean per group ({primary_label}) with 95% "
           "confidence bands.")
    figure("episode_summary", plot_episode_summary(all_ep, data),
           "Depth, sessions to repair (repaired episodes) and timing (phase of treatment) of "
           "the episodes, by method.")
    if fit is not None:
        figure("coefficients", plot_coefficients(fit),
               "Outcome model coefficients with 95% confidence intervals.")

    strategy_html = None
    if strategy_codes is not None:
        from alliancetrack.report.strategies import strategy_section  # noqa: PLC0415

        strategy_html = strategy_section(strategy_codes, data, strategy_window, save,
                                         _html_table, figure)
    fig_html = "".join(
        f'<figure id="figure-{n}"><img alt="{n}" src="data:image/png;base64,{b64}">'
        f"<figcaption>{html.escape(c)}</figcaption></figure>" for n, b64, c in figs
    )

    sections = [
        ("data-summary", "Data summary",
         _html_table(summary, "data_summary")
         + "<h3>Excluded patients</h3>"
         + (_html_table(excluded, "excluded") if len(excluded)
            else "<p>No patient was excluded.</p>")),
        ("episodes", "Episodes per method",
         "<p>Every rule preset (see <code>alliancetrack presets</code>) and change-point "
         "detection. All episodes are in <code>episodes.csv</code>.</p>"
         + "".join(f"<p class='note'>Not run: {html.escape(t)}</p>" for t in skipped)
         + _html_table(counts, "episode_counts")),
        ("agreement", "Agreement between methods",
         f"<p>Episodes match when their rupture sessions differ by at most {tolerance:g} "
         "session(s); kappa is for &ldquo;patient has a rupture&rdquo;.</p>"
         + _html_table(agreement, "agreement")),
        ("predictors", "Per-patient predictors",
         "<p>Patients per group and method (a patient with any unrepaired rupture is "
         "&ldquo;unrepaired&rdquo;). All predictors are in <code>predictors.csv</code>.</p>"
         + _html_table(group_counts, "predictor_groups")
         + f"<details><summary>Predictors per patient ({html.escape(primary_label)})"
         "</summary>" + _html_table(pred, "predictors_primary") + "</details>"),
        ("model", "Outcome model", model_html),
        ("figures", "Figures", fig_html),
    ]
    if strategy_html is not None:
        sections.insert(-1, ("strategies", "Repair strategies", strategy_html))
    save("predictors_primary", pred)
    nav = "".join(f'<a href="#{sid}">{html.escape(t)}</a>' for sid, t, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{html.escape(t)}</h2>{content}</section>'
                   for sid, t, content in sections)
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class='note'>{html.escape(repr(data))}; "
        f"generated by alliancetrack {__version__}.</p><nav>{nav}</nav>{body}</body></html>"
    )
    bar.step("writing report.html")
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    written["report"] = path
    bar.done()
    return written
