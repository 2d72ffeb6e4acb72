"""``alliancetrack validate``: the validation study on simulated cohorts with known truth.

Runs :func:`alliancetrack.validation_study` (every rule preset and the
change-point method over a grid of noise SD and dip depth) and writes
``validation_table.csv`` and ``validation_f1.png`` to ``--out``.  With
``--power`` it also runs :func:`alliancetrack.power_analysis` and writes
``power_table.csv``, ``power_simulations.csv`` and ``power.png``.
"""

from __future__ import annotations

import argparse

from alliancetrack.cli.common import prepare_output_dir

__all__ = ["register", "run"]


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") \
            from None


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") \
            from None


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``validate`` sub-command.

    Examples
    --------
    >>> import argparse
    >>> from alliancetrack.cli import validate
    >>> parser = argparse.ArgumentParser(prog="alliancetrack")
    >>> _ = validate.register(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["validate", "--out", "v", "--noise", "0.1,0.3"])
    >>> args.noise, args.depth, args.func is validate.run
    ([0.1, 0.3], [0.5, 1.0, 1.5], True)
    """
    p = subparsers.add_parser(
        "validate",
        help="validation study on simulated cohorts with known ruptures (and power analysis)",
        description="Simulate cohorts with known rupture-repair episodes over a grid of noise SD "
        "and dip depth, run every rule preset and the change-point method, and score them "
        "against the truth (precision, recall, F1, timing, depth, repair status). "
        "See docs/validation.md.",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--force", action="store_true",
                   help="replace this command's files in a non-empty output folder")
    p.add_argument("--noise", type=_floats, default=[0.1, 0.2, 0.3, 0.45],
                   help="noise SDs, comma-separated (default 0.1,0.2,0.3,0.45)")
    p.add_argument("--depth", type=_floats, default=[0.5, 1.0, 1.5],
                   help="dip depths in scale points, comma-separated (default 0.5,1,1.5)")
    p.add_argument("--n-patients", type=int, default=200,
                   help="patients per simulated cohort (default 200)")
    p.add_argument("--reps", type=int, default=1, help="cohorts per grid cell (default 1)")
    p.add_argument("--tolerance", type=float, default=1,
                   help="matching tolerance in sessions (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--n-jobs", type=int, default=1, help="processes (-1: all cores; default 1)")
    p.add_argument("--power", action="store_true", help="also run the power analysis")
    p.add_argument("--power-n", type=_ints, default=[50, 100, 200, 400],
                   help="cohort sizes for the power analysis (default 50,100,200,400)")
    p.add_argument("--effect-r", type=float, default=0.29,
                   help="standardized effect of the true repaired count (default 0.29)")
    p.add_argument("--detector", default="stiles-2sd",
                   help="detector for the power analysis: a preset or 'changepoint'")
    p.add_argument("--n-sims", type=int, default=200,
                   help="simulations per cohort size (default 200)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from alliancetrack.simulation.outcome_studies import power_analysis  # noqa: PLC0415 (statsmodels)
    from alliancetrack.simulation.studies import validation_study  # noqa: PLC0415 (statsmodels)

    out = prepare_output_dir(args.out, ["validation_table.csv", "validation_f1.png",
                                        "power_table.csv", "power_simulations.csv", "power.png"],
                             args.force)
    res = validation_study(args.noise, args.depth, n_patients=args.n_patients, n_reps=args.reps,
                           tolerance=args.tolerance, seed=args.seed, n_jobs=args.n_jobs)
    res.table.to_csv(out / "validation_table.csv", index=False)
    res.plot().save(out / "validation_f1.png", width=8, height=3.6, dpi=110, verbose=False)
    cols = ["noise_sd", "depth", "method", "precision", "recall", "f1"]
    print(res.table[cols].to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    written = ["validation_table.csv", "validation_f1.png"]
    if args.power:
        pw = power_analysis(args.power_n, effect_r=args.effect_r, detector=args.detector,
                            n_sims=args.n_sims, seed=args.seed, n_jobs=args.n_jobs)
        pw.table.to_csv(out / "power_table.csv", index=False)
        pw.simulations.to_csv(out / "power_simulations.csv", index=False)
        pw.plot().save(out / "power.png", width=5.5, height=3.6, dpi=110, verbose=False)
        print()
        print(pw.table[["n_patients", "counts", "power", "mc_se", "mean_r"]]
              .to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        written += ["power_table.csv", "power_simulations.csv", "power.png"]
    print(f"wrote {', '.join(written)} to {out}")
    return 0
