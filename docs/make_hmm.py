"""Regenerate the tables and figure of docs/hmm.md (validation of the cohort HMM).

    python docs/make_hmm.py [--n-jobs 2] [--quick] [--hmm '{"decline": true}' --tag decline]
    python docs/make_hmm.py --tune

Writes into docs/figures/: hmm_f1.csv (every scenario x noise x depth x
method), hmm_defaults.csv (every scenario x noise x method at the simulator's
default dips), hmm_calibration.csv (reliability table per scenario, with
bootstrap intervals), hmm_calibration.png, and hmm_summary.md (the Markdown
tables quoted on the page); with ``--tag T`` the files are named hmm_f1_T.csv
and so on (the tables of an option set by ``--hmm``).  ``--tune`` only
compares temperatures of the averaging on the tuning cohorts
(hmm_temperature.csv and .md).  Everything is determined by the seeds below;
results do not depend on --n-jobs.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from make_validation import markdown  # the sibling script's table writer (run from docs/)

import alliancetrack as at
from alliancetrack.simulation.calibration import calibration_table

FIGURES = Path(__file__).resolve().parent / "figures"
SEED = 1818


def f1_study(quick: bool, n_jobs: int, hmm: dict) -> tuple[pd.DataFrame, str]:
    methods = [*at.PRESETS, "changepoint", {"label": "hmm", "method": "hmm", **hmm}]
    res = at.validation_study(noise_sd=[0.15, 0.25], depth=[0.8, 1.2], methods=methods,
                              scenarios=list(at.SCENARIOS), n_patients=80 if quick else 200,
                              n_reps=1 if quick else 2, seed=SEED, n_jobs=n_jobs)
    table = res.table
    wide = table.groupby(["scenario", "method"], sort=False)["f1"].mean().unstack("method")
    wide = wide[[m if isinstance(m, str) else m["label"] for m in methods]]
    others = wide.drop(columns="hmm")
    wide["best other"] = others.max(axis=1)
    wide["hmm - best other"] = wide["hmm"] - wide["best other"]
    cells = table.pivot_table(index=["scenario", "noise_sd", "depth"], columns="method",
                              values="f1", sort=False)
    margin = cells["hmm"] - cells.drop(columns="hmm").max(axis=1)
    text = ["### F1 per scenario (mean over noise SD 0.15, 0.25 x depth 0.8, 1.2)", "",
            markdown(wide.reset_index()), "",
            f"Smallest margin of hmm over the best other method in any single cell: "
            f"{margin.min():.3f} ({', '.join(map(str, margin.idxmin()))}).", "",
            "### hmm precision and recall per scenario", "",
            markdown(table[table["method"] == "hmm"].groupby("scenario", sort=False)
                     [["precision", "recall", "f1", "timing_abs_error"]].mean().reset_index())]
    return table, "\n".join(text)


def oracle_f1(scenario: str, noise: float, depth: float, seed: int, n: int = 200) -> float:
    """F1 of a detector told each patient's true stable level, the true dip and the noise law.

    The stable level comes from the same simulation without noise, rounding or clipping to
    the scale (same seed: the same random stream, so the same patients, episodes and
    declines), with the planted dips added back; a stable / rupture / persisting-rupture HMM
    with the true emission law, censored at the scale's floor and ceiling as the ratings
    are, is decoded by Viterbi.  An upper bound for detectors that must estimate the level.
    """
    from scipy import stats  # noqa: PLC0415

    from alliancetrack.detection.hmm_model import viterbi  # noqa: PLC0415

    kw = dict(noise_sd=noise, depth=depth, seed=seed, **at.SCENARIOS[scenario])
    sim = at.simulate_cohort(n, **kw)
    scale = sim.scale
    unbounded = at.Scale("unbounded", scale.low - 100, scale.high + 100)
    kw.setdefault("mean_level", scale.low + 0.65 * (scale.high - scale.low))  # as for wai-sr
    clean = at.simulate_cohort(n, grid=0.0, scale=unbounded, **{**kw, "noise_sd": 1e-12})
    X = sim.sessions.pivot(index="patient", columns="session", values="alliance").to_numpy()
    stable = clean.sessions.pivot(index="patient", columns="session",
                                  values="alliance").to_numpy().copy()
    for r in sim.truth.itertuples():
        end = int(r.repair_session) - 1 if r.repaired else X.shape[1]
        stable[r.patient - 1, int(r.rupture_session) - 1:end] += depth
    mu = np.stack([stable, stable - depth, stable - depth], axis=2)
    obs = np.isfinite(X)
    x = np.where(obs, X, 0.0)[:, :, None]
    df = at.SCENARIOS[scenario].get("noise_df")
    law = stats.t(df) if df else stats.norm()
    width = noise / np.sqrt(df / (df - 2)) if df else noise
    z = (x - mu) / width
    le = law.logpdf(z) - np.log(width)
    le = np.where(x >= scale.high - 1e-9, law.logsf((scale.high - mu) / width), le)
    le = np.where(x <= scale.low + 1e-9, law.logcdf((scale.low - mu) / width), le)
    le = np.where(obs[:, :, None], le, 0.0)
    trans = np.array([[0.94, 0.042, 0.018], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    ruptured = viterbi(le, np.array([1.0, 0.0, 0.0]), trans) > 0
    rows = []
    for i in range(len(X)):
        idx = np.flatnonzero(obs[i])
        st = ruptured[i, idx]
        onsets = idx[st & ~np.r_[False, st[:-1]]]
        rows += [{"patient": i + 1, "rupture_session": c + 1.0} for c in onsets]
    found = pd.DataFrame(rows, columns=["patient", "rupture_session"]).assign(
        method="oracle", repair_session=np.nan, repaired=False)
    return float(at.evaluate_detection(found, sim.truth)["f1"].iloc[0])


def oracle_study() -> str:
    """The oracle's F1 in every cell of the validation grid (2 cohorts per cell)."""
    rows = [{"scenario": sc, "noise_sd": s, "depth": d,
             "oracle f1": np.mean([oracle_f1(sc, s, d, SEED + r) for r in range(2)])}
            for sc in at.SCENARIOS for s in (0.15, 0.25) for d in (0.8, 1.2)]
    wide = pd.DataFrame(rows).pivot_table(index="scenario", columns=["noise_sd", "depth"],
                                          values="oracle f1", sort=False)
    wide.columns = [f"noise {a}, dip {b}" for a, b in wide.columns]
    return "### Oracle F1 (true stable level and dip known)\n\n" + markdown(wide.reset_index())


