"""fit_mixed with lme4 random-effect terms against lme4 1.1-31, lmerTest and pbkrtest.

Reference values: tests/reference/lmm_reference.R (output lmm_reference.csv).
Tolerances (issue 14): fixed effects 1e-4 relative, SEs and variance SDs 1%,
logLik 0.01, df 2%.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import alliancetrack as at

REF = Path(__file__).resolve().parent / "reference"

MODELS = {
    "sleepstudy_reml": ("Reaction ~ Days + (Days | Subject)", "sleepstudy", True),
    "sleepstudy_ml": ("Reaction ~ Days + (Days | Subject)", "sleepstudy", False),
    "sleepstudy_uncorr": ("Reaction ~ Days + (Days || Subject)", "sleepstudy", True),
    "penicillin": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin", True),
    "pastes": ("strength ~ 1 + (1 | batch/cask)", "pastes", True),
    "cohort_reml": (
        "alliance ~ session * trained + (session | patient) + (1 | therapist)", "cohort", True
    ),
    "cohort_ml": (
        "alliance ~ session * trained + (session | patient) + (1 | therapist)", "cohort", False
    ),
    "cohort_uncorr": (
        "alliance ~ session * trained + (session || patient) + (1 | therapist)", "cohort", True
    ),
    "cohort_uncorr_ml": (
        "alliance ~ session * trained + (session || patient) + (1 | therapist)", "cohort", False
    ),
    "outcome8": ("bdi_post ~ bdi_pre + trained + (1 | therapist)", "outcome8", True),
}


@pytest.fixture(scope="module")
def ref() -> pd.DataFrame:
    return pd.read_csv(REF / "lmm_reference.csv")


def _data(name: str) -> pd.DataFrame:
    return pd.read_csv(REF / f"lmm_data_{name}.csv")


_FITS: dict[tuple[str, str], at.MixedResult] = {}


def _fit(model: str, ddf: str = "satterthwaite") -> at.MixedResult:
    key = (model, ddf)
    if key not in _FITS:
        formula, data, reml = MODELS[model]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no convergence or singular-fit warnings
            _FITS[key] = at.fit_mixed(formula, _data(data), reml=reml, ddf=ddf)
    return _FITS[key]


@pytest.mark.parametrize("model", list(MODELS))
def test_estimates_variances_loglik_and_satterthwaite(ref, model):
    fit = _fit(model)
    r = ref[ref["model"] == model]
    fx = r[r["kind"] == "fixed"].set_index("term")
    c = fit.coefs.set_index("term")
    assert list(c.index) == list(fx.index)
    np.testing.assert_allclose(c["estimate"], fx["estimate"], rtol=1e-4)
    np.testing.assert_allclose(c["se"], fx["se"], rtol=0.01)
    np.testing.assert_allclose(c["df"], fx["df_satt"], rtol=0.02)
    np.testing.assert_allclose(c["p_value"], fx["p_satt"], rtol=0.02, atol=1e-8)
    ll = r.loc[r["term"] == "logLik", "estimate"].item()
    assert fit.llf == pytest.approx(ll, abs=0.01)
    assert fit.converged and not fit.singular
    # variance table: SDs in lme4's order, then correlations
    sd_ref = r[r["kind"] == "sd"]
    v = fit.variance
    sds = v[v["term2"].isna()]
    assert list(sds["group"]) == list(sd_ref["term"])
    np.testing.assert_allclose(sds["sd"], sd_ref["estimate"], rtol=0.01)
    corr_ref = r[r["kind"] == "corr"]
    np.testing.assert_allclose(v["corr"].dropna(), corr_ref["estimate"], atol=0.01)


@pytest.mark.parametrize(
    "model", ["sleepstudy_reml", "penicillin", "pastes", "cohort_reml", "outcome8"]
)
def test_kenward_roger_matches_pbkrtest(ref, model):
    fit = _fit(model, "kenward-roger")
    fx = ref[(ref["model"] == model) & (ref["kind"] == "fixed")].set_index("term")
    c = fit.coefs.set_index("term")
    np.testing.assert_allclose(c["se"], fx["se_kr"], rtol=0.01)
    np.testing.assert_allclose(c["df"], fx["df_kr"], rtol=0.02)
    np.testing.assert_allclose(c["p_value"], fx["p_kr"], rtol=0.02, atol=1e-8)
    assert fit.ddf == "kenward-roger"


def test_engines_and_group_names():
    assert _fit("sleepstudy_reml").engine == "fast"
    assert _fit("pastes").engine == "blocked"
    assert list(_fit("pastes").variance["group"]) == ["cask:batch", "batch", "Residual"]
    assert _fit("sleepstudy_uncorr").variance["group"].tolist()[:2] == ["Subject", "Subject.1"]
    assert _fit("cohort_reml").group_sizes == {"patient": 72, "therapist": 12}


def test_lrt_against_lme4_anova(ref):
    row = ref[ref["model"] == "cohort_uncorr_vs_corr"].iloc[0]
    tab = _fit("cohort_uncorr").compare(_fit("cohort_reml"), refit=True)  # as lme4's anova
    assert tab["chisq"].iloc[1] == pytest.approx(row["estimate"], abs=0.01)
    assert tab["df"].iloc[1] == row["df_satt"]
    assert tab["p_value"].iloc[1] == pytest.approx(row["p_satt"], rel=0.01)
    assert tab["refitted_ml"].all()
    # same fixed effects: by default the REML likelihoods are compared (no refit)
    tab2 = _fit("cohort_reml").compare(_fit("cohort_uncorr"))
    ll = ref[ref["term"] == "logLik"].set_index("model")["estimate"]
    assert tab2["chisq"].iloc[1] == pytest.approx(
        2 * (ll["cohort_reml"] - ll["cohort_uncorr"]), abs=0.01
    )
    assert not tab2["refitted_ml"].any()


def test_lrt_refits_ml_when_fixed_effects_differ(ref):
    row = ref[ref["model"] == "outcome8_trained"].iloc[0]
    d = _data("outcome8")
    small = at.fit_mixed("bdi_post ~ bdi_pre + (1 | therapist)", d)
    tab = small.compare(_fit("outcome8"))
    assert tab["refitted_ml"].all()
    assert tab["chisq"].iloc[1] == pytest.approx(row["estimate"], abs=0.01)
    assert tab["p_value"].iloc[1] == pytest.approx(row["p_satt"], rel=0.01)


def test_eight_therapist_inference_uses_satterthwaite(ref):
    """The therapist-level predictor's test, CI and effect size use its ~6 df, not n - p."""
    fit = _fit("outcome8")
    c = fit.coefs.set_index("term").loc["trained"]
    fx = ref[(ref["model"] == "outcome8") & (ref["term"] == "trained")].iloc[0]
    assert c["df"] == pytest.approx(fx["df_satt"], rel=0.02)
    from scipy import stats

    q = stats.t.ppf(0.975, c["df"])
    assert c["ci_low"] == pytest.approx(c["estimate"] - q * c["se"], rel=1e-9)
    es = fit.effect_size("trained")
    assert es["df"] == pytest.approx(c["df"])
    t = c["statistic"]
    assert es["r"] == pytest.approx(t / np.sqrt(t**2 + c["df"]))
    wald = at.fit_mixed(*MODELS["outcome8"][:1], _data("outcome8"), ddf="wald")
    w = wald.coefs.set_index("term").loc["trained"]
    assert w["p_value"] < c["p_value"]  # z is anti-conservative
    assert (c["ci_high"] - c["ci_low"]) / (w["ci_high"] - w["ci_low"]) > 1.2
    text = fit.methods_text()
    assert "Satterthwaite" in text and "REML" in text and "lme4" in text


