"""Regenerate the bundled example data: ``python -m alliancetrack.datasets.generate [DIR]``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from alliancetrack.datasets import EXAMPLE_FILES
from alliancetrack.simulation.cohort import simulate_cohort

#: The exact arguments the bundled files were made with.
EXAMPLE_ARGS = dict(n_patients=150, n_sessions=(8, 20), n_therapists=15, scale="wai-sr",
                    rupture_rate=0.06, repair_rate=0.7, depth=(0.8, 1.5), duration=(1, 3),
                    noise_sd=0.15, missing_rate=0.05, seed=2018)


#: Documented noise of the self-report (PSQ) and observer (3RS) tables (see README.md).
REPORTED_ARGS = dict(
    psq_patients=60,  # patients 1-60 answered the PSQ (patient and therapist)
    psq_missing=0.08,  # probability that a rater did not answer after a session
    sensitivity={"patient": 0.55, "therapist": 0.70, "observer": 0.85},
    false_positive={"patient": 0.04, "therapist": 0.08, "observer": 0.08},
    p_withdrawal=0.6,  # a true rupture is a withdrawal rupture (else confrontation)
    coded_patients=30,  # patients 1-30 have 3RS codes ...
    coded_share=0.5,  # ... for about half of their sessions
    segments=10,  # 5-minute segments per coded session
    resolution_coded=0.85,  # probability that a session with markers has a resolution rating
)

#: The invented strategy effect of ``example_strategies.csv`` (see README.md): per coded
#: session with markers, immediate uses ~ Poisson(immediate_rate) whatever the outcome,
#: expressive uses ~ Poisson(expressive_rate[repaired]), repaired = the coded resolution rating
#: is at least 4 (the observer default cutoff; the true repair when no rating was coded).
STRATEGY_ARGS = dict(
    immediate_rate=1.0,
    expressive_rate={True: 1.2, False: 0.4},  # odds of repair x3 per expressive use
    routine_rate=0.1,  # a coded session without markers holds one immediate strategy
)
_IMMEDIATE = ["clarify", "change_task", "rationale", "validate", "redirect"]
_EXPRESSIVE = ["invite", "acknowledge", "disclose", "link_therapy", "link_other", "explore_new"]

_MARKERS = {
    "withdrawal": ["denial", "minimal response", "abstract communication",
                   "avoidant storytelling", "deferential and appeasing", "content/affect split",
                   "self-criticism and/or hopelessness"],
    "confrontation": ["complaints about the therapist", "rejects therapist intervention",
                      "complaints about the activities of therapy",
                      "complaints about progress in therapy", "defends self against therapist",
                      "efforts to control the therapist"],
}


def reported_tables(sim, seed: int, args: dict = REPORTED_ARGS) -> dict[str, pd.DataFrame]:
    """PSQ answers and 3RS codes generated from the true episodes of ``sim``.

    A separate random stream (``seed``) so the alliance tables do not change.
    """
    rng = np.random.default_rng(seed)
    sens, fp = args["sensitivity"], args["false_positive"]
    truth = sim.truth.set_index(["patient", "rupture_session"])
    kinds = pd.Series(np.where(rng.random(len(truth)) < args["p_withdrawal"], "withdrawal",
                               "confrontation"), index=truth.index)
    sessions = sim.sessions[["patient", "session"]]

    def clip(x):
        return np.clip(np.round(x), 1, 5).astype(int)

    psq_rows = []
    for p, s in sessions[sessions["patient"] <= args["psq_patients"]].itertuples(index=False):
        key = (p, float(s))
        true = key in truth.index
        for rater in ("patient", "therapist"):
            row = {"patient": p, "session": s, "rater": rater}
            if rng.random() < args["psq_missing"]:
                psq_rows.append(row)  # not answered: empty items
                continue
            hit = rng.random() < (sens[rater] if true else fp[rater])
            kind = kinds[key] if true else "withdrawal" if rng.random() < 0.5 else "tension"
            depth = truth.loc[key, "depth"] if true else 0.5
            tension = hit and not (kind == "withdrawal" and rng.random() < 0.5)
            withdrawal = clip(rng.uniform(3, 5.5)) if hit and kind == "withdrawal" \
                else clip(rng.uniform(0.5, 2.49))
            row.update({"tension": "yes" if tension else "no",
                        "tension_intensity": clip(1 + 2 * depth + rng.normal(0, 0.7))
                        if tension else np.nan,
                        "withdrawal": withdrawal,
                        "withdrawal_intensity": clip(1 + 2 * depth + rng.normal(0, 0.7))
                        if withdrawal >= 3 else np.nan})
            if tension or withdrawal >= 3:
                good = bool(truth.loc[key, "repaired"]) if true else rng.random() < 0.7
                resolved = clip(rng.normal(4.3 if good else 2.3, 0.8))
                row.update({"addressed": clip(resolved + rng.normal(0, 1)),
                            "resolved": resolved})
            psq_rows.append(row)
    psq = pd.DataFrame(psq_rows, columns=["patient", "session", "rater", "tension",
                                          "tension_intensity", "withdrawal",
                                          "withdrawal_intensity", "addressed", "resolved"])
    for c in psq.columns[4:]:
        psq[c] = psq[c].astype("Int64")

    code_rows = []
    coded = sessions[sessions["patient"] <= args["coded_patients"]]
    for p, s in coded.itertuples(index=False):
        if rng.random() >= args["coded_share"]:
            continue  # not coded
        key = (p, float(s))
        true = key in truth.index
        hit = rng.random() < (sens["observer"] if true else fp["observer"])
        markers = {}
        if hit:
            kind = kinds[key] if true else "withdrawal"
            depth = truth.loc[key, "depth"] if true else 0.3
            for seg in rng.choice(np.arange(1, args["segments"] + 1),
                                  size=rng.integers(1, 4), replace=False):
                markers[int(seg)] = (kind, rng.choice(_MARKERS[kind]),
                                     int(clip(1 + 2 * depth + rng.normal(0, 0.7))))
        resolution = np.nan
        if markers and rng.random() < args["resolution_coded"]:
            good = bool(truth.loc[key, "repaired"]) if true else True
            resolution = int(clip(rng.normal(4.3 if good else 2.3, 0.8)))
        for seg in range(1, args["segments"] + 1):
            kind, name, sig = markers.get(seg, (None, None, np.nan))
            code_rows.append({"patient": p, "session": s, "segment": seg, "type": kind,
                              "marker": name, "significance": sig, "resolution": resolution})
    codes = pd.DataFrame(code_rows)
    for c in ("significance", "resolution"):
        codes[c] = codes[c].astype("Int64")
    return {"psq": psq, "observer": codes}


def strategy_codes(sim, codes: pd.DataFrame, seed, args: dict = STRATEGY_ARGS) -> pd.DataFrame:
    """3RS resolution strategies for the coded sessions of ``codes`` (the observer table).

    One row per strategy use: ``patient, session, segment, strategy``; a separate random stream
    (``seed``) so no other example table changes.  Strategies follow the first marker of a
    session; the number of expressive uses depends on whether the rupture was repaired (the
    coded resolution rating >= 4; without a rating the true episode's repair, false markers
    counting as repaired), the number of immediate uses does not.
    """
    rng = np.random.default_rng(seed)
    truth = sim.truth.set_index(["patient", "rupture_session"])["repaired"]
    rows = []
    for (p, s), seg in codes.groupby(["patient", "session"], sort=True):
        marked = seg.loc[seg["type"].notna(), "segment"]
        if len(marked):
            key = (p, float(s))
            res = seg["resolution"].dropna()
            repaired = bool(res.iloc[0] >= 4) if len(res) else (
                bool(truth[key]) if key in truth.index else True)
            n_imm = rng.poisson(args["immediate_rate"])
            n_exp = rng.poisson(args["expressive_rate"][repaired])
        else:
            n_imm, n_exp = int(rng.random() < args["routine_rate"]), 0
        first = int(marked.min()) if len(marked) else 1
        used = set()
        for pool, n in ((_IMMEDIATE, n_imm), (_EXPRESSIVE, n_exp)):
            for _ in range(n):
                segment, name = int(rng.integers(first, seg["segment"].max() + 1)), \
                    str(rng.choice(pool))
                if (segment, name) not in used:  # coded once per segment
                    used.add((segment, name))
                    rows.append({"patient": p, "session": s, "segment": segment,
                                 "strategy": name})
    return pd.DataFrame(rows, columns=["patient", "session", "segment", "strategy"]) \
        .sort_values(["patient", "session", "segment"], kind="stable").reset_index(drop=True)


def write_example(folder: Path) -> None:
    """Write the example CSVs into ``folder``."""
    sim = simulate_cohort(**EXAMPLE_ARGS)
    rng = np.random.default_rng(EXAMPLE_ARGS["seed"] + 1)
    # four early drop-outs with two rated sessions (excluded from episode detection); the
    # last two also lack a post-treatment BDI
    ids = np.arange(151, 155)
    dropouts = pd.DataFrame({
        "patient": np.repeat(ids, 2),
        "therapist": np.repeat([f"T{j:02d}" for j in (1, 4, 7, 10)], 2),
        "session": np.tile([1, 2], 4),
        "alliance": np.round(rng.normal(3.2, 0.4, 8) * 12) / 12,
    })
    outcomes = sim.outcomes[["patient", "therapist", "bdi_pre", "bdi_post"]]
    extra = pd.DataFrame({"patient": ids, "therapist": dropouts["therapist"].iloc[::2].to_numpy(),
                          "bdi_pre": np.round(rng.normal(26, 6, 4), 1),
                          "bdi_post": [round(rng.normal(22, 6), 1), round(rng.normal(22, 6), 1),
                                       np.nan, np.nan]})
    tables = {"sessions": pd.concat([sim.sessions, dropouts], ignore_index=True),
              "outcomes": pd.concat([outcomes, extra], ignore_index=True), "truth": sim.truth,
              **reported_tables(sim, seed=[EXAMPLE_ARGS["seed"], 10])}
    tables["strategies"] = strategy_codes(sim, tables["observer"],
                                          seed=[EXAMPLE_ARGS["seed"], 17])
    folder.mkdir(parents=True, exist_ok=True)
    for key, df in tables.items():
        df.to_csv(folder / EXAMPLE_FILES[key], index=False)


if __name__ == "__main__":  # pragma: no cover
    write_example(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
