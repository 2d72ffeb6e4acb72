"""Regenerate the tables and figures of docs/validation.md.

    python docs/make_validation.py [--n-jobs 2] [--quick]

Writes into docs/figures/: validation_f1.png, validation_table.csv,
validation_power.png, validation_power.csv, validation_null.csv,
validation_specification_curve.png, validation_sensitivity.csv, and
validation_summary.md (the Markdown tables quoted on the page).  Everything
is determined by the seeds below; results do not depend on --n-jobs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

import alliancetrack as at

FIGURES = Path(__file__).resolve().parent / "figures"
SEED = 2024


def markdown(df: pd.DataFrame, digits: int = 2) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = [f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="few simulations (a smoke test)")
    args = ap.parse_args()
    FIGURES.mkdir(exist_ok=True)
    quick = args.quick
    out: list[str] = []
    t0 = time.perf_counter()

    # 1. detection accuracy over noise x depth
    val = at.validation_study(noise_sd=[0.05, 0.1, 0.2, 0.3, 0.45], depth=[0.5, 1.0, 1.5],
                              n_patients=80 if quick else 200, n_reps=1 if quick else 2,
                              seed=SEED, n_jobs=args.n_jobs)
    val.table.round(4).to_csv(FIGURES / "validation_table.csv", index=False)
    val.plot().save(FIGURES / "validation_f1.png", width=8, height=3.4, dpi=100, verbose=False)
    for depth in (1.0, 0.5):
        f1 = val.table[val.table["depth"] == depth].pivot(index="noise_sd", columns="method",
                                                           values="f1")
        f1 = f1[val.settings["methods"]].reset_index()
        f1.insert(1, "SNR", depth / f1["noise_sd"])
        out += [f"### F1, dip depth {depth:g}", "", markdown(f1), ""]
    d1 = val.table[(val.table["depth"] == 1.0) & (val.table["noise_sd"] == 0.2)]
    out += ["### All metrics, depth 1, noise SD 0.2", "",
            markdown(d1[["method", "precision", "recall", "f1", "timing_error",
                         "timing_abs_error", "depth_bias", "repaired_accuracy",
                         "patient_kappa"]]), ""]
    print(f"validation study {time.perf_counter() - t0:.0f} s")

    # 2. power with detected vs true counts
    n_sims = 40 if quick else 300
    tables = []
    for det in ("stiles-2sd", "gumz-2012", "changepoint"):
        pw = at.power_analysis([50, 100, 200, 400], effect_r=0.29, detector=det,
                               n_sims=n_sims, seed=SEED, n_jobs=args.n_jobs)
        tables.append(pw.table)
        print(f"power {det} {time.perf_counter() - t0:.0f} s")
    power = pd.concat(tables, ignore_index=True)
    power.round(4).to_csv(FIGURES / "validation_power.csv", index=False)
    at.plot_power(power).save(FIGURES / "validation_power.png", width=8, height=3.4, dpi=100,
                              verbose=False)
    wide = power.pivot_table(index="n_patients", columns=["detector", "counts"], values="power")
    wide.columns = [f"{d} ({c})" for d, c in wide.columns]
    true_cols = [c for c in wide.columns if c.endswith("(true)")]
    wide = wide.drop(columns=true_cols[1:]).rename(columns={true_cols[0]: "true counts"})
    out += [f"### Power, effect r = 0.29, {n_sims} simulations per N", "",
            markdown(wide.reset_index()), ""]
    att = power[power["counts"] == "detected"][["detector", "n_patients", "mean_r",
                                                  "mean_count_corr"]]
    true_r = power[power["counts"] == "true"].groupby("n_patients")["mean_r"].first()
    att = att.assign(true_r=att["n_patients"].map(true_r))
    out += ["### Attenuation: mean estimated partial r with detected vs true counts", "",
            markdown(att, 3), ""]

    # 3. the null: type I error
    null_sims = 60 if quick else 600
    rows = []
    for det, test, sims in (("stiles-2sd", "ols", null_sims), ("changepoint", "ols", null_sims),
                            ("stiles-2sd", "mixed", null_sims // 3)):
        nl = at.power_analysis([50, 200], effect_r=0.0, detector=det, n_sims=sims,
                               seed=SEED + 1, n_jobs=args.n_jobs, test=test)
        rows.append(nl.table.assign(test=test))
        print(f"null {det} {test} {time.perf_counter() - t0:.0f} s")
    null = pd.concat(rows, ignore_index=True)
    null.round(4).to_csv(FIGURES / "validation_null.csv", index=False)
    out += ["### Rejection rate under the null (effect r = 0, alpha = .05)", "",
            markdown(null[["detector", "test", "n_patients", "counts", "power", "mc_se",
                           "n_sims"]], 3), ""]

    # 4. sensitivity to the rupture definition, bundled example cohort
    ex = at.datasets.load_example()
    data = at.read_alliance(ex.sessions, therapist="therapist", scale="wai-sr")
    sens = at.sensitivity_analysis(data, ex.outcomes)
    sens.table.round(4).to_csv(FIGURES / "validation_sensitivity.csv", index=False)
    sens.plot().save(FIGURES / "validation_specification_curve.png", width=6.5, height=3.8,
                     dpi=100, verbose=False)
    out += ["### Sensitivity: n_repaired in bdi_post ~ bdi_pre + n_repaired + n_unrepaired + "
            "(1 | therapist), example cohort", "",
            markdown(sens.table[["specification", "n_episodes", "n_repaired", "estimate",
                                 "ci_low", "ci_high", "p_value"]], 3), "",
            markdown(sens.summary, 3), ""]
    (FIGURES / "validation_summary.md").write_text("\n".join(out))
    print("\n".join(out))
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