def test_ddf_residual_and_errors():
    d = _data("outcome8")
    fit = at.fit_mixed("bdi_post ~ bdi_pre + trained + (1 | therapist)", d, ddf="residual")
    assert (fit.coefs["df"] == len(d) - 3).all()
    with pytest.raises(ValueError, match="ddf"):
        at.fit_mixed("bdi_post ~ bdi_pre + (1 | therapist)", d, ddf="containment")
    with pytest.raises(ValueError, match="REML"):
        at.fit_mixed("bdi_post ~ bdi_pre + (1 | therapist)", d, reml=False, ddf="kenward-roger")
    with pytest.raises(ValueError, match="groups="):
        at.fit_mixed("bdi_post ~ bdi_pre + (1 | therapist)", d, groups="therapist")


def test_bitwise_or_is_an_error_not_a_model():
    d = _data("cohort")
    with pytest.raises(ValueError, match=r"'\|' outside"):
        at.fit_mixed("alliance ~ session | patient", d)


def test_old_form_equals_new_form():
    d = _data("sleepstudy")
    old = at.fit_mixed("Reaction ~ Days", d, groups="Subject", re_formula="~Days")
    new = _fit("sleepstudy_reml")
    np.testing.assert_allclose(old.coefs["df"], new.coefs["df"], rtol=1e-6)
    assert old.llf == pytest.approx(new.llf, abs=1e-8)