def defaults_study(quick: bool, hmm: dict) -> tuple[pd.DataFrame, str]:
    """Every method at the simulator's default dips (0.8-1.5, drawn per episode), noise SD
    0.15 (the default) and 0.2, per scenario: two cohorts of 400 patients each."""
    methods = {**{k: {"method": "rules", "rule": k} for k in at.PRESETS},
               "changepoint": {"method": "changepoint"}, "hmm": {"method": "hmm", **hmm}}
    rows = []
    for k, (name, settings) in enumerate(at.SCENARIOS.items()):
        for noise in (0.15, 0.2):
            for rep in range(1 if quick else 2):
                sim = at.simulate_cohort(80 if quick else 400, seed=SEED + 7 + 10 * k + rep,
                                         noise_sd=noise, **settings)
                data = at.read_alliance(sim.sessions, therapist="therapist", scale=sim.scale)
                for label, kw in methods.items():
                    ev = at.evaluate_detection(at.detect_episodes(data, **kw), sim.truth)
                    rows.append({"scenario": name, "noise_sd": noise, "rep": rep,
                                 "method": label, "f1": float(ev["f1"].iloc[0])})
    table = pd.DataFrame(rows)
    wide = table.pivot_table(index=["scenario", "noise_sd"], columns="method", values="f1",
                             sort=False)
    out = wide[["hmm"]].copy()
    out["best other"] = wide.drop(columns="hmm").max(axis=1)
    out["best other method"] = wide.drop(columns="hmm").idxmax(axis=1)
    out["hmm - best other"] = out["hmm"] - out["best other"]
    text = ("### F1 at the simulator's default dips (0.8-1.5 points)\n\n"
            + markdown(out.reset_index()))
    return table, text


#: Cohorts of 400 patients per scenario in the calibration study.
CALIBRATION_REPS = 4
#: The goal of issue 18: the observed share within this distance of the predicted probability.
BAND = 0.1


def calibration_runs(quick: bool, hmm: dict, seed: int = SEED
                     ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Reliability tables per scenario, their summary, and the pooled table (with intervals)."""
    rows, summary = [], []
    all_probs, all_truths = [], []
    for k, (name, settings) in enumerate(at.SCENARIOS.items()):
        probs, truths = [], []
        for rep in range(1 if quick else CALIBRATION_REPS):
            sim = at.simulate_cohort(150 if quick else 400, seed=seed + 10 * k + rep,
                                     noise_sd=0.2, **settings)
            data = at.read_alliance(sim.sessions, therapist="therapist", scale=sim.scale)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p = at.rupture_probabilities(data, **hmm)
            off = (k * 10 + rep) * 100_000  # keep scenarios' and replications' patients apart
            probs.append(p.assign(patient=p["patient"] + off))
            truths.append(sim.truth.assign(patient=sim.truth["patient"] + off))
        cal = calibration_table(pd.concat(probs), pd.concat(truths), bins=10, seed=seed)
        all_probs += probs
        all_truths += truths
        cal.insert(0, "scenario", name)
        rows.append(cal)
        mid = cal[(cal["mean_p"] > 0.05) & (cal["mean_p"] < 0.95)]
        big = cal[cal["n"] >= 30]
        middle = cal[(cal["bin_low"] > 0.05) & (cal["bin_low"] < 0.85)]  # bins 0.1-0.9
        off_band = big[big["gap"].abs() > BAND]
        clear = off_band[(off_band["ci_high"] < off_band["mean_p"] - BAND) |
                         (off_band["ci_low"] > off_band["mean_p"] + BAND)]
        summary.append({
            "scenario": name, "brier": cal.attrs["brier"],
            "sessions": int(cal["n"].sum()),
            "share p<0.05 or p>0.95": float(cal.loc[~cal.index.isin(mid.index), "n"].sum() /
                                            cal["n"].sum()),
            "top bin observed": float(cal.iloc[-1]["observed"]),
            "max |gap| (bins with n>=30)": float(big["gap"].abs().max()),
            "bins off by > 0.1": f"{len(off_band)} of {len(big)}",
            "of them, interval outside too": len(clear),
            "0.1-0.9: sessions": int(middle["n"].sum()),
            "0.1-0.9: mean p": float((middle["n"] * middle["mean_p"]).sum() / middle["n"].sum()),
            "0.1-0.9: observed": float((middle["n"] * middle["observed"]).sum() /
                                       middle["n"].sum()),
        })
    pooled = calibration_table(pd.concat(all_probs), pd.concat(all_truths), bins=10, seed=seed)
    return pd.concat(rows, ignore_index=True), pd.DataFrame(summary), pooled


def calibration_study(quick: bool, hmm: dict) -> tuple[pd.DataFrame, str]:
    table, summary, pooled = calibration_runs(quick, hmm)
    n_rep = 1 if quick else CALIBRATION_REPS
    pooled = pd.DataFrame({"bin": [f"{b:.1f}-{b + 0.1:.1f}" for b in pooled["bin_low"]],
                           "sessions": pooled["n"], "patients": pooled["n_patients"],
                           "mean p": pooled["mean_p"], "observed": pooled["observed"],
                           "95% interval": [f"{lo:.2f}-{hi:.2f}" for lo, hi in
                                            zip(pooled["ci_low"], pooled["ci_high"], strict=True)],
                           "gap": pooled["gap"]})
    text = ["### Calibration (reliability: mean predicted p vs observed share)", "",
            f"{n_rep} cohort(s) of {150 if quick else 400} patients per scenario, noise SD 0.2. "
            "Intervals: 95% bootstrap over patients (1000 resamples). 'Bins off by > 0.1': "
            "bins with 30 or more sessions whose observed share is more than 0.1 from their "
            "mean p; 'interval outside too': of those, the ones whose whole interval lies "
            "outside mean p +- 0.1. '0.1-0.9': all sessions given 0.1 to 0.9 together.", "",
            markdown(summary, digits=3), "",
            "Pooled over scenarios, by bin:", "", markdown(pooled)]
    return table, "\n".join(text)


#: Seed of the tuning cohorts on which the averaging's temperature is chosen (the validation
#: tables use SEED, so they are not the data the temperature was chosen on).
TUNE_SEED = 2424
#: Temperatures compared on the tuning cohorts: for the default model, and (fewer) for the
#: model without patients' own dips and for the plain chain.
TEMPERATURES = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
TEMPERATURES_OTHERS = (1.0, 2.0, 3.0)
#: The models compared.
TUNE_SETTINGS = (("default", {}, TEMPERATURES),
                 ("patient_dips=False", {"patient_dips": False}, TEMPERATURES_OTHERS),
                 ("decline=False, patient_dips=False", {"decline": False, "patient_dips": False},
                  TEMPERATURES_OTHERS))


def tuning_study(quick: bool) -> tuple[pd.DataFrame, str]:
    """Pooled calibration and Brier score per temperature, for the default model and two
    simpler ones."""
    rows = []
    for setting, base, temperatures in TUNE_SETTINGS:
        for t in temperatures:
            _, summary, pooled = calibration_runs(quick, {**base, "temperature": t},
                                                  seed=TUNE_SEED)
            mid = pooled[(pooled["bin_low"] > 0.05) & (pooled["bin_low"] < 0.85)]
            rows.append({"setting": setting, "temperature": t,
                         "mean |gap|": float((mid["gap"].abs() * mid["n"]).sum() /
                                             mid["n"].sum()),
                         "largest |gap|": float(mid["gap"].abs().max()),
                         "mean brier": float(summary["brier"].mean())})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    shown = table.assign(**{"mean |gap|": table["mean |gap|"].map("{:.4f}".format),
                            "largest |gap|": table["largest |gap|"].map("{:.4f}".format),
                            "mean brier": table["mean brier"].map("{:.7f}".format)})
    text = ["### Choosing the temperature (tuning cohorts, seed "
            f"{TUNE_SEED}; pooled 0.1-0.9 bins)", "", markdown(shown, digits=4)]
    return table, "\n".join(text)


def plot_calibration(table: pd.DataFrame):
    from plotnine import (  # noqa: PLC0415
        aes,
        facet_wrap,
        geom_abline,
        geom_errorbar,
        geom_line,
        geom_point,
        ggplot,
        labs,
        theme_bw,
    )

    return (ggplot(table, aes("mean_p", "observed"))
            + geom_abline(intercept=0, slope=1, linetype="dashed", color="grey")
            + geom_abline(intercept=BAND, slope=1, linetype="dotted", color="grey")
            + geom_abline(intercept=-BAND, slope=1, linetype="dotted", color="grey")
            + geom_errorbar(aes(ymin="ci_low", ymax="ci_high"), width=0.02, color="#555555")
            + geom_line() + geom_point(aes(size="np.log10(n)"))
            + facet_wrap("~scenario", ncol=3) + theme_bw()
            + labs(x="predicted probability of a rupture (bin mean)",
                   y="share of sessions truly in a rupture (95% interval over patients)",
                   size="log10 sessions"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="few simulations (a smoke test)")
    ap.add_argument("--hmm", default="{}", help="HMMDetector options as JSON (default: none)")
    ap.add_argument("--tag", default="", help="suffix of the output files (e.g. the option "
                    "set by --hmm), so that the default figures are kept")
    ap.add_argument("--tune", action="store_true", help="only the choice of the averaging's "
                    "temperature on the tuning cohorts (hmm_temperature.csv / .md)")
    args = ap.parse_args()
    hmm = json.loads(args.hmm)
    tag = f"_{args.tag}" if args.tag else ""
    FIGURES.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    if args.tune:
        tune, tune_text = tuning_study(args.quick)
        tune.round(7).to_csv(FIGURES / "hmm_temperature.csv", index=False)
        (FIGURES / "hmm_temperature.md").write_text(tune_text + "\n")
        print(tune_text)
        print(f"done in {time.perf_counter() - t0:.0f} s; seed {TUNE_SEED}")
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f1, f1_text = f1_study(args.quick, args.n_jobs, hmm)
    f1.round(4).to_csv(FIGURES / f"hmm_f1{tag}.csv", index=False)
    print(f1_text, flush=True)
    oracle_text = oracle_study()
    print(oracle_text, flush=True)
    f1_text += "\n\n" + oracle_text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dflt, dflt_text = defaults_study(args.quick, hmm)
    dflt.round(4).to_csv(FIGURES / f"hmm_defaults{tag}.csv", index=False)
    print(dflt_text, flush=True)
    f1_text += "\n\n" + dflt_text
    cal, cal_text = calibration_study(args.quick, hmm)
    cal.round(4).to_csv(FIGURES / f"hmm_calibration{tag}.csv", index=False)
    print(cal_text)
    plot_calibration(cal).save(FIGURES / f"hmm_calibration{tag}.png", width=8, height=5,
                               dpi=100, verbose=False)
    (FIGURES / f"hmm_summary{tag}.md").write_text(f1_text + "\n\n" + cal_text + "\n")
    print(f"done in {time.perf_counter() - t0:.0f} s; seed {SEED}; numpy {np.__version__}")


if __name__ == "__main__":
    main()