def test_legacy_vc_formula_gets_satterthwaite_df(ref):
    """groups= + vc_formula (statsmodels engine) is translated to lme4 terms for the df."""
    d = _data("pastes")
    old = at.fit_mixed(
        "strength ~ 1", d, groups="batch", vc_formula={"cask": "0 + C(cask)"}
    )
    assert old.engine == "statsmodels"
    fx = ref[(ref["model"] == "pastes") & (ref["kind"] == "fixed")]
    assert old.coefs["df"].iloc[0] == pytest.approx(fx["df_satt"].iloc[0], rel=0.02)


def test_outcome_model_with_eight_therapists_warns_and_uses_satterthwaite(ref):
    d = _data("outcome8")
    pred = d[["patient"]].assign(status="analysed", trained=d["trained"])
    out = d[["patient", "therapist", "bdi_pre", "bdi_post"]]
    with pytest.warns(at.FewClustersWarning, match="only 8 therapist clusters"):
        res = at.outcome_model(pred, out, predictors=["trained"])
    c = res.coefs.set_index("term").loc["trained"]
    fx = ref[(ref["model"] == "outcome8") & (ref["term"] == "trained")].iloc[0]
    assert c["df"] == pytest.approx(fx["df_satt"], rel=0.02)
    assert c["p_value"] == pytest.approx(fx["p_satt"], rel=0.02)
    assert res.effect_size("trained")["df"] == pytest.approx(fx["df_satt"], rel=0.02)
    assert any("rest on 8 clusters" in n for n in res.notes)
    s = res.summary()
    assert "Outcome model" in str(s) and "<pre>" in s._repr_html_()


def test_summary_object_and_conf_int():
    fit = _fit("sleepstudy_reml")
    s = fit.summary()
    assert isinstance(s, at.Summary) and s.text == str(s)
    assert "Satterthwaite" not in s.text or "satterthwaite" in s.text
    assert "<table" in s._repr_html_()
    ci = fit.conf_int(alpha=0.05)
    np.testing.assert_allclose(ci["ci_low"], fit.coefs["ci_low"])
    wide = fit.conf_int(alpha=0.01)
    assert (wide["ci_low"] < ci["ci_low"]).all()


def test_compare_errors():
    a = _fit("sleepstudy_reml")
    with pytest.raises(ValueError, match="MixedResult"):
        a.compare("not a fit")
    with pytest.raises(ValueError, match="same number of parameters"):
        a.compare(a)
    with pytest.raises(at.AllianceDataError, match="different rows"):
        a.compare(_fit("pastes"))


def test_nested_blups_equal_sparse_solve():
    """The block-structured conditional modes equal a direct sparse solve of lme4's system."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    fit = _fit("cohort_reml")
    d = _data("cohort")
    mf = at.parse_mixed_formula(MODELS["cohort_reml"][0])
    re = at.build_random_effects(mf, d)
    v = fit.variance
    sdv = v[v["term2"].isna()]
    sd = sdv.set_index(["group", sdv["term"].fillna("")])["sd"]
    sig = sd[("Residual", "")]
    corr = v["corr"].dropna().iloc[0]
    s0, s1 = sd[("patient", "(Intercept)")] / sig, sd[("patient", "session")] / sig
    theta = [s0, s1 * corr, s1 * np.sqrt(1 - corr**2), sd[("therapist", "(Intercept)")] / sig]
    Lam = re.lambda_matrix(theta)
    ZL = (re.Z @ Lam).tocsc()
    X = np.column_stack([np.ones(len(d)), d["session"], d["trained"], d["session"] * d["trained"]])
    r = d["alliance"].to_numpy() - X @ fit.coefs["estimate"].to_numpy()
    u = spla.spsolve((ZL.T @ ZL + sp.identity(re.q)).tocsc(), ZL.T @ r)
    fitted = X @ fit.coefs["estimate"].to_numpy() + re.Z @ (Lam @ u)
    np.testing.assert_allclose(fit.fitted, fitted, rtol=1e-6, atol=1e-6)


def test_crossed_sparse_schur_path_equals_dense(ref, monkeypatch):
    """Penicillin through the sparse (SuperLU) Schur complement gives lme4's fit too."""
    from alliancetrack.models.lmm import blocked

    monkeypatch.setattr(blocked, "_DENSE_MAX", 0)
    fit = at.fit_mixed(MODELS["penicillin"][0], _data("penicillin"), ddf="wald")
    r = ref[ref["model"] == "penicillin"]
    assert fit.llf == pytest.approx(r.loc[r["term"] == "logLik", "estimate"].item(), abs=0.01)
    np.testing.assert_allclose(fit.coefs["se"], r.loc[r["kind"] == "fixed", "se"], rtol=0.01)
